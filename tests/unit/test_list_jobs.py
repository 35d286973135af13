"""ListJobs: limits and state filters (pure), and a standby answering from etcd (in-memory KV)."""

from __future__ import annotations

import dataclasses
from typing import Any, NoReturn, cast

import grpc
import pytest

from i2v_contract.keys import Keys, ResultRecord
from i2v_contract.memory_kv import ManualClock, MemoryKV
from i2v_contract.v1 import common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.jobstore import JobRecord, JobStore, encode_job, request_digest
from i2v_coordinator.servicer import (
    LIST_JOBS_MAX,
    CoordinatorServicer,
    finished_message,
    list_limit,
    newest_jobs,
    state_filter,
)

KEYS = Keys("/lj/")


def job(job_id: str, created_at: float, state: int = jobs.QUEUED) -> JobRecord:
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
        ([jobs.QUEUED, jobs.RUNNING, jobs.QUEUED], frozenset({jobs.QUEUED, jobs.RUNNING})),
    ],
)
def test_state_filter(states: list[int], expected: frozenset[int]) -> None:
    assert state_filter(states) == expected


@pytest.mark.parametrize("bad", [coordinator_pb2.JOB_STATE_UNSPECIFIED, 42])
def test_state_filter_rejects_unknown_states(bad: int) -> None:
    with pytest.raises(ValueError, match=r"states: .* JOB_QUEUED"):
        state_filter([jobs.QUEUED, bad])


RECORDS = [
    job("a", 10.0, jobs.SUCCEEDED),
    job("b", 30.0, jobs.QUEUED),
    job("c", 20.0, jobs.RUNNING),
    job("d", 30.0, jobs.FAILED),  # same time as b: the id breaks the tie
]


@pytest.mark.parametrize(
    ("states", "limit", "expected"),
    [
        (frozenset(), 100, ["d", "b", "c", "a"]),
        (frozenset(), 2, ["d", "b"]),
        (frozenset({jobs.QUEUED, jobs.RUNNING}), 100, ["b", "c"]),
        (frozenset({jobs.CANCELLED}), 100, []),
    ],
)
def test_newest_jobs(states: frozenset[int], limit: int, expected: list[str]) -> None:
    assert [r.job_id for r in newest_jobs(RECORDS, states, limit)] == expected


def test_finished_message_says_why_and_where_to_look() -> None:
    message = finished_message(dataclasses.replace(job("j9", 1.0).view, state=jobs.SUCCEEDED))
    assert "job j9 already SUCCEEDED" in message and "nothing to cancel" in message


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


class FakeContext:
    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise Aborted(code, details)


class Standby:
    member_id = "c2"
    addr = "127.0.0.1:2"
    epoch = None
    leader = ("c1", "127.0.0.1:1")


async def standby_servicer(kv: MemoryKV) -> CoordinatorServicer:
    done = job("done", 5.0, jobs.SUCCEEDED)
    done = dataclasses.replace(done, view=dataclasses.replace(done.view, result_attempt=1))
    for record in (job("old", 1.0), done, job("new", 9.0, jobs.RUNNING)):
        await kv.put(KEYS.job(record.job_id), encode_job(record))
    result = ResultRecord(
        "OK", "file:///s/done.mp4", "ab" * 32, "fast", {"total_s": 1.5}, 7, width=64, height=64, frames=2
    )
    await kv.put(KEYS.result("done", 1), result.to_json())
    unused = cast(Any, None)  # ListJobs never touches the registry, dispatcher, hub or artifacts
    return CoordinatorServicer(Standby(), unused, JobStore(kv, KEYS), unused, unused, unused)


async def test_a_standby_lists_jobs_from_etcd_with_their_results() -> None:
    servicer = await standby_servicer(MemoryKV(ManualClock()))
    context = cast(Any, FakeContext())
    response = await servicer.ListJobs(coordinator_pb2.ListJobsRequest(), context)
    assert [j.job_id for j in response.jobs] == ["new", "done", "old"]
    done = response.jobs[1]
    assert done.state == coordinator_pb2.JOB_SUCCEEDED and done.result.artifact_uri == "file:///s/done.mp4"
    assert done.result.timings.total_s == 1.5 and not done.result.video
    assert done.request.prompt == "p" and not done.request.image
    filtered = await servicer.ListJobs(
        coordinator_pb2.ListJobsRequest(states=[coordinator_pb2.JOB_QUEUED], limit=5), context
    )
    assert [j.job_id for j in filtered.jobs] == ["old"]


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (coordinator_pb2.ListJobsRequest(limit=5000), "limit: 5000"),
        (coordinator_pb2.ListJobsRequest(states=[cast(Any, 77)]), "states: [77]"),
    ],
)
async def test_list_jobs_rejects_bad_requests(request_: coordinator_pb2.ListJobsRequest, words: str) -> None:
    servicer = await standby_servicer(MemoryKV(ManualClock()))
    with pytest.raises(Aborted) as err:
        await servicer.ListJobs(request_, cast(Any, FakeContext()))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and words in str(err.value)


async def test_list_jobs_when_etcd_is_away_is_unavailable() -> None:
    kv = MemoryKV(ManualClock())
    servicer = await standby_servicer(kv)
    kv.available = False
    with pytest.raises(Aborted) as err:
        await servicer.ListJobs(coordinator_pb2.ListJobsRequest(), cast(Any, FakeContext()))
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
