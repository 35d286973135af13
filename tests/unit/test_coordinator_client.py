from __future__ import annotations

import grpc
import pytest

from i2v_contract.client import CallError
from i2v_contract.coordinator_client import (
    RetryPolicy,
    _Reconnect,
    final_result,
    format_job,
    format_status,
    parse_targets,
)
from i2v_contract.memory_kv import ManualClock
from i2v_contract.v1 import common_pb2, coordinator_pb2


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
    job = coordinator_pb2.Job(job_id="j", state=coordinator_pb2.JOB_FAILED, attempt=2, error="boom")
    assert format_job(job).splitlines() == ["j failed attempt 2, needs tier unspecified", "error: boom"]
