"""What every server process exposes besides its own service: gRPC health (overall and per
service) and reflection (v1 and v1alpha) on the service port, and Prometheus /metrics over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from i2v_common import reflection
from i2v_common.handlers import HandlerWrap, add_servicer
from i2v_common.ratelog import RateLimitedLog
from i2v_common.sdnotify import Notifier
from i2v_common.tls import ServerTls, server_credentials
from i2v_contract.addresses import format_address, parse_address

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def served_services(service: str) -> tuple[str, ...]:
    """Every service an RpcServer for `service` answers: it, health and reflection."""
    return (service, HEALTH_SERVICE, reflection.V1ALPHA_SERVICE)


class RpcServer:
    """One grpc.aio server for `service` (its full name) with health and reflection beside it, through
    `interceptors` (e.g. i2v_common.rpc_metrics); the owner adds its own servicer (`add_servicer`:
    unparseable requests are INVALID_ARGUMENT) before start().

    Health starts NOT_SERVING for "" and for `service`; the owner says when it serves, and may
    publish further names (`set_status`), which `set_serving(False)` turns NOT_SERVING as well."""

    def __init__(
        self,
        service: str,
        options: Sequence[tuple[str, Any]],
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        notifier: Notifier | None = None,
    ) -> None:
        self.service = service
        # systemd hears "ready" the first time the server serves and "stopping" when it stops serving.
        self._notifier = notifier if notifier is not None else Notifier.from_env()
        self._ready = False
        # No port sharing: a second process on our port must fail to bind, never split the traffic.
        options = [("grpc.so_reuseport", 0), *options]
        self.server = grpc.aio.server(options=options, interceptors=list(interceptors))
        self.health = health.aio.HealthServicer()
        self._extra: set[str] = set()
        self._limiter = RateLimitedLog(logging.getLogger("i2v_common.handlers"))
        # Through add_servicer too: a health probe of bytes that do not parse is INVALID_ARGUMENT.
        add_servicer(
            self.server, health_pb2_grpc.add_HealthServicer_to_server, self.health, limiter=self._limiter
        )
        reflection.enable(self.server, (service, HEALTH_SERVICE), self._limiter)

    def bind(self, listen: str, tls: ServerTls | None = None) -> str:
        """Listen on `listen` (port 0 picks one), over TLS when `tls` is given (then only over TLS);
        the bound address. RuntimeError if it cannot, TlsConfigError if the files cannot be used."""
        host, _ = parse_address(listen)
        if tls is None:
            return format_address(host, self.server.add_insecure_port(listen))
        return format_address(host, self.server.add_secure_port(listen, server_credentials(tls)))

    def add_servicer(
        self, add: Callable[[Any, Any], None], servicer: object, *, wrap: HandlerWrap | None = None
    ) -> None:
        """`add(servicer, server)` (a generated add_*Servicer_to_server), with parsing guarded."""
        add_servicer(self.server, add, servicer, wrap=wrap, limiter=self._limiter)

    async def set_serving(self, serving: bool) -> None:
        for name in ("", self.service):
            await self.health.set(name, _status(serving))
        if not serving:
            for name in sorted(self._extra):
                await self.health.set(name, _status(False))
        if self._notifier is not None and serving != self._ready:
            self._ready = serving
            self._notifier.send(
                *(("READY=1", "STATUS=serving") if serving else ("STOPPING=1", "STATUS=draining"))
            )

    async def set_status(self, name: str, serving: bool) -> None:
        """Health of a name of the owner's choosing (e.g. a role), beside "" and the service."""
        self._extra.add(name)
        await self.health.set(name, _status(serving))

    async def start(self) -> None:
        await self.set_serving(False)
        await self.server.start()

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)


_SERVING = {True: health_pb2.HealthCheckResponse.SERVING, False: health_pb2.HealthCheckResponse.NOT_SERVING}


def _status(serving: bool) -> Any:
    return _SERVING[serving]


class MetricsHttp:
    """/metrics of `registry` served from a daemon thread on `listen` (OSError if it cannot bind)."""

    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        host, port = parse_address(listen)
        self._server: WSGIServer
        self._server, _ = start_http_server(port, addr=host, registry=registry)
        self.port = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
