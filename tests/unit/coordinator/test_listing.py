"""ListJobs: limits, state filters and page tokens (pure), and paging over open then finished jobs
from bounded etcd reads, on a standby (in-memory KV)."""

from __future__ import annotations

import base64
import dataclasses
from types import SimpleNamespace
from typing import Any, NoReturn, cast

import grpc
import pytest

from i2v_common.errors import details_of
from i2v_contract import states
from i2v_contract.keys import DoneRecord, Keys
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.listing import (
    HISTORY,
    LIST_JOBS_MAX,
    OPEN,
    list_limit,
    list_page,
    newest_open,
    open_cursor,
    page_token,
    parse_page_token,
    state_filter,
)
from i2v_coordinator.messages import finished_message
from i2v_coordinator.records import JobRecord, encode_job, request_digest
from i2v_coordinator.servicer import CoordinatorServicer
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/lj/")


def job(job_id: str, created_at: float, state: int = states.QUEUED) -> JobRecord:
    request = common_pb2.GenerationRequest(prompt="p", width=64, height=64, frames=2, steps=2, seed=5)
    view = dataclasses.replace(jobs.new_job(job_id, 1, common_pb2.TIER_CPU, "tiny", created_at), state=state)
    return JobRecord(view, request, f"file:///s/{job_id}.png", request_digest(request))


@pytest.mark.parametrize(
    ("requested", "expected"), [(0, 100), (1, 1), (250, 250), (LIST_JOBS_MAX, LIST_JOBS_MAX)]
)
def test_list_limit(requested: int, expected: int) -> None:
    assert list_limit(requested) == expected


def test_list_limit_beyond_the_max_names_the_field_and_range() -> None:
    with pytest.raises(ValueError, match=r"limit: 1001 is above 1000"):
        list_limit(LIST_JOBS_MAX + 1)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], frozenset()),
        ([states.QUEUED, states.RUNNING, states.QUEUED], frozenset({states.QUEUED, states.RUNNING})),
    ],
)
def test_state_filter(states: list[int], expected: frozenset[int]) -> None:
    assert state_filter(states) == expected


@pytest.mark.parametrize("bad", [coordinator_pb2.JOB_STATE_UNSPECIFIED, 42])
def test_state_filter_rejects_unknown_states(bad: int) -> None:
    with pytest.raises(ValueError, match=r"states: .* JOB_STATE_QUEUED"):
        state_filter([states.QUEUED, bad])


def test_a_flood_of_unknown_states_is_not_echoed_whole() -> None:
    with pytest.raises(ValueError) as err:
        state_filter([42] * 100_000)
    assert len(str(err.value)) < 400 and "characters)" in str(err.value)


RECORDS = [
    job("a", 10.0, states.SUCCEEDED),
    job("b", 30.0, states.QUEUED),
    job("c", 20.0, states.RUNNING),
    job("d", 30.0, states.FAILED),  # same time as b: the id breaks the tie
]


@pytest.mark.parametrize(
    ("states", "limit", "after", "expected", "more"),
    [
        (frozenset(), 100, "", ["d", "b", "c", "a"], False),
        (frozenset(), 2, "", ["d", "b"], True),
        (frozenset(), 2, "b", ["c", "a"], False),  # after = the cursor of job b
        (frozenset({states.QUEUED, states.RUNNING}), 100, "", ["b", "c"], False),
        (frozenset({states.QUEUED, states.RUNNING}), 1, "", ["b"], True),
        (frozenset({states.CANCELLED}), 100, "", [], False),
    ],
)
def test_newest_open(states: frozenset[int], limit: int, after: str, expected: list[str], more: bool) -> None:
    cursor = open_cursor(next(r for r in RECORDS if r.job_id == after)) if after else ""
    page, has_more = newest_open(RECORDS, states, limit, cursor)
    assert ([r.job_id for r in page], has_more) == (expected, more)


@pytest.mark.parametrize(
    ("phase", "after"),
    [(OPEN, ""), (OPEN, "0000000000000030-b"), (HISTORY, ""), (HISTORY, KEYS.history_entry(5, "x"))],
)
def test_page_tokens_round_trip(phase: str, after: str) -> None:
    assert parse_page_token(page_token(phase, after), KEYS) == (phase, after)
    assert parse_page_token("", KEYS) == (OPEN, "")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "bm90IGpzb24=",  # base64 of "not json"
        page_token("sideways", ""),
        page_token(HISTORY, "/lj/jobs/x"),  # not a history key
        page_token(HISTORY, "/other/history/0000000000000001-x"),
        "WzEsMl0=",  # [1, 2]
        pytest.param(base64.urlsafe_b64encode(b"[" * 3000).decode(), id="nested-past-the-recursion-limit"),
        pytest.param(base64.urlsafe_b64encode(b'{"open": 1, "": 2}').decode(), id="a-dict-of-two-keys"),
        pytest.param(page_token(OPEN, "x" * 4000), id="longer-than-any-issued"),
    ],
)
def test_page_token_garbage_is_invalid_argument_naming_the_field(token: str) -> None:
    with pytest.raises(ValueError, match=r"page_token: .*next_page_token"):
        parse_page_token(token, KEYS)


