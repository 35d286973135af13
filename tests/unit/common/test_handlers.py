"""Guarded parsing on a real grpc.aio server: garbage bytes sent through a generic channel are
INVALID_ARGUMENT naming the method and the message type, logged at a bounded rate; well-formed
calls, streams and the `wrap` seam are untouched."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from i2v_common import handlers
from i2v_common.handlers import Unparsed, add_servicer, capture, guarded_deserializer, message_name
from i2v_common.ratelog import RateLimitedLog
from i2v_common.rpc import node_pb2_grpc
from i2v_contract.wire import common_pb2, node_pb2
from tests.fakes.clock import ManualClock

STATUS = "/i2v.v1.Node/Status"
GENERATE = "/i2v.v1.Node/Generate"
GARBAGE = b"\x0a\xff\xff\xff"  # field 1, length-delimited, with a length that runs past the end


class Echo(node_pb2_grpc.NodeServicer):
    async def Status(self, request: node_pb2.NodeStatusRequest, context: Any) -> node_pb2.NodeStatus:
        return node_pb2.NodeStatus(node_id="n1")

    async def Generate(self, request: node_pb2.NodeGenerateRequest, context: Any) -> AsyncIterator[Any]:
        for step in range(3):
            yield common_pb2.GenerateEvent(progress=common_pb2.Progress(step=step + len(request.job_id)))


@pytest.fixture
async def channel(caplog: pytest.LogCaptureFixture) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    limiter = RateLimitedLog(logging.getLogger("i2v_test.guard"), 10.0, clock=ManualClock())
    seen: list[str] = []

    def wrap(method: str, handler: Any) -> Any:
        seen.append(method)
        return handler

    assert add_servicer(server, node_pb2_grpc.add_NodeServicer_to_server, Echo(), wrap=wrap, limiter=limiter)
    assert sorted(seen) == ["Cancel", "Generate", "Status"]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        await server.stop(0)


async def test_garbage_is_invalid_argument_naming_method_and_type(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    raw = channel.unary_unary(STATUS, request_serializer=None, response_deserializer=None)
    with caplog.at_level(logging.WARNING):
        for _ in range(200):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw(GARBAGE, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details() or ""
    assert details.startswith(
        f"{STATUS}: the 4 request bytes are not a valid i2v.v1.NodeStatusRequest message"
    )
    guard_lines = [r for r in caplog.records if r.name == "i2v_test.guard"]
    assert len(guard_lines) == 1 and STATUS in guard_lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a bad request"


async def test_garbage_on_a_streaming_method_ends_the_stream_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    raw = channel.unary_stream(GENERATE, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in raw(GARBAGE, timeout=5):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "i2v.v1.NodeGenerateRequest" in (err.value.details() or "")


async def test_well_formed_calls_and_streams_are_served(channel: grpc.aio.Channel) -> None:
    stub = node_pb2_grpc.NodeStub(channel)
    status = await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
    call = stub.Generate(node_pb2.NodeGenerateRequest(job_id="j"), timeout=5)
    steps = [e.progress.step async for e in call]
    assert status.node_id == "n1" and steps == [1, 2, 3]


def test_the_guarded_deserializer_returns_a_marker_instead_of_raising() -> None:
    parse = guarded_deserializer(node_pb2.NodeStatusRequest.FromString)
    bad = parse(GARBAGE)
    assert isinstance(bad, Unparsed) and (bad.type_name, bad.size) == ("i2v.v1.NodeStatusRequest", 4)
    assert parse(b"") == node_pb2.NodeStatusRequest()
    assert message_name(lambda raw: raw) == "request message"


def test_capture_sees_what_the_generated_adder_registers() -> None:
    service, found = capture(node_pb2_grpc.add_NodeServicer_to_server, Echo())
    assert service == "i2v.v1.Node" and sorted(found) == ["Cancel", "Generate", "Status"]
    with pytest.raises(ValueError, match="registered no method handlers"):
        capture(lambda servicer, server: None, Echo())
    assert handlers.Unparsed("t", 1, "e") == Unparsed("t", 1, "e")
