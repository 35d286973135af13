"""A job's progress on the Generate stream: heartbeats while nothing else is sent."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from i2v_client.node_client import GenerateCall
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.hooks import JobRejected, JobReport, Stop
from tests.fakes.node import NoRunEngine, Served, make_servicer, request


class _SlowClaim:
    """A claim that takes `seconds` and is then refused: the job holds the slot, sends nothing."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        await asyncio.sleep(self.seconds)
        raise JobRejected(grpc.StatusCode.FAILED_PRECONDITION, "stale dispatch")

    async def after_run(self, report: JobReport) -> None:
        return None


async def test_silent_job_sends_heartbeats_that_clients_ignore() -> None:
    servicer = make_servicer(_SlowClaim(0.5), heartbeat_interval=0.1)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    events: list[common_pb2.GenerateEvent] = []
    try:
        req = request()
        req.job_id, req.attempt = "job-hb", 1
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for event in served.stub.Generate(req, timeout=10):
                events.append(event)
        assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await served.stop()
    assert 2 <= len(events) <= 6  # about one per 0.1 s of silence over 0.5 s
    assert all(e.WhichOneof("kind") == "heartbeat" for e in events)
    assert all(e.heartbeat.stage == common_pb2.STAGE_ASSIGNED for e in events)
    elapsed = [e.heartbeat.elapsed_s for e in events]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0.09
    # The node client's consumer sees neither progress nor a result in a heartbeat.
    progress = common_pb2.GenerateEvent(progress=common_pb2.Progress(stage=common_pb2.STAGE_DENOISE, step=1))
    result = common_pb2.GenerateEvent(result=common_pb2.Result(frames=3))
    seen: list[common_pb2.Progress] = []
    got = GenerateCall(iter([events[0], progress, events[1], result])).wait(on_progress=seen.append)
    assert got.frames == 3 and [p.step for p in seen] == [1]
