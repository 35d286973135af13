"""gRPC channels to the servers: the message size limits, whether an address reaches a server, and
one keepalive channel per coordinator."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from i2v_client.text import clip
from i2v_common import keepalive
from i2v_common.rpc import coordinator_pb2_grpc

MIB = 1024 * 1024
# Matches the node's send limit: an inline MP4 plus optional PNG frames.
MAX_RECEIVE_BYTES = 128 * MIB
MAX_SEND_BYTES = 64 * MIB


def open_channel(target: str, options: Sequence[tuple[str, int]] = ()) -> grpc.Channel:
    """A channel with the message size limits; `options` adds channel arguments (e.g. keepalive)."""
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            *options,
        ],
    )


class Reach(enum.Enum):
    CONNECTED = "connected"
    FAILED = "failed"  # at once: refused, unknown host, not gRPC
    SILENT = "silent"  # nothing within the timeout


class Connection(NamedTuple):
    """How reaching an address went, and why not in words ("refused the connection")."""

    reach: Reach
    why: str = ""


# gRPC's words for a failed connection -> ours.
_FAILURES = (
    ("Connection refused", "refused the connection"),
    ("resolving", "has a host name that does not resolve"),
    ("lookup", "has a host name that does not resolve"),
    ("HTTP/2", "answered, but is not a gRPC server"),
)


def _failed(details: str) -> str:
    return next(
        (ours for theirs, ours in _FAILURES if theirs in details), f"could not connect ({clip(details)})"
    )


def wait_connected(channel: grpc.Channel, timeout: float) -> Connection:
    """Whether `channel` reaches a gRPC server within `timeout`, asked with a health check (every i2v
    server serves grpc.health.v1; any answer, even UNIMPLEMENTED, is a server). A refused port, an
    unknown host or a server that is not gRPC fails at once; an address that swallows packets, or
    accepts and says nothing, is SILENT after `timeout`.

    A health call, not a connectivity subscription: grpc's subscription thread outlives
    unsubscribe() and raises into stderr when the channel is closed under it."""
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError as err:
        call: Any = err
        if call.code() is grpc.StatusCode.UNAVAILABLE:
            return Connection(Reach.FAILED, _failed(call.details() or ""))
        if call.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
            return Connection(Reach.SILENT, f"accepted no gRPC connection within {timeout:g} s")
    return Connection(Reach.CONNECTED)


class StubSource(Protocol):
    """Where a coordinator client gets the stub for an address (tests hand in fake stubs)."""

    def connect(self, target: str, timeout: float) -> Connection: ...

    def stub(self, target: str) -> coordinator_pb2_grpc.CoordinatorStub: ...

    def close(self) -> None: ...


class CoordinatorChannels:
    """One keepalive channel and stub per coordinator address, opened on first use."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, coordinator_pb2_grpc.CoordinatorStub] = {}

    def _channel(self, target: str) -> grpc.Channel:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = open_channel(target, keepalive.CHANNEL_OPTIONS)
        return channel

    def connect(self, target: str, timeout: float) -> Connection:
        return wait_connected(self._channel(target), timeout)

    def stub(self, target: str) -> coordinator_pb2_grpc.CoordinatorStub:
        stub = self._stubs.get(target)
        if stub is None:
            stub = self._stubs[target] = coordinator_pb2_grpc.CoordinatorStub(self._channel(target))
        return stub

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._stubs.clear()
