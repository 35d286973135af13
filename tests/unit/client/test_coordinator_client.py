from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

import grpc
import pytest

from i2v_client.coordinator import (
    CoordinatorClient,
    ProgressLine,
    RetryPolicy,
    _Reconnect,
    final_result,
    format_job,
    format_jobs,
    format_nodes,
    format_status,
    next_target,
    parse_states,
    parse_targets,
)
from i2v_client.node_client import CallError
from i2v_contract.wire import LEADER_ADDR_METADATA, common_pb2, coordinator_pb2
from tests.fakes.clock import ManualClock


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a:1", ["a:1"]),
        ("a:1, b:2,,a:1", ["a:1", "b:2"]),
        (["b:2", " a:1 "], ["b:2", "a:1"]),
    ],
)
def test_parse_targets(given: str | list[str], expected: list[str]) -> None:
    assert parse_targets(given) == expected


def test_parse_targets_needs_one() -> None:
    with pytest.raises(ValueError, match="--target"):
        parse_targets(" , ")


def test_reconnect_backs_off_exponentially_but_follows_a_first_leader_hint_at_once() -> None:
    clock = ManualClock(0.0)
    r = _Reconnect(RetryPolicy(reconnect_s=5.0, initial_backoff_s=0.1, max_backoff_s=0.4), clock)
    assert r.next_delay(hinted=True) == 0.0
    assert r.next_delay(hinted=True) == 0.1  # a second hint in a row: the election is still moving
    assert [r.next_delay(hinted=False) for _ in range(3)] == [0.2, 0.4, 0.4]
    clock.advance(4.0)
    assert r.remaining() == pytest.approx(1.0)
    r.reset()  # a coordinator answered
    assert r.remaining() == pytest.approx(5.0) and r.next_delay(hinted=False) == 0.1


def test_final_result_of_a_failed_job_raises_its_status() -> None:
    event = coordinator_pb2.JobEvent(
        job_id="j", state=coordinator_pb2.JOB_FAILED, error="out of memory on n1", error_code=8
    )
    with pytest.raises(CallError) as err:
        final_result(event)
    assert (
        err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        and "j failed: out of memory" in err.value.message
    )


def test_final_result_checks_the_inline_video() -> None:
    ok = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_SUCCEEDED)
    ok.result.video = b"mp4"
    assert final_result(ok).video == b"mp4"
    ok.result.sha256 = "0" * 64
    with pytest.raises(CallError) as err:
        final_result(ok)
    assert err.value.code == grpc.StatusCode.DATA_LOSS


def test_formatting_for_the_cli() -> None:
    status = coordinator_pb2.ClusterStatusResponse(
        leader_id="c1",
        leader_addr="h:1",
        epoch=7,
        members=[coordinator_pb2.Member(id="c1", addr="h:1", leader=True)],
        tiers=[coordinator_pb2.TierCount(tier=common_pb2.TIER_CPU, nodes=2, busy=1)],
        queued=3,
        answered_by="c1",
    )
    text = format_status(status)
    assert "leader c1 at h:1, epoch 7" in text and "cpu 2 (1 busy)" in text and "3 queued" in text
    assert "held back" not in text  # only shown when some node is
    status.nodes_cooling = 1
    assert format_status(status).splitlines()[-1].startswith("held back: 1 cooling down, 0 set aside")
    cooling = coordinator_pb2.NodeInfo(
        node_id="n1", cooldown_s=3.6, consecutive_failures=2, health_reason="not claimed within 10 s"
    )
    healthy = coordinator_pb2.NodeInfo(node_id="n2", consecutive_failures=1, health_reason="old")
    lines = format_nodes(coordinator_pb2.ListNodesResponse(nodes=[cooling, healthy])).splitlines()
    assert lines[0].endswith("  cooling down 4s after 2 failed: not claimed within 10 s")
    assert lines[1].endswith("idle  ")  # cooldown over: nothing to flag
    job = coordinator_pb2.Job(job_id="j", state=coordinator_pb2.JOB_FAILED, attempt=2, error="boom")
    assert format_job(job).splitlines() == ["j failed attempt 2, needs tier unspecified", "error: boom"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("queued", [coordinator_pb2.JOB_QUEUED]),
        (" Running,queued,running ", [coordinator_pb2.JOB_RUNNING, coordinator_pb2.JOB_QUEUED]),
        ("succeeded,failed,cancelled", [4, 5, 6]),
    ],
)
def test_parse_states(text: str, expected: list[int]) -> None:
    assert parse_states(text) == expected