def test_finished_message_says_why_and_where_to_look() -> None:
    message = finished_message(dataclasses.replace(job("j9", 1.0).view, state=states.SUCCEEDED))
    assert "job j9 already SUCCEEDED" in message and "nothing to cancel" in message


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        # The error details, read back as a client would from the call's trailer.
        call = SimpleNamespace(
            code=lambda: code, details=lambda: details, trailing_metadata=lambda: tuple(trailing_metadata)
        )
        self.sent = details_of(cast(Any, call))


class FakeContext:
    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> NoReturn:
        raise Aborted(code, details, trailing_metadata)


class Standby:
    member_id = "c2"
    addr = "127.0.0.1:2"
    epoch = None
    term = None
    leader: tuple[str, str] | None = ("c1", "127.0.0.1:1")


async def finish(kv: MemoryKV, record: JobRecord, finished_at: float, state: int = states.SUCCEEDED) -> None:
    """Store `record` the way a finalising txn leaves it: history/ entry (result embedded) + done/."""
    view = dataclasses.replace(record.view, state=state, finished_at=finished_at, result_attempt=1)
    result = common_pb2.Result(artifact_uri=f"file:///s/{record.job_id}.mp4", sha256="ab" * 32)
    result.timings.total_s = 1.5
    entry = KEYS.history_entry(finished_at, record.job_id)
    await kv.put(entry, encode_job(dataclasses.replace(record, view=view, result=result)))
    await kv.put(KEYS.done_of(record.job_id), DoneRecord(entry, finished_at).to_json())


async def standby_servicer(kv: MemoryKV, finished: int = 1) -> CoordinatorServicer:
    for record in (job("old", 1.0), job("new", 9.0, states.RUNNING)):
        await kv.put(KEYS.job(record.job_id), encode_job(record))
    await finish(kv, job("done", 5.0), 50.0)
    for i in range(1, finished):
        await finish(kv, job(f"f{i:03d}", 0.5), 50.0 - i, states.FAILED if i % 2 else states.SUCCEEDED)
    unused = cast(Any, None)  # ListJobs never touches the registry, dispatcher, hub or artifacts
    return CoordinatorServicer(Standby(), unused, JobStore(kv, KEYS), unused, unused, unused)


async def test_a_standby_lists_open_jobs_then_finished_ones_with_their_results() -> None:
    servicer = await standby_servicer(MemoryKV(ManualClock()))
    context = cast(Any, FakeContext())
    response = await servicer.ListJobs(coordinator_pb2.ListJobsRequest(), context)
    assert [j.job_id for j in response.jobs] == ["new", "old", "done"] and not response.next_page_token
    done = response.jobs[2]
    assert (
        done.state == coordinator_pb2.JOB_STATE_SUCCEEDED and done.result.artifact_uri == "file:///s/done.mp4"
    )
    assert done.result.timings.total_s == 1.5 and not done.result.video
    assert done.request.prompt == "p" and not done.request.image
    filtered = await servicer.ListJobs(
        coordinator_pb2.ListJobsRequest(states=[coordinator_pb2.JOB_STATE_QUEUED], limit=5), context
    )
    assert [j.job_id for j in filtered.jobs] == ["old"] and not filtered.next_page_token


