"""A job's life in the slot, over real in-process gRPC: the hooks' before_run refuses or accepts,
every accepted job's end reaches after_run, the hooks' stop() and the drain end a running job."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from i2v_common.rpc import node_pb2_grpc
from i2v_contract.wire import node_pb2
from i2v_node.hooks import JobRejected, JobReport, Stop
from i2v_node.servicer import NodeServicer
from tests.fakes.node import (
    Claims,
    NoRunEngine,
    Served,
    StepsUntilCancelled,
    call_error,
    make_servicer,
    request,
)
from tests.media import png


class _Refuse:
    def __init__(self) -> None:
        self.reports: list[JobReport] = []

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        raise JobRejected(grpc.StatusCode.FAILED_PRECONDITION, f"claim for {job_id} lost: epoch moved")

    async def after_run(self, report: JobReport) -> None:
        self.reports.append(report)


async def test_before_run_hook_can_refuse_and_frees_the_node() -> None:
    hooks = _Refuse()
    servicer = make_servicer(hooks)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    try:
        req = request()
        req.job_id, req.attempt = "job-7", 1
        err = await call_error(served.stub, req)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "claim for job-7 lost" in (err.details() or "")
        assert servicer.job is None
    finally:
        await served.stop()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"image": png()[:40]}, "image", id="corrupt image"),
        pytest.param({"model": "ali-vilab/not-this-one"}, "model", id="unknown model"),
        pytest.param({"frames": 100_000}, "frames", id="too many frames"),
    ],
)
async def test_dispatched_bad_input_is_claimed_then_recorded_as_invalid(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, Claims],
    overrides: dict[str, Any],
    field: str,
) -> None:
    servicer, stub, hooks = claiming
    req = request(**overrides)
    req.job_id, req.attempt = "job-9", 1
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, overrides
    assert field in (err.details() or "")
    # The claim came first, so a result must follow: the coordinator finalises instead of waiting.
    assert hooks.seen == [("claim", "job-9", None), ("result", "job-9", grpc.StatusCode.INVALID_ARGUMENT)]
    assert servicer.job is None


class _StopAfterClaim:
    """Accepts the claim and keeps the job's stop(), as ClusterHooks does for its claim watch."""

    def __init__(self) -> None:
        self.stop: Stop | None = None
        self.reports: list[JobReport] = []

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        self.stop = stop

    async def after_run(self, report: JobReport) -> None:
        self.reports.append(report)


async def test_stop_from_the_hooks_ends_the_running_job_as_unavailable() -> None:
    hooks = _StopAfterClaim()
    servicer = make_servicer(hooks)
    servicer.set_engine(StepsUntilCancelled())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    try:
        req = request()
        req.job_id, req.attempt = "job-s", 1
        call = served.stub.Generate(req, timeout=10)
        async for event in call:
            if event.HasField("progress") and event.progress.step >= 2:
                break
        assert hooks.stop is not None
        hooks.stop("claim /p/claims/job-s/1 deleted at revision 9")
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in call:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "claim /p/claims/job-s/1 deleted" in (ended.value.details() or "")
        assert "no result written" in (ended.value.details() or "")
        assert [r.code for r in hooks.reports] == [grpc.StatusCode.UNAVAILABLE]  # the hooks decide to skip it
        assert servicer.job is None
    finally:
        await served.stop()


async def test_drain_cancels_a_job_that_outlasts_the_grace_period() -> None:
    servicer = make_servicer()
    servicer.set_engine(StepsUntilCancelled())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    try:
        call = served.stub.Generate(request(), timeout=10)
        async for event in call:
            if event.HasField("progress") and event.progress.step >= 1:
                break
        servicer.start_drain()
        assert not servicer.serving and servicer.job is not None
        assert await servicer.wait_idle(0.05) is False
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in call:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "cancelled after the 0.05 s grace period" in (ended.value.details() or "")
        assert servicer.job is None
        assert await servicer.wait_idle(0.05) is True  # nothing left to wait for
    finally:
        await served.stop()


async def test_cancel_rpc_stops_a_running_job_as_cancelled() -> None:
    servicer = make_servicer()
    servicer.set_engine(StepsUntilCancelled())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    try:
        call = served.stub.Generate(request(), timeout=10)
        async for event in call:
            if event.HasField("progress") and event.progress.step >= 1:
                break
        job = servicer.job
        assert job is not None
        assert (await served.stub.Cancel(node_pb2.NodeCancelRequest(job_id=job.job_id), timeout=5)).cancelled
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in call:
                pass
        assert ended.value.code() == grpc.StatusCode.CANCELLED
        assert f"job {job.job_id} was cancelled (cancel_rpc)" == ended.value.details()
        await asyncio.wait_for(job.finished.wait(), 5)
    finally:
        await served.stop()
