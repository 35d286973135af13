"""The standby's proxy: a job call relayed to the leader and the leader's answer relayed back.

Bytes in, bytes out: the request is sent as serialized (unknown fields and all) and the leader's
messages are passed back unparsed. The caller's deadline becomes the forwarded call's timeout and
its metadata goes along (hop headers aside, `i2v-forwarded-by` added); the leader's initial
metadata, messages, status, details and trailers come back, with `i2v-leader-addr` added so the
bundled client learns where the leader is (on UNAVAILABLE, the leader as seen now: the one called
may be the one that went). A caller that cancels cancels the forwarded call (grpc
cancels the handler, which cancels the call); a leader that cancels or fails ends the caller's
call with its status.

While a call is forwarded the leader key is followed (Leadership.leader_changed): when it names
another leader, or none, the forwarded call is cancelled and the caller's ends UNAVAILABLE naming
the new leader, so a client re-attaches instead of waiting on a leader that is gone or frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, Protocol, TypeVar

import grpc

from i2v_common import keepalive
from i2v_common.channels import ChannelFactory, ChannelPool
from i2v_coordinator.frontdoor import (
    Routing,
    moved,
    outgoing,
    refusal_trailers,
    relayed_initial,
    relayed_trailers,
    same_leader,
)

T = TypeVar("T")
MIB = 1024 * 1024
MAX_CHANNELS = 8  # leader addresses kept open; the least recently used goes first

CHANNEL_OPTIONS = (
    *keepalive.CHANNEL_OPTIONS,
    ("grpc.max_send_message_length", 64 * MIB),  # a Submit's image (20 MiB) and the request
    ("grpc.max_receive_message_length", 128 * MIB),  # far above any answer (results go by reference)
)


class SeesLeader(Protocol):
    @property
    def leader(self) -> tuple[str, str] | None: ...

    def leader_changed(self) -> asyncio.Event: ...


class _Moved:
    """The leader changed before the forwarded call's next step."""


_MOVED = _Moved()


class Forwarder:
    def __init__(
        self, leadership: SeesLeader, member_id: str, channels: ChannelFactory | None = None
    ) -> None:
        self._leadership = leadership
        self._me = member_id
        self._pool = ChannelPool(channels or ChannelFactory(), CHANNEL_OPTIONS, max_open=MAX_CHANNELS)

    async def close(self) -> None:
        await self._pool.close()

    async def _leader_moved(self, routing: Routing) -> None:
        """Returns once the leader key names another leader than `routing`'s (or none)."""
        while True:
            changed = self._leadership.leader_changed()
            if not same_leader(routing, self._leadership.leader):
                return
            await changed.wait()

    async def _unless_moved(self, step: Awaitable[T], routing: Routing) -> T | _Moved:
        """`step`'s result, or _MOVED if the leader changed first (then `step` is cancelled)."""
        work = asyncio.ensure_future(step)
        watch = asyncio.ensure_future(self._leader_moved(routing))
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not work.done():
                work.cancel()
        return work.result() if work.done() and not work.cancelled() else _MOVED

    async def _relay_error(
        self, err: grpc.aio.AioRpcError, routing: Routing, context: grpc.aio.ServicerContext
    ) -> None:
        """End the caller's call as the leader (or the hop to it) ended the forwarded one. An
        UNAVAILABLE hints at the leader as seen now (the one called may be the one that is gone)."""
        hint = routing.leader_addr
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            hint = (self._leadership.leader or ("", ""))[1]
        trailers = relayed_trailers(err.trailing_metadata(), hint)
        await context.abort(err.code(), err.details() or "", trailers)

    async def _refuse_moved(self, method: str, routing: Routing, context: grpc.aio.ServicerContext) -> None:
        now = moved(method, self._me, routing, self._leadership.leader)
        await context.abort(grpc.StatusCode.UNAVAILABLE, now.message, refusal_trailers(now.leader_addr))

    def _call_options(self, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        remaining = context.time_remaining()
        return {
            "timeout": None if remaining is None else max(0.001, remaining),
            "metadata": outgoing(context.invocation_metadata() or (), self._me),
        }

    async def unary(
        self, method: str, path: str, request: bytes, context: grpc.aio.ServicerContext, routing: Routing
    ) -> bytes:
        async with self._pool.hold(routing.leader_addr) as channel:
            return await self._unary(method, channel.unary_unary(path), request, context, routing)

    async def _unary(
        self,
        method: str,
        rpc: grpc.aio.UnaryUnaryMultiCallable,
        request: bytes,
        context: grpc.aio.ServicerContext,
        routing: Routing,
    ) -> bytes:
        call = rpc(request, **self._call_options(context))
        try:
            answer = await self._unless_moved(call, routing)
            if isinstance(answer, _Moved):
                await self._refuse_moved(method, routing, context)
            initial = relayed_initial(await call.initial_metadata())
            if initial:
                await context.send_initial_metadata(initial)
            context.set_trailing_metadata(
                relayed_trailers(await call.trailing_metadata(), routing.leader_addr)
            )
            assert isinstance(answer, bytes)
            return answer
        except grpc.aio.AioRpcError as err:
            await self._relay_error(err, routing, context)
            raise AssertionError("abort returned") from None
        finally:
            call.cancel()

    async def stream(
        self, method: str, path: str, request: bytes, context: grpc.aio.ServicerContext, routing: Routing
    ) -> AsyncIterator[bytes]:
        async with (
            self._pool.hold(routing.leader_addr) as channel,
            contextlib.aclosing(
                self._stream(method, channel.unary_stream(path), request, context, routing)
            ) as relayed,
        ):
            async for message in relayed:
                yield message

    async def _stream(
        self,
        method: str,
        rpc: grpc.aio.UnaryStreamMultiCallable,
        request: bytes,
        context: grpc.aio.ServicerContext,
        routing: Routing,
    ) -> AsyncGenerator[bytes, None]:
        call = rpc(request, **self._call_options(context))
        first = True
        try:
            while True:
                message = await self._unless_moved(call.read(), routing)
                if isinstance(message, _Moved):
                    await self._refuse_moved(method, routing, context)
                    return
                if message is grpc.aio.EOF:
                    break
                if first:
                    first = False
                    initial = relayed_initial(await call.initial_metadata())
                    if initial:
                        await context.send_initial_metadata(initial)
                yield message
            context.set_trailing_metadata(
                relayed_trailers(await call.trailing_metadata(), routing.leader_addr)
            )
        except grpc.aio.AioRpcError as err:
            await self._relay_error(err, routing, context)
        finally:
            call.cancel()
