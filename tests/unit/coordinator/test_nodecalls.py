"""The bounded read of a dispatch's event stream: progress relayed, silences cut, channel dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

import grpc
import pytest

from i2v_contract.wire import common_pb2, node_pb2
from i2v_coordinator.nodecalls import NodeCallError, follow_stream

PROGRESS = common_pb2.GenerateEvent(progress=common_pb2.Progress(step=1, total_steps=2))
BEAT = common_pb2.GenerateEvent(heartbeat=common_pb2.Heartbeat(elapsed_s=1.0))
RESULT = common_pb2.GenerateEvent(result=common_pb2.Result(artifact_uri="file:///v.mp4"))


class Scripted:
    """A node whose stream sends (delay, event) pairs; an event of None raises UNAVAILABLE."""

    def __init__(self, script: Sequence[tuple[float, common_pb2.GenerateEvent | None]]) -> None:
        self.script = script
        self.resets: list[str] = []
        self.closed = False

    async def generate(
        self, addr: str, request: node_pb2.NodeGenerateRequest
    ) -> AsyncGenerator[common_pb2.GenerateEvent, None]:
        try:
            for delay, event in self.script:
                await asyncio.sleep(delay)
                if event is None:
                    raise NodeCallError(grpc.StatusCode.UNAVAILABLE, "gone")
                yield event
        finally:
            self.closed = True

    async def cancel(self, addr: str, job_id: str) -> bool:
        return False

    async def reset(self, addr: str) -> None:
        self.resets.append(addr)

    async def close(self) -> None:
        pass


async def follow(calls: Scripted) -> list[int]:
    steps: list[int] = []
    await follow_stream(
        calls,
        "n1:1",
        node_pb2.NodeGenerateRequest(job_id="j"),
        lambda p: steps.append(p.step),
        first_event_s=0.1,
        idle_s=0.2,
    )
    return steps


async def test_progress_is_relayed_and_heartbeats_keep_the_stream_open() -> None:
    calls = Scripted([(0.0, PROGRESS), (0.15, BEAT), (0.15, PROGRESS), (0.0, RESULT)])
    assert await follow(calls) == [1, 1]
    assert calls.closed and calls.resets == []


@pytest.mark.parametrize(
    ("script", "bound"),
    [
        pytest.param([(0.3, PROGRESS)], "0.1 s", id="no first event"),
        pytest.param([(0.0, PROGRESS), (0.4, BEAT)], "0.2 s", id="silent mid-call"),
    ],
)
async def test_a_silence_cuts_the_call_and_drops_the_channel(
    script: list[tuple[float, common_pb2.GenerateEvent]], bound: str
) -> None:
    calls = Scripted(script)
    with pytest.raises(NodeCallError) as err:
        await follow(calls)
    assert err.value.code is grpc.StatusCode.UNAVAILABLE and f"no event from the node for {bound}" in str(
        err.value
    )
    assert calls.resets == ["n1:1"] and calls.closed


async def test_a_failed_call_is_passed_on_without_dropping_the_channel() -> None:
    calls = Scripted([(0.0, PROGRESS), (0.0, None)])
    with pytest.raises(NodeCallError, match="UNAVAILABLE: gone"):
        await follow(calls)
    assert calls.resets == [] and calls.closed
