from __future__ import annotations

import grpc
import pytest

from i2v_client import CallError, ProgressLine, final_result
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.fakes.clock import ManualClock


def test_final_result_of_a_failed_job_raises_its_status() -> None:
    event = coordinator_pb2.JobEvent(
        job_id="j", state=coordinator_pb2.JOB_STATE_FAILED, error="out of memory on n1", error_code=8
    )
    with pytest.raises(CallError) as err:
        final_result(event)
    assert (
        err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        and "j failed: out of memory" in err.value.message
    )


def test_final_result_checks_the_inline_video() -> None:
    ok = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_SUCCEEDED)
    ok.result.video = b"mp4"
    assert final_result(ok).video == b"mp4"
    ok.result.sha256 = "0" * 64
    with pytest.raises(CallError) as err:
        final_result(ok)
    assert err.value.code == grpc.StatusCode.DATA_LOSS


def test_progress_line_turns_states_into_stages_and_pauses_into_notes() -> None:
    shown: list[common_pb2.Progress] = []
    clock = ManualClock(10.0)
    line = ProgressLine(shown.append, clock)
    clock.advance(1.5)
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_STATE_QUEUED))
    line.event(
        coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_STATE_RUNNING)
    )  # no progress: nothing to show
    denoise = common_pb2.Progress(stage=common_pb2.STAGE_DENOISE, step=3, total_steps=5)
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_STATE_RUNNING, progress=denoise))
    line.pause("a:1 answered UNAVAILABLE; re-attaching via b:2")
    assert [(p.stage, p.step, p.message) for p in shown] == [
        (common_pb2.STAGE_QUEUED, 0, ""),
        (common_pb2.STAGE_DENOISE, 3, ""),
        (common_pb2.STAGE_DENOISE, 3, "paused: a:1 answered UNAVAILABLE; re-attaching via b:2"),
    ]
    assert shown[0].elapsed_s == pytest.approx(1.5)


def test_progress_line_ignores_heartbeats() -> None:
    shown: list[common_pb2.Progress] = []
    line = ProgressLine(shown.append, ManualClock(0.0))
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_STATE_QUEUED, heartbeat=True))
    assert shown == []