async def walk(servicer: CoordinatorServicer, **fields: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        request = coordinator_pb2.ListJobsRequest(page_token=token, **fields)
        response = await servicer.ListJobs(request, cast(Any, FakeContext()))
        pages.append([j.job_id for j in response.jobs])
        token = response.next_page_token
        if not token:
            return pages
        assert len(pages) < 100, "paging does not end"


@pytest.mark.parametrize(
    ("limit", "states", "sizes"),
    [
        (3, [], [3, 3, 3, 3]),  # 2 open + 10 finished: the open ones share the first page
        (5, [], [5, 5, 2]),
        (20, [], [12]),
        (4, [coordinator_pb2.JOB_STATE_FAILED], [2, 2, 1]),  # filtered within each bounded read: short pages
        (1, [coordinator_pb2.JOB_STATE_RUNNING], [1]),  # only open states: history is never read
    ],
)
async def test_paging_walks_every_job_once_newest_first(
    limit: int, states: list[int], sizes: list[int]
) -> None:
    servicer = await standby_servicer(MemoryKV(ManualClock()), finished=10)
    pages = await walk(servicer, limit=limit, states=states)
    assert [len(p) for p in pages] == sizes
    listed = [j for p in pages for j in p]
    everything = ["new", "old", "done", *[f"f{i:03d}" for i in range(1, 10)]]
    wanted = {"RUNNING": ["new"], "FAILED": [f"f{i:03d}" for i in range(1, 10, 2)]}
    names = [coordinator_pb2.JobState.Name(s).removeprefix("JOB_STATE_") for s in states]
    assert listed == (everything if not names else wanted[names[0]])


@pytest.mark.parametrize(
    ("budget", "states_", "sizes"),
    [
        pytest.param(35, [], [3, 3, 3, 3], id="three-fit"),  # 2 open + 10 finished, 10 bytes each
        pytest.param(5, [], [1] * 12, id="one-always-fits"),
        pytest.param(25, [states.FAILED], [2, 2, 1], id="filtered"),
    ],
)
async def test_a_page_ends_before_its_jobs_exceed_the_byte_budget(
    budget: int, states_: list[int], sizes: list[int]
) -> None:
    kv = MemoryKV(ManualClock())
    await standby_servicer(kv, finished=10)  # stores the jobs
    store = JobStore(kv, KEYS)
    pages, phase, after = [], OPEN, ""
    while True:
        records, token = await list_page(
            store, False, frozenset(states_), 100, phase, after, lambda r: 10, budget
        )
        pages.append([r.job_id for r in records])
        if not token:
            break
        phase, after = parse_page_token(token, KEYS)
    assert [len(p) for p in pages if p] == sizes
    listed = [j for p in pages for j in p]
    assert len(listed) == len(set(listed)) == (12 if not states_ else 5)


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (coordinator_pb2.ListJobsRequest(limit=5000), "limit: 5000"),
        (coordinator_pb2.ListJobsRequest(states=[cast(Any, 77)]), "states: [77]"),
        (coordinator_pb2.ListJobsRequest(page_token="zz"), "page_token: 'zz'"),
    ],
)
async def test_list_jobs_rejects_bad_requests(request_: coordinator_pb2.ListJobsRequest, words: str) -> None:
    servicer = await standby_servicer(MemoryKV(ManualClock()))
    with pytest.raises(Aborted) as err:
        await servicer.ListJobs(request_, cast(Any, FakeContext()))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and words in str(err.value)
    [violation] = err.value.sent.field_violations  # BadRequest names the field the message starts with
    assert words.startswith(f"{violation.field}: ") and err.value.sent.reason == "INVALID_FIELD"


async def test_list_jobs_when_etcd_is_away_is_unavailable() -> None:
    kv = MemoryKV(ManualClock())
    servicer = await standby_servicer(kv)
    kv.available = False
    with pytest.raises(Aborted) as err:
        await servicer.ListJobs(coordinator_pb2.ListJobsRequest(), cast(Any, FakeContext()))
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert (err.value.sent.reason, err.value.sent.retry_after_s) == ("ETCD_UNAVAILABLE", 1.0)


class Electing(Standby):
    """A standby during an election: no leader known."""

    leader = None


@pytest.mark.parametrize(
    ("leadership", "reason", "metadata", "retry_after_s"),
    [
        pytest.param(
            Standby(),
            "NOT_LEADER",
            {"leader_id": "c1", "leader_addr": "127.0.0.1:1"},
            None,
            id="a-standby-names-the-leader",
        ),
        pytest.param(Electing(), "NO_LEADER", {}, 1.0, id="no-leader-yet-says-when-to-retry"),
    ],
)
async def test_job_calls_off_the_leader_carry_why_in_the_details(
    leadership: Standby, reason: str, metadata: dict[str, str], retry_after_s: float | None
) -> None:
    unused = cast(Any, None)
    servicer = CoordinatorServicer(
        leadership, unused, JobStore(MemoryKV(ManualClock()), KEYS), unused, unused, unused
    )
    with pytest.raises(Aborted) as err:
        await servicer.Get(coordinator_pb2.GetRequest(job_id="x"), cast(Any, FakeContext()))
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    sent = err.value.sent
    assert (sent.reason, dict(sent.metadata), sent.retry_after_s) == (reason, metadata, retry_after_s)
