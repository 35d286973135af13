"""The coordinator's calls to nodes: the `NodeCalls` port, its grpc.aio adapter, and the bounded read
of one dispatch's event stream.

One cached channel per node address, with keepalive, until `reset` (or until the certificate files
change: i2v_common.channels): gRPC keepalive finds a dead
connection between calls, the stream bounds find one during a call. A node sends its first event at
once after accepting a dispatch and a heartbeat every 2 s of silence, so a stream with no event for
`first_event_s` after it started, or for `idle_s` later, is cancelled, counts as failed, and that
node's channel is rebuilt (a half-dead connection costs at most one attempt).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Protocol

import grpc

from i2v_common import keepalive
from i2v_common.channels import ChannelFactory, ChannelPool
from i2v_common.rpc import node_pb2_grpc
from i2v_common.tls import tls_failure_hint
from i2v_contract.wire import common_pb2, node_pb2

MIB = 1024 * 1024


class NodeCallError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def of(cls, err: grpc.aio.AioRpcError, secure: bool) -> NodeCallError:
        """The call's failure; a connection that failed over TLS (or for want of it) says what to do."""
        details = err.details() or ""
        hint = tls_failure_hint(details, secure) if err.code() == grpc.StatusCode.UNAVAILABLE else None
        return cls(err.code(), f"{details}: the node {hint}" if hint else details)


class NodeCalls(Protocol):
    """The coordinator's calls to nodes (gRPC in production, a fake in unit tests)."""

    def generate(
        self, addr: str, request: node_pb2.NodeGenerateRequest
    ) -> AsyncGenerator[common_pb2.GenerateEvent, None]:
        """The node's event stream; raises NodeCallError when the call fails."""
        ...

    async def cancel(self, addr: str, job_id: str) -> bool: ...

    async def reset(self, addr: str) -> None:
        """Drop the connection to `addr` (the next call opens a new one)."""
        ...

    async def close(self) -> None: ...


class GrpcNodeCalls:
    """grpc.aio calls to nodes, one cached channel per node address until `reset`, with keepalive;
    made by `channels` (default: plaintext)."""

    def __init__(
        self,
        cancel_timeout_s: float = 3.0,
        channels: ChannelFactory | None = None,
        *,
        metadata: Callable[[], Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        """`metadata`: what every call presents (the dispatch token for nodes with --tokens-file)."""
        self._metadata = metadata or (lambda: ())
        channels = channels or ChannelFactory()
        self._secure = channels.secure
        self._pool = ChannelPool(
            channels,
            [("grpc.max_receive_message_length", 128 * MIB), *keepalive.CHANNEL_OPTIONS],
        )
        self._cancel_timeout_s = cancel_timeout_s

    async def generate(
        self, addr: str, request: node_pb2.NodeGenerateRequest
    ) -> AsyncGenerator[common_pb2.GenerateEvent, None]:
        async with self._pool.hold(addr) as channel:
            call = node_pb2_grpc.NodeStub(channel).Generate(request, metadata=tuple(self._metadata()))
            try:
                async for event in call:
                    yield event
            except grpc.aio.AioRpcError as err:
                raise NodeCallError.of(err, self._secure) from None
            finally:
                call.cancel()

    async def cancel(self, addr: str, job_id: str) -> bool:
        async with self._pool.hold(addr) as channel:
            try:
                response = await node_pb2_grpc.NodeStub(channel).Cancel(
                    node_pb2.NodeCancelRequest(job_id=job_id),
                    timeout=self._cancel_timeout_s,
                    metadata=tuple(self._metadata()),
                )
            except grpc.aio.AioRpcError as err:
                raise NodeCallError.of(err, self._secure) from None
        return bool(response.cancelled)

    async def reset(self, addr: str) -> None:
        await self._pool.reset(addr)

    async def close(self) -> None:
        await self._pool.close()


async def follow_stream(
    calls: NodeCalls,
    addr: str,
    request: node_pb2.NodeGenerateRequest,
    on_progress: Callable[[common_pb2.Progress], None],
    *,
    first_event_s: float,
    idle_s: float,
) -> None:
    """Read one dispatch's event stream to its end, passing each progress event on; NodeCallError when
    the call fails or goes silent (then the call is cancelled and the channel dropped)."""
    stream = calls.generate(addr, request)
    bound = first_event_s
    try:
        while True:
            try:
                async with asyncio.timeout(bound):  # not wait_for: it can swallow a cancel
                    event = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                # Cancelling the read cancelled the call; the connection is presumed dead.
                await calls.reset(addr)
                raise NodeCallError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"no event from the node for {bound:g} s (it sends one at once, then a "
                    "heartbeat every 2 s): connection presumed dead, call cancelled",
                ) from None
            bound = idle_s
            if event.HasField("progress"):
                on_progress(event.progress)
    finally:
        await stream.aclose()
