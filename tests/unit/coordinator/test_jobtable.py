"""The in-memory job table: folding records in, the open jobs by state, and the JobEvent a watcher sees."""

from __future__ import annotations

import dataclasses

import pytest

from i2v_contract import states
from i2v_contract.keys import Keys, ResultRecord
from i2v_contract.kv import KeyValue, WatchEvent
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.jobtable import JobTable, job_event
from tests.fakes.coordinator import job_record

KEYS = Keys("/t/")


def test_undecodable_records_are_skipped_not_fatal() -> None:
    table = JobTable(KEYS)
    assert table.apply(WatchEvent("put", KeyValue(KEYS.job("x"), b"not json", 2, 2, 1, 0))) is None
    assert table.apply(WatchEvent("put", KeyValue(KEYS.result("x", 1), b"{}", 3, 3, 1, 0))) is None
    assert table.jobs == {} and table.results == {}


@pytest.mark.parametrize(
    ("state", "status", "expect_result", "expect_error"),
    [
        pytest.param(states.SUCCEEDED, "OK", True, "", id="succeeded: the result"),
        pytest.param(states.FAILED, "RESOURCE_EXHAUSTED", False, "out of memory", id="failed: the error"),
        pytest.param(states.RUNNING, "OK", False, "", id="running: neither"),
    ],
)
def test_job_event_carries_result_or_error_only_when_final(
    state: int, status: str, expect_result: bool, expect_error: str
) -> None:
    table = JobTable(KEYS)
    result = ResultRecord(
        status, result=common_pb2.Result(artifact_uri="file:///o.mp4", sha256="s", profile="p", peak_bytes=1)
    )
    table.apply(WatchEvent("put", KeyValue(KEYS.result("job1", 1), result.to_json(), 4, 4, 1, 0)))
    view = dataclasses.replace(
        job_record().view,
        state=state,
        result_attempt=1,
        error=expect_error,
        error_code=8 if expect_error else 0,
    )
    event = job_event(dataclasses.replace(job_record(), view=view), table)
    assert event.state == state
    assert event.HasField("result") == expect_result
    if expect_result:
        assert event.result.artifact_uri == "file:///o.mp4"
        # The record has no size or seed: they come from the normalised request (no degradation allowed).
        assert (event.result.seed, event.result.width, event.result.frames) == (7, 64, 4)
    assert event.error == expect_error
    assert isinstance(event, coordinator_pb2.JobEvent)


def _succeeded(raw: bytes, allow_degrade: bool) -> coordinator_pb2.JobEvent:
    table = JobTable(KEYS)
    table.apply(WatchEvent("put", KeyValue(KEYS.result("job1", 1), raw, 4, 4, 1, 0)))
    base = job_record()
    request = common_pb2.GenerationRequest()
    request.CopyFrom(base.request)
    request.allow_degrade = allow_degrade
    request.steps, request.fps = 6, 8
    view = dataclasses.replace(base.view, state=states.SUCCEEDED, result_attempt=1)
    return job_event(dataclasses.replace(base, view=view, request=request), table)


def test_result_carries_exactly_what_the_node_produced() -> None:
    produced = ResultRecord("OK", result=common_pb2.Result(
        artifact_uri="file:///o.mp4", sha256="s", profile="p", peak_bytes=1,
        width=32, height=48, frames=2, fps=8, steps=3, seed=2**63,
        degradations=["width 64->32", "steps 6->3"], metadata={"dtype": "float32", "tier": "cpu"},
    ))  # fmt: skip
    result = _succeeded(produced.to_json(), allow_degrade=True).result
    # Degraded values from the node win over the request's.
    assert (result.width, result.height, result.frames, result.steps) == (32, 48, 2, 3)
    assert (result.fps, result.seed) == (8, 2**63)
    assert list(result.degradations) == ["width 64->32", "steps 6->3"]
    assert dict(result.metadata) == {"dtype": "float32", "tier": "cpu"}


def test_a_result_record_from_an_older_node_still_decodes() -> None:
    old = b'{"status":"OK","artifact_uri":"file:///o.mp4","sha256":"s","profile_used":"p","timings":{},"peak_bytes":1}'
    result = _succeeded(old, allow_degrade=False).result
    assert result.artifact_uri == "file:///o.mp4"
    assert (result.width, result.frames, result.steps, result.seed) == (64, 4, 6, 7)  # from the request
    assert list(result.degradations) == [] and dict(result.metadata) == {}


def test_the_open_table_keeps_queue_depth_and_active_jobs_with_every_state_change() -> None:
    table = JobTable(KEYS)
    a, b = job_record("a"), job_record("b")
    table.jobs["a"], table.jobs["b"] = a, b
    assert table.queued_count() == 2 and [r.job_id for r in table.active()] == []
    table.jobs["a"] = dataclasses.replace(a, view=dataclasses.replace(a.view, state=states.ASSIGNED))
    assert table.queued_count() == 1 and [r.job_id for r in table.queued()] == ["b"]
    assert [r.job_id for r in table.active()] == ["a"]
    table.jobs["a"] = dataclasses.replace(a, view=dataclasses.replace(a.view, state=states.RUNNING))
    assert [r.job_id for r in table.active()] == ["a"] and len(table.jobs) == 2
    table.forget("a")
    del table.jobs["b"]
    assert table.queued_count() == 0 and table.active() == [] and len(table.jobs) == 0