@pytest.mark.parametrize("text", ["", "done", "queued,unspecified"])
def test_parse_states_names_the_allowed_words(text: str) -> None:
    with pytest.raises(ValueError, match="queued, assigned, running, succeeded, failed, cancelled"):
        parse_states(text)


def test_format_jobs() -> None:
    assert format_jobs([]) == "no jobs"
    done = coordinator_pb2.Job(
        job_id="j1", state=coordinator_pb2.JOB_SUCCEEDED, attempt=2, node_id="n1", created_at=86400.0,
        finished_at=86403.25,
    )  # fmt: skip
    done.result.artifact_uri = "file:///s/j1.mp4"
    failed = coordinator_pb2.Job(job_id="j0", state=coordinator_pb2.JOB_FAILED, attempt=1, error="oom\nmore")
    lines = format_jobs([done, failed]).splitlines()
    assert lines[0].split()[:3] == ["JOB", "STATE", "TRY"]
    assert lines[1].split() == [
        "j1",
        "succeeded",
        "2",
        "n1",
        "1970-01-02",
        "00:00:00Z",
        "3.2s",
        "file:///s/j1.mp4",
    ]
    assert lines[2].split() == ["j0", "failed", "1", "-", "-", "-", "oom"]


def test_format_job_of_a_success_says_what_was_produced() -> None:
    job = coordinator_pb2.Job(
        job_id="j", state=coordinator_pb2.JOB_SUCCEEDED, attempt=1, created_at=1, finished_at=3
    )
    job.result.MergeFrom(
        common_pb2.Result(
            artifact_uri="file:///o.mp4", sha256="ab" * 32, frames=2, width=32, height=48, fps=4, steps=3,
            seed=9, profile="fast", degradations=["steps 6->3"],
        )
    )  # fmt: skip
    assert format_job(job).splitlines()[1:] == [
        "video: file:///o.mp4 (sha256 abababababab)",
        "produced: 2 frames 32x48 @ 4 fps, 3 steps, seed 9, profile fast, took 2.0s",
        "degraded: steps 6->3",
    ]


def test_progress_line_turns_states_into_stages_and_pauses_into_notes() -> None:
    shown: list[common_pb2.Progress] = []
    clock = ManualClock(10.0)
    line = ProgressLine(shown.append, clock)
    clock.advance(1.5)
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_QUEUED))
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_RUNNING))  # no progress: nothing to show
    denoise = common_pb2.Progress(stage=common_pb2.STAGE_DENOISE, step=3, total_steps=5)
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_RUNNING, progress=denoise))
    line.pause("a:1 answered UNAVAILABLE; re-attaching via b:2")
    assert [(p.stage, p.step, p.message) for p in shown] == [
        (common_pb2.STAGE_QUEUED, 0, ""),
        (common_pb2.STAGE_DENOISE, 3, ""),
        (common_pb2.STAGE_DENOISE, 3, "paused: a:1 answered UNAVAILABLE; re-attaching via b:2"),
    ]
    assert shown[0].elapsed_s == pytest.approx(1.5)


class _RpcError(grpc.RpcError):  # type: ignore[misc]
    def __init__(
        self,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        details: str = "connection refused",
        hint: str = "",
    ) -> None:
        self._code, self._details, self._hint = code, details, hint

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((LEADER_ADDR_METADATA, self._hint),) if self._hint else ()


class _Stream:
    def __init__(self, events: list[coordinator_pb2.JobEvent], fail: bool) -> None:
        self.events = events
        self.fail = fail
        self.error = _RpcError()

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        yield from self.events
        if self.fail:
            raise self.error

    def cancel(self) -> None:
        return None


def test_a_broken_stream_is_a_pause_then_re_attaches_to_the_next_target() -> None:
    client = CoordinatorClient(["a:1", "b:2"], sleep=lambda s: None, clock=ManualClock(0.0))
    running = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_RUNNING)
    done = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_SUCCEEDED)
    streams = iter([_Stream([running], fail=True), _Stream([running, done], fail=False)])
    seen: list[int] = []
    pauses: list[str] = []
    final = client._stream(
        "watch j", lambda stub: next(streams), lambda e: seen.append(e.state), None, pauses.append
    )
    client.close()
    assert final.state == coordinator_pb2.JOB_SUCCEEDED
    assert seen == [coordinator_pb2.JOB_RUNNING, coordinator_pb2.JOB_RUNNING, coordinator_pb2.JOB_SUCCEEDED]
    assert pauses == ["a:1 answered UNAVAILABLE; re-attaching via b:2"]


