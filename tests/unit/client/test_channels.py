"""Reaching servers, against real loopback sockets and in-process gRPC servers: refused, silent,
connected; which server an address is; a slow server's calls outlive the connect timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from i2v_client import (
    COORDINATOR,
    NODE,
    CallError,
    CoordinatorClient,
    NodeClient,
    Reach,
    RetryPolicy,
    open_channel,
    server_kind,
    wait_connected,
)
from i2v_common.rpc import coordinator_pb2_grpc, node_pb2_grpc
from i2v_contract.wire import coordinator_pb2, node_pb2
from tests.etcd_cluster import free_port


class _SlowCoordinator(coordinator_pb2_grpc.CoordinatorServicer):
    """Answers ClusterStatus slowly; every other call is UNIMPLEMENTED (the generated base)."""

    def ClusterStatus(self, request: object, context: object) -> coordinator_pb2.ClusterStatusResponse:
        time.sleep(0.6)  # longer than the client's connect timeout below
        return coordinator_pb2.ClusterStatusResponse(leader_id="c1", answered_by="c1")


class _Node(node_pb2_grpc.NodeServicer):
    def Status(self, request: object, context: object) -> node_pb2.NodeStatus:
        return node_pb2.NodeStatus(node_id="n1")


def _serve(add: object, servicer: object) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add(servicer, server)  # type: ignore[operator]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def coordinator() -> Iterator[str]:
    servicer = _SlowCoordinator()  # type: ignore[abstract]
    server, address = _serve(coordinator_pb2_grpc.add_CoordinatorServicer_to_server, servicer)
    yield address
    server.stop(None)


@pytest.fixture
def node() -> Iterator[str]:
    server, address = _serve(node_pb2_grpc.add_NodeServicer_to_server, _Node())  # type: ignore[abstract]
    yield address
    server.stop(None)


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never says a word (a frozen process, a wrong service)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(
        target=lambda: held.extend(iter(lambda: listener.accept()[0], None)), daemon=True
    ).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in held:
        conn.close()


def _reach(address: str, timeout: float) -> tuple[Reach, str, float]:
    channel = open_channel(address)
    started = time.monotonic()
    try:
        reach, why = wait_connected(channel, timeout)
    finally:
        channel.close()
    return reach, why, time.monotonic() - started


def test_a_refused_port_fails_at_once() -> None:
    reach, why, took = _reach(f"127.0.0.1:{free_port()}", 2.0)
    assert (reach, why) == (Reach.FAILED, "refused the connection") and took < 0.5


def test_a_port_that_says_nothing_is_silent_after_the_timeout(silent: str) -> None:
    reach, why, took = _reach(silent, 0.3)
    assert reach is Reach.SILENT and why == "accepted no gRPC connection within 0.3 s" and 0.3 <= took < 1.5


def test_a_grpc_server_without_a_health_service_is_still_a_server(node: str) -> None:
    assert _reach(node, 2.0)[0] is Reach.CONNECTED


def test_server_kind_tells_a_node_from_a_coordinator(node: str, coordinator: str) -> None:
    assert server_kind(node) == NODE
    assert server_kind(coordinator) == COORDINATOR
    assert server_kind(f"127.0.0.1:{free_port()}") == ""


def test_a_slow_server_keeps_its_calls_past_the_connect_timeout(coordinator: str) -> None:
    policy = RetryPolicy(connect_timeout_s=0.2, call_timeout_s=5.0)
    with CoordinatorClient(coordinator, policy=policy) as client:
        assert client.cluster_status().leader_id == "c1" and client.reached and not client.suspects()


def test_a_coordinator_asked_for_a_node_call_answers_unimplemented_with_its_address(coordinator: str) -> None:
    with NodeClient(coordinator) as client, pytest.raises(CallError) as err:
        client.status(timeout=2.0)
    assert err.value.code == grpc.StatusCode.UNIMPLEMENTED and err.value.address == coordinator


def test_an_unreachable_node_says_so_at_once() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with NodeClient(address) as client, pytest.raises(CallError) as err:
        client.status()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE and time.monotonic() - started < 1.0
    assert err.value.message == f"node {address} refused the connection"
