"""Every client call's way in: the Coordinator service's handlers wrapped by the front door, and the
health names that tell a coordinator that is alive from the one that leads.

`install` adds the servicer through i2v_common.handlers (unparseable requests are INVALID_ARGUMENT
there), and `FrontDoor.wrap` puts each job call through frontdoor.py's decisions before the
servicer sees it: the caller's token (with --tokens-file: UNAUTHENTICATED here, before any hop),
the field check, then local, forwarded (forwarder.py, the caller's `authorization` going along so
the leader decides on the same identity) or refused. A forwarded answer is the leader's bytes, so
the handlers' response serializers pass bytes through unchanged.

Health (grpc.health.v1) on every coordinator:
- "" and `i2v.v1.Coordinator`: SERVING from start until drain, on the leader and on standbys alike
  (a standby serves every call, forwarding job calls): readiness and liveness;
- `i2v.v1.Coordinator.Leader`: SERVING only while this coordinator leads (from the start of each
  term to its end): for a leader-only Service, or to find the leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc

from i2v_common import errors
from i2v_common.channels import ChannelFactory
from i2v_common.handlers import Handler, add_servicer, rebuild
from i2v_common.ratelog import RateLimitedLog
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.limits import FieldError
from i2v_contract.reasons import field_details
from i2v_contract.wire import LEADER_HEALTH, coordinator_pb2
from i2v_coordinator.access import Access
from i2v_coordinator.etcdhealth import EtcdHealth
from i2v_coordinator.forwarder import Forwarder
from i2v_coordinator.frontdoor import (
    JOB_METHODS,
    Route,
    Routing,
    field_problem,
    forwarded_by,
    refusal_trailers,
    route,
)
from i2v_coordinator.term import Term

log = logging.getLogger(__name__)

SERVICE = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name


class DoorLeadership(Protocol):
    member_id: str
    addr: str

    @property
    def term(self) -> Term | None: ...

    @property
    def leader(self) -> tuple[str, str] | None: ...

    def leader_changed(self) -> asyncio.Event: ...


class InTerm(Protocol):
    @property
    def term(self) -> Term | None: ...


def _passthrough(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def serializer(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    return serializer


class FrontDoor:
    def __init__(
        self,
        leadership: DoorLeadership,
        dispatcher: InTerm,
        etcd: EtcdHealth,
        access: Access | None = None,
        channels: ChannelFactory | None = None,
    ) -> None:
        self._leadership = leadership
        self._access = access or Access()
        self._dispatcher = dispatcher
        self._etcd = etcd
        self.forwarder = Forwarder(leadership, leadership.member_id, channels)

    def leading(self) -> bool:
        """Leading and dispatching in the term (what the servicer serves job calls in)."""
        term = self._leadership.term
        return term is not None and self._dispatcher.term is term

    def routing(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> Routing | FieldError:
        """Where the call goes, or what makes the request malformed (INVALID_ARGUMENT)."""
        problem = field_problem(method, request)
        if problem is not None:
            return problem
        me = self._leadership
        return route(
            method,
            me=me.member_id,
            my_addr=me.addr,
            leading=self.leading(),
            leader=me.leader,
            forwarded_by=forwarded_by(context.invocation_metadata() or ()),
            etcd_error=self._etcd.error,
        )

    async def _admit(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> Routing:
        await self._access.who(context)
        routing = self.routing(method, request, context)
        if isinstance(routing, FieldError):
            await errors.abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, routing.message, field_details(routing)
            )
        if routing.route is Route.REFUSE:
            trailers = refusal_trailers(routing.leader_addr)
            await context.abort(grpc.StatusCode.UNAVAILABLE, routing.message, trailers)
        return routing

    def wrap(self, method: str, handler: Handler) -> Handler:
        """handlers.HandlerWrap: job calls go through the door; the cluster views and Download are
        untouched (served here, never forwarded)."""
        if method not in JOB_METHODS:
            return handler
        path = f"/{SERVICE}/{method}"
        forwarder = self.forwarder
        serializer = _passthrough(handler.response_serializer)
        if handler.response_streaming:
            local_stream = handler.unary_stream

            async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                routing = await self._admit(method, request, context)
                if routing.route is Route.FORWARD:
                    relayed = forwarder.stream(method, path, request.SerializeToString(), context, routing)
                    async for raw in relayed:
                        yield raw
                    return
                async for event in local_stream(request, context):
                    yield event

            return rebuild(handler, behavior=streaming, response_serializer=serializer)
        local_unary = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            routing = await self._admit(method, request, context)
            if routing.route is Route.FORWARD:
                return await forwarder.unary(method, path, request.SerializeToString(), context, routing)
            return await local_unary(request, context)

        return rebuild(handler, behavior=unary, response_serializer=serializer)


def install(server: Any, servicer: object, door: FrontDoor, limiter: RateLimitedLog | None = None) -> None:
    """The Coordinator service on `server`: parsing guarded, job calls through `door`."""
    add_servicer(
        server,
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server,
        servicer,
        wrap=door.wrap,
        limiter=limiter,
    )


async def publish_leader_health(
    terms: AsyncIterator[Term], set_status: Callable[[str, bool], Awaitable[None]]
) -> None:
    """LEADER_HEALTH SERVING for each term, from its start to its end, NOT_SERVING otherwise; one
    term at a time, so a quick end and restart can never leave a stale answer. Until cancelled."""
    await set_status(LEADER_HEALTH, False)
    try:
        async for term in terms:
            await set_status(LEADER_HEALTH, True)
            await term.ended.wait()
            await set_status(LEADER_HEALTH, False)
    finally:
        await set_status(LEADER_HEALTH, False)