@pytest.mark.parametrize(
    ("current", "hint", "suspects", "expected"),
    [
        (0, "", set(), "b:2"),  # plain rotation
        (2, "", set(), "a:1"),
        (0, "c:3", set(), "c:3"),  # a leader hint wins
        (0, "d:4", set(), "d:4"),  # even one the client was not given
        (0, "a:1", set(), "b:2"),  # a hint naming the failed target is no news
        (1, "a:1", {"a:1"}, "c:3"),  # a standby still names a frozen leader: skip it
        (0, "", {"b:2"}, "c:3"),
        (0, "", {"a:1", "b:2", "c:3"}, "b:2"),  # all suspect: plain rotation
    ],
)
def test_next_target(current: int, hint: str, suspects: set[str], expected: str) -> None:
    assert next_target(["a:1", "b:2", "c:3"], current, hint, suspects) == expected


class _Frozen:
    """A stream that sends `events`, then nothing until cancelled (a SIGSTOPped coordinator)."""

    def __init__(self, events: Iterable[coordinator_pb2.JobEvent] = ()) -> None:
        self.events = list(events)
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        yield from self.events
        assert self.cancelled.wait(5), "the idle bound never cancelled the silent stream"
        raise _RpcError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")

    def cancel(self) -> None:
        self.cancelled.set()


class _Beating:
    """A stream that sends heartbeats every `every_s` for `for_s`, then the final event."""

    def __init__(self, every_s: float, for_s: float) -> None:
        self.every_s, self.for_s = every_s, for_s

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        end = time.monotonic() + self.for_s
        while time.monotonic() < end:
            time.sleep(self.every_s)
            yield coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_RUNNING, heartbeat=True)
        yield coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_SUCCEEDED)

    def cancel(self) -> None:
        return None


def test_a_silent_stream_is_cancelled_and_the_job_re_attached_elsewhere() -> None:
    policy = RetryPolicy(idle_timeout_s=0.3, suspect_s=60.0)
    client = CoordinatorClient(["a:1", "b:2"], policy=policy, sleep=lambda s: None)
    running = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_RUNNING)
    done = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_SUCCEEDED)
    frozen = _Frozen([running])
    # b is still a standby that names the frozen a as leader; the client must not go back there.
    hinting = _Stream([], fail=True)
    hinting.error = _RpcError(hint="a:1")
    streams = iter([frozen, hinting, _Stream([done], fail=False)])
    opened_on: list[str] = []

    def open_stream(stub: object) -> object:
        opened_on.append(client.target)
        return next(streams)

    pauses: list[str] = []
    started = time.monotonic()
    final = client._stream("watch j", open_stream, None, None, pauses.append)  # type: ignore[arg-type]
    took = time.monotonic() - started
    client.close()
    assert final.state == coordinator_pb2.JOB_SUCCEEDED
    assert frozen.cancelled.is_set() and 0.3 <= took < 2.0
    assert opened_on == ["a:1", "b:2", "b:2"]
    assert client.suspects() == {"a:1"}
    assert pauses[0] == "a:1 sent nothing for 0.3 s; re-attaching via b:2"


def test_heartbeats_keep_a_quiet_stream_open_and_never_reach_on_event() -> None:
    client = CoordinatorClient(["a:1", "b:2"], policy=RetryPolicy(idle_timeout_s=0.3), sleep=lambda s: None)
    seen: list[coordinator_pb2.JobEvent] = []
    pauses: list[str] = []
    final = client._stream(
        "watch j", lambda stub: _Beating(every_s=0.05, for_s=0.9), seen.append, None, pauses.append
    )
    client.close()
    assert final.state == coordinator_pb2.JOB_SUCCEEDED
    assert [e.state for e in seen] == [coordinator_pb2.JOB_SUCCEEDED] and not pauses
    assert client.target == "a:1" and not client.suspects()


def test_progress_line_ignores_heartbeats() -> None:
    shown: list[common_pb2.Progress] = []
    line = ProgressLine(shown.append, ManualClock(0.0))
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_QUEUED, heartbeat=True))
    assert shown == []


def test_a_unary_call_past_its_deadline_makes_its_target_suspect_and_moves_on() -> None:
    clock = ManualClock(0.0)
    client = CoordinatorClient(["a:1", "b:2"], sleep=clock.advance, clock=clock)
    tried: list[tuple[str, float]] = []

    def call(stub: object, timeout: float) -> str:
        tried.append((client.target, timeout))
        if client.target == "a:1":
            clock.advance(timeout)
            raise _RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if len(tried) == 2:  # b is still a standby naming a as leader: not followed while suspect
            raise _RpcError(hint="a:1")
        return "ok"

    assert client._unary("get", call) == "ok"
    assert [t for t, _ in tried] == ["a:1", "b:2", "b:2"]
    assert tried[0][1] == client.policy.call_timeout_s
    assert client.suspects() == {"a:1"}
    clock.advance(client.policy.suspect_s)
    assert client.suspects() == set()


