"""gRPC channels to the servers: the message size limits, and one keepalive channel per coordinator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc

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


class StubSource(Protocol):
    """Where a coordinator client gets the stub for an address (tests hand in fake stubs)."""

    def stub(self, target: str) -> coordinator_pb2_grpc.CoordinatorStub: ...

    def close(self) -> None: ...


class CoordinatorChannels:
    """One keepalive channel and stub per coordinator address, opened on first use."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, coordinator_pb2_grpc.CoordinatorStub] = {}

    def stub(self, target: str) -> coordinator_pb2_grpc.CoordinatorStub:
        stub = self._stubs.get(target)
        if stub is None:
            self._channels[target] = open_channel(target, keepalive.CHANNEL_OPTIONS)
            stub = self._stubs[target] = coordinator_pb2_grpc.CoordinatorStub(self._channels[target])
        return stub

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._stubs.clear()
