"""gRPC channels to the servers: the message size limits, whether an address reaches a server, and
one keepalive channel per coordinator."""

from __future__ import annotations

import enum
import socket
import ssl
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from i2v_client.text import clip
from i2v_common import keepalive
from i2v_common.channels import ChannelFactory
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_common.tls import ClientTls, tls_failure_hint
from i2v_contract.addresses import parse_address

MIB = 1024 * 1024
# Matches the node's send limit: an inline MP4 plus optional PNG frames.
MAX_RECEIVE_BYTES = 128 * MIB
MAX_SEND_BYTES = 64 * MIB


def open_channel(
    target: str, options: Sequence[tuple[str, int]] = (), tls: ClientTls | None = None
) -> grpc.Channel:
    """A channel with the message size limits, over TLS when `tls` is given (the files are read
    now); `options` adds channel arguments (e.g. keepalive)."""
    return ChannelFactory(tls).sync(
        target,
        [
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
_PLAIN_TO_TLS = "speaks TLS: pass --tls-ca with the CA that signed its certificate"


def speaks_tls(target: str, timeout: float = 1.0) -> bool:
    """Whether `target` completes a TLS handshake (nothing verified: it only tells TLS apart)."""
    try:
        host, port = parse_address(target)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host or None),
        ):
            return True
    except (OSError, ValueError):
        return False


def _failed(details: str, target: str = "", secure: bool = False) -> str:
    hint = tls_failure_hint(details, secure)
    if secure and hint is not None:
        return hint
    # Plaintext: a hang-up is a TLS server only if it completes a TLS handshake.
    if hint is not None and target and speaks_tls(target):
        return _PLAIN_TO_TLS
    return next(
        (ours for theirs, ours in _FAILURES if theirs in details), f"could not connect ({clip(details)})"
    )


def wait_connected(
    channel: grpc.Channel, timeout: float, *, target: str = "", secure: bool = False
) -> Connection:
    """Whether `channel` reaches a gRPC server within `timeout`, asked with a health check (every i2v
    server serves grpc.health.v1; any answer, even UNIMPLEMENTED, is a server). A refused port, an
    unknown host or a server that is not gRPC fails at once; an address that swallows packets, or
    accepts and says nothing, is SILENT after `timeout`.

    `target` and `secure` (whether the channel speaks TLS) make a failed TLS connection's words say
    what to pass instead. A health call, not a connectivity subscription: grpc's subscription thread outlives
    unsubscribe() and raises into stderr when the channel is closed under it."""
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError as err:
        call: Any = err
        if call.code() is grpc.StatusCode.UNAVAILABLE:
            return Connection(Reach.FAILED, _failed(call.details() or "", target, secure))
        if call.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
            return Connection(Reach.SILENT, f"accepted no gRPC connection within {timeout:g} s")
    return Connection(Reach.CONNECTED)


class StubSource(Protocol):
    """Where a coordinator client gets the stub for an address (tests hand in fake stubs)."""

    def connect(self, target: str, timeout: float) -> Connection: ...

    def stub(self, target: str) -> coordinator_pb2_grpc.CoordinatorStub: ...

    def close(self) -> None: ...


class CoordinatorChannels:
    """One keepalive channel and stub per coordinator address, opened on first use (over TLS with
    `tls`)."""

    def __init__(self, tls: ClientTls | None = None) -> None:
        self._tls = tls
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, coordinator_pb2_grpc.CoordinatorStub] = {}

    def _channel(self, target: str) -> grpc.Channel:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = open_channel(target, keepalive.CHANNEL_OPTIONS, self._tls)
        return channel

    def connect(self, target: str, timeout: float) -> Connection:
        return wait_connected(self._channel(target), timeout, target=target, secure=self._tls is not None)

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
