"""The i2v.v1.Node gRPC servicer: admission, progress streaming, Cancel and Status.

The work is elsewhere: the node's state (state.py), request checks (validation.py), the one job slot
and its engine thread (slot.py), how a job ends (result.py), its progress and heartbeats
(progress.py). The servicer also carries the calls the server and the cluster wiring make on those.

A standalone request (no job_id) is validated before it takes the slot, and its caller's cancel or
deadline stops it. A dispatched request (job_id set) is claimed first and validated after (see
slot.py), and the job keeps running when the caller's stream drops (a leader crash): only
Node.Cancel(job_id) or the drain grace period stops it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import grpc

from i2v_common import errors
from i2v_common.artifacts import ArtifactStore
from i2v_common.ratelog import RateLimitedLog
from i2v_common.rpc import node_pb2_grpc
from i2v_common.tls import peer_names
from i2v_contract.ids import check_job_id
from i2v_contract.limits import FieldError, Limits
from i2v_contract.reasons import ErrorDetails, Reason, details, field_details
from i2v_contract.version import package_version
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.chunks import result_events
from i2v_node.gpu import MemoryMonitor, MemoryReading
from i2v_node.hooks import JobHooks
from i2v_node.identity import dispatcher_refusal, is_dispatch
from i2v_node.metrics import NodeMetrics
from i2v_node.progress import HEARTBEAT_INTERVAL_S, EventRelay
from i2v_node.running import DEADLINE, Final, RunningJob
from i2v_node.slot import JobSlot
from i2v_node.state import ServingState
from i2v_node.validation import NodeFault, Prepared, RequestChecker, default_profile, dispatch_error

if TYPE_CHECKING:
    from i2v_node.engine import Engine

log = logging.getLogger(__name__)


def dispatch_details(err: FieldError) -> ErrorDetails:
    """INVALID_DISPATCH, naming the field and what is wrong with it (never echoing the bad id)."""
    return dataclasses.replace(field_details(err), reason=Reason.INVALID_DISPATCH.value)


class NodeServicer(node_pb2_grpc.NodeServicer):
    def __init__(
        self,
        *,
        node_id: str,
        monitor: MemoryMonitor,
        metrics: NodeMetrics,
        limits: Limits,
        max_result_bytes: int,
        hooks: JobHooks | None = None,
        artifacts: ArtifactStore | None = None,
        random_seed: Callable[[], int] = lambda: secrets.randbits(63),
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
        dispatchers: frozenset[str] | None = None,
    ) -> None:
        """`dispatchers`: the certificate names that may dispatch (None: no check, mTLS is off)."""
        self.node_id = node_id
        self.dispatchers = dispatchers
        self._refusals = RateLimitedLog(log)  # any caller with a certificate can repeat them
        self.metrics = metrics
        self.limits = limits
        self.heartbeat_interval = heartbeat_interval
        self.state = ServingState(monitor, metrics)
        self.checker = RequestChecker(limits, artifacts, random_seed)
        self.slot = JobSlot(
            node_id=node_id,
            state=self.state,
            metrics=metrics,
            checker=self.checker,
            max_result_bytes=max_result_bytes,
            hooks=hooks,
        )

    # --- what the server and the cluster wiring use ------------------------------------------

    @property
    def engine(self) -> Engine | None:
        return self.state.engine

    @property
    def job(self) -> RunningJob | None:
        return self.slot.job

    @property
    def serving(self) -> bool:
        return self.state.serving

    @property
    def tier(self) -> int:
        return self.state.tier

    @property
    def reading(self) -> MemoryReading | None:
        return self.state.reading

    @property
    def hooks(self) -> JobHooks:
        return self.slot.hooks

    @hooks.setter
    def hooks(self, hooks: JobHooks) -> None:
        self.slot.hooks = hooks

    def set_engine(self, engine: Engine) -> None:
        self.state.set_engine(engine)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (on the event loop) whenever busy, serving or the memory reading changes."""
        self.state.add_listener(callback)

    def observe_memory(self) -> MemoryReading:
        return self.state.observe_memory()

    async def probe(self) -> MemoryReading:
        return await self.state.probe()

    def start_drain(self) -> None:
        self.slot.start_drain()

    async def wait_idle(self, grace_seconds: float) -> bool:
        return await self.slot.wait_idle(grace_seconds)

    def close(self) -> None:
        self.slot.close()

    # --- RPCs --------------------------------------------------------------------------------

    async def Generate(
        self, request: node_pb2.NodeGenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.GenerateEvent]:
        received = time.monotonic()
        engine, prepared = await self._admit(request, context)
        job = self.slot.take(request, received)
        timer: asyncio.TimerHandle | None = None
        remaining = context.time_remaining()
        if remaining is not None and not job.dispatched:
            job.deadline = time.monotonic() + remaining
            timer = asyncio.get_running_loop().call_later(max(0.0, remaining), job.cancel_for, DEADLINE)
        self.slot.start(job, engine, prepared)
        relay = EventRelay(job, self.heartbeat_interval)
        try:
            while not isinstance(item := await relay.next(), Final):
                yield item
            if item.result is None:
                await errors.abort(context, item.code, item.message, item.details)
            for event in result_events(item.result):
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            job.caller_gone()
            raise
        finally:
            relay.close()
            if timer is not None:
                timer.cancel()

    async def _admit(
        self, request: node_pb2.NodeGenerateRequest, context: grpc.aio.ServicerContext
    ) -> tuple[Engine, Prepared | None]:
        """Refuse what cannot run now, in this order: draining, loading, a malformed dispatch, bad
        input (standalone requests only), busy. Returns the engine and a standalone request's checks."""
        engine = self.state.engine
        if is_dispatch(request):
            await self._check_dispatcher(context, "dispatch", request.job_id)
        if self.state.draining:
            self.metrics.job_done("unavailable")
            await errors.abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "node is draining; retry on another node",
                details(Reason.NODE_DRAINING, node_id=self.node_id),
            )
        if engine is None:
            self.metrics.job_done("unavailable")
            await errors.abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "node is still loading its model; retry in a few seconds or use another node",
                details(Reason.NODE_LOADING, node_id=self.node_id),
            )
        if (bad := dispatch_error(request)) is not None:
            self.metrics.job_done("invalid")
            log.info("rejected dispatch: %s", bad)
            await errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, bad.message, dispatch_details(bad))
        prepared: Prepared | None = None
        # A dispatched job is validated after its claim (in the slot), so bad input still gets a result.
        if not request.job_id:
            try:
                prepared = await self.checker.validate(request, engine)
            except FieldError as err:
                self.metrics.job_done("invalid")
                log.info("rejected request: %s", err)
                await errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err), field_details(err))
            except NodeFault as err:
                self.metrics.job_done("failed")
                log.warning("refused a request: %s", err.message)
                await context.abort(err.code, err.message)
        if (running := self.slot.job) is not None:
            self.metrics.job_done("busy")
            log.info("refused a job: busy with %s", running.job_id)
            await errors.abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"node busy with job {running.job_id}; retry later or use another node",
                details(Reason.NODE_BUSY, node_id=self.node_id, job_id=running.job_id),
            )
        return engine, prepared

    async def _check_dispatcher(self, context: grpc.aio.ServicerContext, what: str, job_id: str) -> None:
        if self.dispatchers is None:
            return
        refusal = dispatcher_refusal(peer_names(context), self.dispatchers, what)
        if refusal is not None:
            shown = repr(job_id[:64]) if job_id else "(any)"
            self._refusals.log(what, "refused a %s of job %s: %s", what, shown, refusal)
            await errors.abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                refusal,
                details(Reason.NOT_A_DISPATCHER, node_id=self.node_id),
            )

    async def Cancel(
        self, request: node_pb2.NodeCancelRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.NodeCancelResponse:
        if request.job_id:
            try:
                check_job_id("job_id", request.job_id)
            except FieldError as err:
                await errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, err.message, field_details(err))
        running = self.slot.job
        if request.job_id or (running is not None and running.dispatched):
            # Only a coordinator stops a dispatched job.
            await self._check_dispatcher(context, "cancel", request.job_id)
        return node_pb2.NodeCancelResponse(cancelled=self.slot.cancel(request.job_id))

    async def Status(
        self, request: node_pb2.NodeStatusRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.NodeStatus:
        reading = await self.state.probe()
        engine = self.state.engine
        job = self.slot.job
        status = node_pb2.NodeStatus(
            node_id=self.node_id,
            tier=self.state.tier,  # type: ignore[arg-type]
            device=f"{reading.label} {reading.name}",
            total_bytes=reading.total_bytes,
            free_bytes=reading.free_bytes,
            busy=job is not None,
            job_id=job.job_id if job else "",
            version=package_version(),
            serving=self.state.serving,
        )
        if engine is not None:
            status.model = engine.model_id
            status.profiles.extend(p.name for p in engine.ladder)
            status.profile = default_profile(engine, reading, self.limits).profile.name
        return status
