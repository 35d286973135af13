from __future__ import annotations

import grpc
import pytest

from i2v_client import CallError, CoordinatorCall, CoordinatorClient, ProgressLine, Reach, final_result
from i2v_client.errors import JobEnded
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.fakes.client import FakeStubs
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


def test_a_cancelled_job_ends_as_job_ended_with_its_state() -> None:
    event = coordinator_pb2.JobEvent(
        job_id="j", state=coordinator_pb2.JOB_STATE_CANCELLED, error="cancelled by the client", error_code=1
    )
    with pytest.raises(JobEnded) as err:
        final_result(event)
    assert (err.value.job_id, err.value.state, err.value.code) == (
        "j",
        coordinator_pb2.JOB_STATE_CANCELLED,
        grpc.StatusCode.CANCELLED,
    )


class _CancelStub:
    def __init__(self) -> None:
        self.cancelled: list[tuple[str, float]] = []

    def Cancel(self, request: coordinator_pb2.CancelRequest, timeout: float) -> coordinator_pb2.Job:
        self.cancelled.append((request.job_id, timeout))
        return coordinator_pb2.Job(job_id=request.job_id, state=coordinator_pb2.JOB_STATE_CANCELLED)

    def ClusterStatus(self, request: object, timeout: float) -> coordinator_pb2.ClusterStatusResponse:
        return coordinator_pb2.ClusterStatusResponse()


def test_cancel_of_a_call_that_reached_no_coordinator_sends_nothing_and_says_none() -> None:
    stubs = FakeStubs(_CancelStub(), unreachable={"a:1": Reach.FAILED})
    call = CoordinatorCall(CoordinatorClient("a:1", stubs=stubs), common_pb2.GenerationRequest(), None)
    assert call.cancel() is None and stubs.connects == []


def test_cancel_of_a_submitted_job_is_bounded_and_answers_the_job() -> None:
    stub = _CancelStub()
    client = CoordinatorClient("a:1", stubs=FakeStubs(stub), clock=ManualClock(0.0))
    client.cluster_status()  # the client has reached the cluster
    call = CoordinatorCall(client, common_pb2.GenerationRequest(), None, cancel_timeout_s=3.0)
    job = call.cancel()
    assert job is not None and job.state == coordinator_pb2.JOB_STATE_CANCELLED
    assert stub.cancelled == [(call.job_id, 3.0)]