class _Slow:
    """A stream whose first (final) event comes after `first_after_s`, unless cancelled before."""

    def __init__(self, first_after_s: float) -> None:
        self.first_after_s = first_after_s
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        if self.cancelled.wait(self.first_after_s):
            raise _RpcError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
        yield coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_SUCCEEDED)

    def cancel(self) -> None:
        self.cancelled.set()


@pytest.mark.parametrize(("first_extra_s", "streams_opened"), [(0.4, 1), (0.0, 2)])
def test_the_first_message_may_wait_for_the_upload(first_extra_s: float, streams_opened: int) -> None:
    client = CoordinatorClient(["a:1", "b:2"], policy=RetryPolicy(idle_timeout_s=0.3), sleep=lambda s: None)
    done = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_SUCCEEDED)
    streams = iter([_Slow(first_after_s=0.5), _Stream([done], fail=False)])
    opened: list[str] = []

    def open_stream(stub: object) -> object:
        opened.append(client.target)
        return next(streams)

    final = client._stream("job j", open_stream, None, None, first_extra_s=first_extra_s)  # type: ignore[arg-type]
    client.close()
    assert final.state == coordinator_pb2.JOB_SUCCEEDED and len(opened) == streams_opened


def test_a_submit_gets_its_upload_time_on_top_of_the_deadline() -> None:
    policy = RetryPolicy(call_timeout_s=2.0, upload_floor_bps=1000.0)
    submit = coordinator_pb2.SubmitRequest(request=common_pb2.GenerationRequest(image=b"x" * 3000))
    assert policy.upload_s(submit) == pytest.approx(submit.ByteSize() / 1000.0) and submit.ByteSize() > 3000
    client = CoordinatorClient(["a:1"], policy=policy, clock=ManualClock(0.0))
    timeouts: list[float] = []
    client._unary("submit", lambda stub, timeout: timeouts.append(timeout), policy.upload_s(submit))
    client.close()
    assert timeouts == [pytest.approx(2.0 + submit.ByteSize() / 1000.0)]


class _ListJobsStub:
    """A Coordinator stub that answers ListJobs from `pages` (token -> page) and records the requests."""

    def __init__(self, pages: dict[str, coordinator_pb2.ListJobsResponse]) -> None:
        self.pages = pages
        self.requests: list[coordinator_pb2.ListJobsRequest] = []

    def ListJobs(
        self, request: coordinator_pb2.ListJobsRequest, timeout: float
    ) -> coordinator_pb2.ListJobsResponse:
        self.requests.append(request)
        return self.pages[request.page_token]


def _paged_client(
    pages: dict[str, coordinator_pb2.ListJobsResponse],
) -> tuple[CoordinatorClient, _ListJobsStub]:
    client = CoordinatorClient(["a:1"], clock=ManualClock(0.0))
    stub = _ListJobsStub(pages)
    client._stubs["a:1"] = stub  # type: ignore[assignment]
    return client, stub


def _page(ids: list[str], token: str) -> coordinator_pb2.ListJobsResponse:
    return coordinator_pb2.ListJobsResponse(
        jobs=[coordinator_pb2.Job(job_id=i) for i in ids], next_page_token=token
    )


def test_list_jobs_sends_states_limit_and_token_and_returns_jobs_with_the_next_token() -> None:
    client, stub = _paged_client({"t1": _page(["j3", "j2"], "t2")})
    page = client.list_jobs([coordinator_pb2.JOB_SUCCEEDED], 2, "t1")
    assert [j.job_id for j in page.jobs] == ["j3", "j2"] and page.next_page_token == "t2"
    (request,) = stub.requests
    assert (list(request.states), request.limit, request.page_token) == (
        [coordinator_pb2.JOB_SUCCEEDED],
        2,
        "t1",
    )


def test_job_pages_follow_tokens_to_the_end_through_empty_filtered_pages() -> None:
    client, stub = _paged_client({"": _page(["j5"], "a"), "a": _page([], "b"), "b": _page(["j1", "j0"], "")})
    pages = list(client.job_pages(limit=3))
    assert [[j.job_id for j in p.jobs] for p in pages] == [["j5"], [], ["j1", "j0"]]
    assert [(r.page_token, r.limit) for r in stub.requests] == [("", 3), ("a", 3), ("b", 3)]


def test_job_pages_stop_on_a_token_that_does_not_move() -> None:
    client, _ = _paged_client({"": _page(["j1"], "a"), "a": _page([], "a")})
    with pytest.raises(CallError, match="same page token"):
        list(client.job_pages())
