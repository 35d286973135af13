"""Per-RPC metrics through a real grpc.aio server on 127.0.0.1: counts by status code (OK, an abort,
an unexpected exception, a cancelled stream, an unknown method), latency, streams open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from i2v_common import keepalive
from i2v_common.rpc_metrics import RpcMetrics, outcome
from i2v_common.serving import HEALTH_SERVICE, RpcServer, served_services
from i2v_contract.wire import node_pb2

SERVICE = node_pb2.DESCRIPTOR.services_by_name["Node"].full_name


class Health(health_pb2_grpc.HealthServicer):
    """Check answers by the asked service's name: abort, raise, or SERVING; Watch streams forever."""

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        if request.service == "abort":
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
        if request.service == "raise":
            raise RuntimeError("bug")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        while True:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
            await asyncio.sleep(0.01)


@pytest.fixture
async def served() -> AsyncIterator[tuple[RpcMetrics, CollectorRegistry, grpc.aio.Channel]]:
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry, served_services(SERVICE))
    server = grpc.aio.server(interceptors=[metrics.interceptor()], options=keepalive.SERVER_OPTIONS)
    health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield metrics, registry, channel
    finally:
        await server.stop(0)


def handled(registry: CollectorRegistry, method: str, code: str, service: str = HEALTH_SERVICE) -> float:
    labels = {"service": service, "method": method, "code": code}
    return registry.get_sample_value("i2v_rpc_handled_total", labels) or 0.0


async def check(channel: grpc.aio.Channel, service: str) -> grpc.StatusCode:
    try:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("asked", "code"),
    [
        pytest.param("", "OK", id="ok"),
        pytest.param("abort", "RESOURCE_EXHAUSTED", id="abort"),
        pytest.param("raise", "UNKNOWN", id="unexpected-exception"),
    ],
)
async def test_unary_calls_are_counted_by_the_code_they_ended_with(
    served: tuple[RpcMetrics, CollectorRegistry, grpc.aio.Channel], asked: str, code: str
) -> None:
    _, registry, channel = served
    assert (await check(channel, asked)).name == code
    assert handled(registry, "Check", code) == 1
    labels = {"service": HEALTH_SERVICE, "method": "Check"}
    assert registry.get_sample_value("i2v_rpc_duration_seconds_count", labels) == 1
    assert registry.get_sample_value("i2v_rpc_in_flight", labels) == 0


async def test_a_stream_is_open_while_it_runs_and_cancelled_when_the_client_leaves(
    served: tuple[RpcMetrics, CollectorRegistry, grpc.aio.Channel],
) -> None:
    _, registry, channel = served
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
    await call.read()
    labels = {"service": HEALTH_SERVICE, "method": "Watch"}
    assert registry.get_sample_value("i2v_rpc_in_flight", labels) == 1
    call.cancel()
    for _ in range(200):
        if handled(registry, "Watch", "CANCELLED"):
            break
        await asyncio.sleep(0.01)
    assert handled(registry, "Watch", "CANCELLED") == 1
    assert registry.get_sample_value("i2v_rpc_in_flight", labels) == 0


async def test_unknown_methods_share_one_label(
    served: tuple[RpcMetrics, CollectorRegistry, grpc.aio.Channel],
) -> None:
    _, registry, channel = served
    for name in ("/no.Such/Thing", "/i2v.v1.Node/Nope", "/x"):
        call = channel.unary_unary(name, request_serializer=bytes, response_deserializer=bytes)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert handled(registry, "other", "UNIMPLEMENTED", service="other") == 3


def test_every_method_of_the_served_services_is_known_up_front() -> None:
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry, served_services(SERVICE))
    assert (SERVICE, "Generate") in metrics.known
    assert (HEALTH_SERVICE, "Watch") in metrics.known
    ok = {"service": SERVICE, "method": "Generate", "code": "OK"}
    assert registry.get_sample_value("i2v_rpc_handled_total", ok) == 0  # present before any call


async def test_an_rpc_server_takes_interceptors() -> None:
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry, served_services(SERVICE))
    server = RpcServer(SERVICE, keepalive.SERVER_OPTIONS, [metrics.interceptor()])
    address = server.bind("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            assert await check(channel, SERVICE) == grpc.StatusCode.OK
    finally:
        await server.stop(0)
    assert handled(registry, "Check", "OK") == 1


class _Ended:
    """What outcome() reads of a ServicerContext."""

    def __init__(self, code: grpc.StatusCode | None, cancelled: bool) -> None:
        self._code, self._cancelled = code, cancelled

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def cancelled(self) -> bool:
        return self._cancelled


@pytest.mark.parametrize(
    ("code", "cancelled", "exc", "counted"),
    [
        pytest.param(None, False, None, "OK", id="returned"),
        pytest.param(grpc.StatusCode.NOT_FOUND, False, grpc.aio.AbortError(), "NOT_FOUND", id="aborted"),
        pytest.param(None, False, RuntimeError("bug"), "UNKNOWN", id="raised"),
        pytest.param(None, False, asyncio.CancelledError(), "CANCELLED", id="task-cancelled"),
        pytest.param(
            None, True, RuntimeError("execute_batch failed"), "CANCELLED", id="send-after-client-left"
        ),
        pytest.param(None, True, grpc.aio.AbortError(), "CANCELLED", id="abort-after-client-left"),
        pytest.param(
            grpc.StatusCode.INVALID_ARGUMENT,
            False,
            RuntimeError("execute_batch failed"),
            "INVALID_ARGUMENT",
            id="abort-sent-as-the-client-hung-up",
        ),
    ],
)
def test_outcome(
    code: grpc.StatusCode | None, cancelled: bool, exc: BaseException | None, counted: str
) -> None:
    assert outcome(_Ended(code, cancelled), exc) == counted  # type: ignore[arg-type]
