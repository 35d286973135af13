"""Adding a servicer with its request parsing guarded, and a seam to wrap its method handlers.

grpc.aio parses a request with the handler's `request_deserializer` before the servicer (or any
server interceptor) runs, and turns whatever that raises into UNKNOWN "Unexpected DecodeError",
logging a traceback for every such call. So `add_servicer` lets the generated
`add_*Servicer_to_server` register into a stand-in, rebuilds each handler with a deserializer that
never raises (it returns an `Unparsed` marker) and a behaviour that answers the marker with
INVALID_ARGUMENT naming the method and the message type, logging one line per method at most every
10 s with the count held back (ratelog.py), then registers the handlers on the real server.

`wrap(method, handler)` sees every handler first (the coordinator's front door uses it); its
behaviours receive parsed requests only. A method with streamed requests (reflection's) gets its
requests through an iterator that ends the call the same way at the first one that does not parse.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from i2v_common.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

Handler = Any  # grpc.RpcMethodHandler (grpc ships no type hints)
HandlerWrap = Callable[[str, Handler], Handler]
Behavior = Callable[..., Any]

_ERROR_MAX_CHARS = 200


@dataclass(frozen=True)
class Unparsed:
    """What the guarded deserializer returns for bytes that are not the request message."""

    type_name: str
    size: int
    error: str


class _Capture:
    """Stands in for the server while a generated add_*Servicer_to_server registers its handlers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, Handler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """The same handlers come through add_registered_method_handlers."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self.service, self.handlers = service, dict(handlers)


def capture(add: Callable[[Any, Any], None], servicer: object) -> tuple[str, dict[str, Handler]]:
    """(service full name, method name -> handler) as `add(servicer, server)` would register them."""
    stand_in = _Capture()
    add(servicer, stand_in)
    if not stand_in.service:
        raise ValueError(f"{add.__name__} registered no method handlers; regenerate the stubs")
    return stand_in.service, stand_in.handlers


def rebuild(
    handler: Handler,
    *,
    behavior: Behavior | None = None,
    request_deserializer: Callable[[bytes], Any] | None = None,
    response_serializer: Callable[[Any], bytes] | None = None,
) -> Handler:
    """`handler` with any of its behaviour, request deserializer and response serializer replaced."""
    kinds = {
        (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
        (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
        (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
        (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
    }
    attribute, make = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return make(
        behavior or getattr(handler, attribute),
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=response_serializer or handler.response_serializer,
    )


def message_name(deserializer: Callable[[bytes], Any] | None) -> str:
    """The protobuf type a generated deserializer (`Message.FromString`) parses."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request message"))


def guarded_deserializer(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    type_name = message_name(deserializer)

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # DecodeError, or anything a custom deserializer raises
            return Unparsed(type_name, len(raw), str(exc)[:_ERROR_MAX_CHARS])

    return parse


def unparsed_message(path: str, bad: Unparsed) -> str:
    return (
        f"{path}: the {bad.size} request bytes are not a valid {bad.type_name} message ({bad.error}); "
        f"send a serialized {bad.type_name}"
    )


Refuse = Callable[[Unparsed, grpc.aio.ServicerContext], Awaitable[None]]


def guard_parse(path: str, handler: Handler, limiter: RateLimitedLog) -> Handler:
    """`handler` (method `path`) answering unparseable requests INVALID_ARGUMENT, logged at a bounded rate."""
    if handler.request_deserializer is None:
        return handler

    async def refuse(bad: Unparsed, context: grpc.aio.ServicerContext) -> None:
        limiter.log(
            path, "refused an unparseable request from %s: %s", context.peer(), unparsed_message(path, bad)
        )
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, unparsed_message(path, bad))

    if handler.request_streaming:
        behavior: Behavior = _streamed_requests(handler, refuse)
    elif handler.response_streaming:
        inner = handler.unary_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Unparsed):
                await refuse(request, context)
            answer = inner(request, context)
            if inspect.isasyncgen(answer):
                async for item in answer:
                    yield item
            else:  # a coroutine that writes through context.write
                await answer

        behavior = streaming
    else:
        single = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Unparsed):
                await refuse(request, context)
            answer = single(request, context)
            return await answer if inspect.isawaitable(answer) else answer

        behavior = unary
    return rebuild(
        handler, behavior=behavior, request_deserializer=guarded_deserializer(handler.request_deserializer)
    )


def _streamed_requests(handler: Handler, refuse: Refuse) -> Behavior:
    """The behaviour of a streamed-request `handler`, fed only parsed requests."""

    async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Unparsed):
                await refuse(request, context)
            yield request

    if handler.response_streaming:
        inner = handler.stream_stream

        async def both(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            answer = inner(checked(requests, context), context)
            if inspect.isasyncgen(answer):
                async for item in answer:
                    yield item
            else:
                await answer

        return both
    single = handler.stream_unary

    async def unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        answer = single(checked(requests, context), context)
        return await answer if inspect.isawaitable(answer) else answer

    return unary


def add_servicer(
    server: Any,
    add: Callable[[Any, Any], None],
    servicer: object,
    *,
    wrap: HandlerWrap | None = None,
    limiter: RateLimitedLog | None = None,
) -> str:
    """Register `servicer` on `server` as `add` would, each handler passed through `wrap` (if any) and
    then guarded (guard_parse); returns the service's full name."""
    service, handlers = capture(add, servicer)
    limiter = limiter or RateLimitedLog(log)
    guarded = {}
    for method, handler in handlers.items():
        wrapped = wrap(method, handler) if wrap is not None else handler
        guarded[method] = guard_parse(f"/{service}/{method}", wrapped, limiter)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, guarded),))
    server.add_registered_method_handlers(service, guarded)
    return service
