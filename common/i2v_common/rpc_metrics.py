"""Per-RPC counts, latency and streams open on a grpc.aio server, by service, method and status code.

`RpcMetrics.interceptor()` goes into the server's interceptors. Labels are bounded by the services
the server was built with (`services`, full names: its own, health, reflection): a call to any other
method (a client's typo, a probe) counts as service and method "other", so no caller can grow the
label set. A streaming call's latency is the stream's whole life (Watch and Generate last a job).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
OTHER = "other"


def service_methods(services: Iterable[str]) -> frozenset[tuple[str, str]]:
    """(service, method) pairs of the named services, from the registered protobuf descriptors."""
    pool = descriptor_pool.Default()
    return frozenset((name, m.name) for name in services for m in pool.FindServiceByName(name).methods)


def _code_name(context: grpc.aio.ServicerContext, default: str) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), default)
    return default


def outcome(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
    """The status code name a handler ended with: what it set or aborted with, CANCELLED when its
    task was cancelled (the client went away), UNKNOWN for any other exception (gRPC reports it so)."""
    if exc is None:
        return _code_name(context, "OK")
    if isinstance(exc, asyncio.CancelledError | GeneratorExit) or context.cancelled():
        return "CANCELLED"
    # An abort sets the code, then sends it; when the client has already hung up the send fails
    # (grpc raises ExecuteBatchError, not AbortError), and the code is still what the handler answered.
    return _code_name(context, "UNKNOWN")


class RpcMetrics:
    """i2v_rpc_handled_total{service,method,code}, i2v_rpc_duration_seconds{service,method},
    i2v_rpc_in_flight{service,method} for the servers built with these `services`."""

    def __init__(self, registry: CollectorRegistry, services: Iterable[str]) -> None:
        self.known = service_methods(services)
        self.handled = Counter(
            "i2v_rpc_handled",
            "RPCs finished, by service, method and gRPC status code",
            ["service", "method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "i2v_rpc_duration_seconds",
            "RPC latency (a stream: its whole life), by service and method",
            ["service", "method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "i2v_rpc_in_flight",
            "RPCs and streams open now, by service and method",
            ["service", "method"],
            registry=registry,
        )
        for service, method in self.known:
            self.handled.labels(service, method, "OK")
            self.duration.labels(service, method)
            self.in_flight.labels(service, method)

    def labels(self, full_method: str) -> tuple[str, str]:
        """'/i2v.v1.Node/Generate' -> ('i2v.v1.Node', 'Generate'); ('other', 'other') if unknown."""
        service, _, method = full_method.lstrip("/").partition("/")
        return (service, method) if (service, method) in self.known else (OTHER, OTHER)

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return _Interceptor(self)

    def finished(self, labels: tuple[str, str], code: str, seconds: float) -> None:
        self.handled.labels(*labels, code).inc()
        self.duration.labels(*labels).observe(seconds)


class _Tracked:
    """Times one call and counts its outcome, whatever way it ends."""

    def __init__(self, metrics: RpcMetrics, labels: tuple[str, str], context: grpc.aio.ServicerContext):
        self._metrics = metrics
        self._labels = labels
        self._context = context
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()
        self._metrics.in_flight.labels(*self._labels).inc()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._metrics.in_flight.labels(*self._labels).dec()
        self._metrics.finished(self._labels, outcome(self._context, exc), time.perf_counter() - self._start)


def _unary(metrics: RpcMetrics, labels: tuple[str, str], behavior: Callable[..., Awaitable[Any]]) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with _Tracked(metrics, labels, context):
            return await behavior(request, context)

    return wrapped


def _stream(metrics: RpcMetrics, labels: tuple[str, str], behavior: Callable[..., Any]) -> Any:
    if not inspect.isasyncgenfunction(behavior):  # a handler that writes with context.write()
        return _unary(metrics, labels, behavior)

    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with _Tracked(metrics, labels, context):
            async for item in behavior(request, context):
                yield item

    return wrapped


class _Interceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc has no type stubs here
    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        labels = self._metrics.labels(handler_call_details.method)
        if handler is None:  # gRPC answers UNIMPLEMENTED
            self._metrics.finished(labels, "UNIMPLEMENTED", 0.0)
            return handler
        m = self._metrics
        serdes = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_unary(m, labels, handler.unary_unary), **serdes)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(_stream(m, labels, handler.unary_stream), **serdes)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(_unary(m, labels, handler.stream_unary), **serdes)
        return grpc.stream_stream_rpc_method_handler(_stream(m, labels, handler.stream_stream), **serdes)
