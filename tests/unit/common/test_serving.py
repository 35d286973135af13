"""What every server exposes besides its service, on real sockets bound to 127.0.0.1: gRPC health
(NOT_SERVING until the owner says it serves) and reflection beside the service, and /metrics."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry, Counter

from i2v_common import keepalive
from i2v_common.serving import HEALTH_SERVICE, MetricsHttp, RpcServer
from i2v_contract.wire import node_pb2

SERVICE = node_pb2.DESCRIPTOR.services_by_name["Node"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def served() -> AsyncIterator[tuple[RpcServer, grpc.aio.Channel]]:
    """A started RpcServer on a free local port and a channel to it."""
    server = RpcServer(SERVICE, keepalive.SERVER_OPTIONS)
    address = server.bind("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield server, channel
    finally:
        await server.stop(0)


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


@pytest.mark.parametrize("service", [pytest.param("", id="overall"), pytest.param(SERVICE, id="the-service")])
async def test_health_is_not_serving_until_the_owner_says_it_serves(
    served: tuple[RpcServer, grpc.aio.Channel], service: str
) -> None:
    server, channel = served
    assert await _health(channel, service) == NOT_SERVING
    await server.set_serving(True)
    assert await _health(channel, service) == SERVING
    await server.set_serving(False)
    assert await _health(channel, service) == NOT_SERVING


@pytest.mark.parametrize(
    ("path", "kind", "message"),
    [
        pytest.param(
            f"/{HEALTH_SERVICE}/Check", "unary", "grpc.health.v1.HealthCheckRequest", id="health-check"
        ),
        pytest.param(
            f"/{HEALTH_SERVICE}/Watch", "stream", "grpc.health.v1.HealthCheckRequest", id="health-watch"
        ),
        pytest.param(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "bidi",
            "ServerReflectionRequest",
            id="reflection-v1alpha",
        ),
        pytest.param(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "bidi",
            "ServerReflectionRequest",
            id="reflection-v1",
        ),
    ],
)
async def test_health_and_reflection_answer_bytes_that_do_not_parse_invalid_argument(
    served: tuple[RpcServer, grpc.aio.Channel], path: str, kind: str, message: str
) -> None:
    _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as err:
        if kind == "unary":
            await channel.unary_unary(path)(b"\x00", timeout=5)
        elif kind == "stream":
            async for _ in channel.unary_stream(path)(b"\x00", timeout=5):
                pass
        else:
            async for _ in channel.stream_stream(path)(iter([b"\x00"]), timeout=5):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    says = err.value.details() or ""
    assert "request bytes are not a valid" in says and message in says


async def test_a_named_status_is_the_owners_and_goes_not_serving_with_the_server(
    served: tuple[RpcServer, grpc.aio.Channel],
) -> None:
    server, channel = served
    role = f"{SERVICE}.Role"
    await server.set_serving(True)
    await server.set_status(role, True)
    assert await _health(channel, role) == SERVING
    await server.set_status(role, False)
    assert (await _health(channel, role), await _health(channel, "")) == (NOT_SERVING, SERVING)
    await server.set_status(role, True)
    await server.set_serving(False)  # draining: nothing is served, whatever the role said
    assert await _health(channel, role) == NOT_SERVING


async def test_reflection_lists_the_service_health_and_reflection(
    served: tuple[RpcServer, grpc.aio.Channel],
) -> None:
    _, channel = served
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name async for reply in call for s in reply.list_services_response.service}
    assert names == {
        SERVICE,
        HEALTH_SERVICE,
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
    assert HEALTH_SERVICE == "grpc.health.v1.Health"


@pytest.mark.parametrize(
    ("listen", "host"),
    [
        pytest.param("127.0.0.1:0", "127.0.0.1", id="ipv4-loopback"),
        pytest.param("0.0.0.0:0", "0.0.0.0", id="wildcard-kept-as-bound"),
    ],
)
async def test_bind_returns_the_address_with_the_port_it_got(listen: str, host: str) -> None:
    server = RpcServer(SERVICE, ())
    try:
        address = server.bind(listen)
        bound_host, _, port = address.rpartition(":")
        assert bound_host == host and 0 < int(port) < 65536
    finally:
        await server.stop(0)


async def test_bind_to_a_port_held_by_another_listener_raises_runtime_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = RpcServer(SERVICE, ())
        try:
            with pytest.raises(RuntimeError):
                server.bind(f"127.0.0.1:{holder.getsockname()[1]}")
        finally:
            await server.stop(0)


# One MetricsHttp for the module: each close() waits out the server loop's 0.5 s poll.
@pytest.fixture(scope="module")
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("i2v_test_requests", "Requests seen by the test.", registry=registry).inc(3)
    return registry


@pytest.fixture(scope="module")
def metrics(registry: CollectorRegistry) -> Iterator[MetricsHttp]:
    http = MetricsHttp(registry, "127.0.0.1:0")
    try:
        yield http
    finally:
        http.close()


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        body: bytes = reply.read()
    return body.decode()


def test_metrics_serves_its_registry(metrics: MetricsHttp) -> None:
    assert metrics.port > 0
    assert "i2v_test_requests_total 3.0" in _scrape(metrics.port)


def test_a_port_already_in_use_raises_os_error(metrics: MetricsHttp, registry: CollectorRegistry) -> None:
    with pytest.raises(OSError):
        MetricsHttp(registry, f"127.0.0.1:{metrics.port}")


def test_close_frees_the_port(registry: CollectorRegistry) -> None:
    http = MetricsHttp(registry, "127.0.0.1:0")
    port = http.port
    assert "i2v_test_requests_total" in _scrape(port)
    http.close()
    with pytest.raises(urllib.error.URLError):
        _scrape(port)
    with socket.socket() as again:  # a restarted process can listen there again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
