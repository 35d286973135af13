"""The leader's loop: reconcile, pair queued jobs with free nodes, dispatch, follow claims and results.

In each term this coordinator leads (term.py: epoch E, fixed for the term; docs/architecture.md, life
of a job):
1. load jobs/, claims/, results/ at one revision R, reconcile every open job (reconcile.py, which
   also takes back every unclaimed assignment this fresh loop has no call for), then follow the
   table from R + 1;
2. on every wake-up (submit, node change, claim, result, node call ended, or the sweep timer) fold
   the changed jobs through reconcile again and apply what changed with writes fenced by E;
3. plan a round with queue.next_dispatches and, per dispatch, commit ASSIGNED (fenced, compared on
   the job's mod revision) and call Node.Generate with that txn's revision as assign_revision,
   relaying the stream's progress to the ProgressHub (attempt.py; nodecalls.follow_stream bounds the
   stream's silences). The node's own claim and result records, not the stream, move the job on; a
   stream that fails before the node claimed is judged by jobs.on_dispatch_failed;
4. feed what each attempt says about its node (jobs.NodeReport: claim timeout, dispatch failure,
   node-side result failure, success) to the fleet (fleet.py, health.py); the resulting cooldown and
   set-aside are inputs to routing (NodeView.cooldown_s, NodeView.set_aside), not branches here.

Every decision comes back with its reason, logged here. All writes happen in this loop (the call
tasks only report back). The loop, its job watch and the node streams run in the term's scope, so
the end of the term stops them all at once (a claimed job keeps running on its node), and every
watch stream is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from i2v_common.artifacts import ArtifactStore
from i2v_contract import states
from i2v_coordinator import attempt, health, jobs, reconcile
from i2v_coordinator.fleet import Fleet
from i2v_coordinator.health import DEFAULT_HEALTH, HealthPolicy, NodeHealth, Standing
from i2v_coordinator.jobs import CallFailure, JobView, NodeReport
from i2v_coordinator.jobstore import Fenced, JobStore, LegacyBacklog
from i2v_coordinator.jobtable import Change, ChangeKind, job_event
from i2v_coordinator.nodecalls import NodeCalls
from i2v_coordinator.progress import ProgressHub
from i2v_coordinator.queue import DEFAULT_POLICY, QueuedJob, QueuePolicy, next_dispatches
from i2v_coordinator.reconcile import ActionKind
from i2v_coordinator.records import JobRecord
from i2v_coordinator.routing import NodeView
from i2v_coordinator.term import Term, serve_terms

log = logging.getLogger(__name__)


class LeadershipView(Protocol):
    """What the dispatcher reads of leadership.Leadership: the terms it leads, as they start."""

    def terms(self) -> AsyncIterator[Term]: ...


class NodeSource(Protocol):
    def snapshot(self) -> tuple[NodeView, ...]: ...

    def on_change(self, callback: Callable[[], None]) -> None: ...


class DispatchMetrics(Protocol):
    def dispatch_retry(self) -> None: ...

    def node_failure(self, kind: str, set_aside: bool) -> None: ...

    def nodes_held_back(self, cooling: int, set_aside: int) -> None: ...

    def requeued(self) -> None: ...

    def queue_depth(self, depth: int) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def end_to_end(self, seconds: float) -> None: ...

    def finished(self, state: int, code: int) -> None: ...


@dataclass(frozen=True)
class DispatchConfig:
    claim_timeout_s: float = 10.0  # an assignment not claimed by then is taken back
    max_attempts: int = 3  # attempts lost to nodes before the job fails
    sweep_interval_s: float = 1.0  # full reconcile of open jobs (claim timeouts, vanished nodes)
    first_event_s: float = 5.0  # a node sends its first event at once after accepting a dispatch
    stream_idle_s: float = 10.0  # nodes send a heartbeat every 2 s of silence
    health: HealthPolicy = DEFAULT_HEALTH  # node cooldown and set-aside after failures
    recent_window_s: float = 60.0  # assignments counted as "recent load" for routing
    max_queue: int = 1000  # admission bound on QUEUED jobs
    queue_policy: QueuePolicy = DEFAULT_POLICY


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        leadership: LeadershipView,
        registry: NodeSource,
        hub: ProgressHub,
        calls: NodeCalls,
        artifacts: ArtifactStore,
        *,
        config: DispatchConfig | None = None,
        metrics: DispatchMetrics,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.config = config or DispatchConfig()
        self._leadership = leadership
        self._registry = registry
        self._hub = hub
        self._calls = calls
        self._artifacts = artifacts
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._wakeup = asyncio.Event()
        self._term: Term | None = None  # the term whose lead loop runs now
        self._dirty: set[str] = set()
        self._relisted = False
        self._ended: deque[CallFailure] = deque()
        self._call_tasks: set[asyncio.Task[None]] = set()
        self._skips: dict[str, int] = {}
        self._fleet = Fleet(self.config.health, self.config.recent_window_s, clock)
        self.rounds = 0
        store.on_change(self._on_store_change)
        registry.on_change(self.wake)

    @property
    def term(self) -> Term | None:
        """The term this dispatcher leads in; None while it does not lead."""
        return self._term

    @property
    def epoch(self) -> int:
        """The epoch of the term this dispatcher leads in; 0 while it does not lead."""
        return 0 if self._term is None else self._term.epoch

    @property
    def max_queue(self) -> int:
        """The admission bound on QUEUED jobs."""
        return self.config.max_queue

    def wake(self) -> None:
        self._wakeup.set()

    def queue_depth(self) -> int:
        return self.store.table.queued_count() if self._term else 0

    # --- terms ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Lead in every term the leadership starts, one at a time, until cancelled."""
        await serve_terms(
            self._leadership.terms(),
            self._lead,
            self._after_leading,
            name="dispatch",
            retry_s=self.config.sweep_interval_s,
        )

    async def _after_leading(self, term: Term) -> None:
        tasks = list(self._call_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._term = None
        self._dirty.clear()
        self._ended.clear()
        self._skips.clear()
        self._hub.close_all(
            f"this coordinator stopped leading (epoch {term.epoch}); the job continues: watch it again "
            "through the new leader"
        )

    async def _lead(self, term: Term) -> None:
        """Load and reconcile the whole table, then one turn per wake-up until the term ends."""
        self._term = term
        self._hub.open()
        await self.store.load()
        backlog = LegacyBacklog(self.store, self.store.table.legacy_finished())
        log.info(
            "leading in epoch %d: reconciling %d jobs (%d finished ones of the previous schema to move)",
            term.epoch,
            len(self.store.table.jobs) - len(backlog),
            len(backlog),
        )
        self._relisted = False
        await self._reconcile(list(self.store.table.jobs), term, fresh=True)
        follow = term.spawn(self.store.follow(), f"job-watch-{term.epoch}")
        next_sweep = 0.0
        try:
            while True:
                if follow.done():
                    follow.result()
                    raise RuntimeError("job watch ended")
                if not term.valid():
                    raise Fenced(f"epoch {term.epoch} no longer held (lease not renewed in time or deposed)")
                next_sweep = await self._turn(term, next_sweep)
                if backlog:
                    await backlog.move_batch(term.epoch)  # one per turn: dispatch never waits behind it
                await self._sleep(0.0 if backlog else max(0.0, next_sweep - time.monotonic()))
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follow

    async def _turn(self, term: Term, next_sweep: float) -> float:
        """Reconcile what changed (everything active when the sweep is due), judge the calls that
        ended, plan and dispatch a round; returns when the next sweep is due."""
        now = time.monotonic()
        if self._relisted or now >= next_sweep:
            self._relisted = False
            self._dirty.clear()
            await self._reconcile([r.job_id for r in self.store.table.active()], term)
            next_sweep = now + self.config.sweep_interval_s
        elif self._dirty:
            dirty, self._dirty = self._dirty, set()
            await self._reconcile(sorted(dirty), term)
        while self._ended:
            await self._call_ended(self._ended.popleft(), term)
        await self._dispatch_round(term)
        self.rounds += 1
        return next_sweep

    async def _sleep(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands as the
        # event is set, and a lead loop that survives its cancel keeps running after its term.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
        self._wakeup.clear()

    # --- the job table ----------------------------------------------------------------------

    def _on_store_change(self, change: Change) -> None:
        if self._term is None:
            return
        if change.kind is ChangeKind.RELIST:
            self._relisted = True
        else:
            self._dirty.add(change.job_id)
            if change.kind is ChangeKind.JOB:
                record = self.store.table.get(change.job_id)  # a finished job has left table.jobs
                if record is not None:
                    self._hub.publish(
                        record.job_id, job_event(record, self.store.table), final=record.view.final
                    )
        self.wake()

    async def _reconcile(self, job_ids: Iterable[str], term: Term, *, fresh: bool = False) -> None:
        table = self.store.table
        records = [table.jobs[j] for j in job_ids if j in table.jobs]
        if not records:
            return
        wanted = {r.job_id for r in records}
        sweep = reconcile.Sweep(
            self._clock(), term.epoch, self.config.claim_timeout_s, self.config.max_attempts, fresh=fresh
        )
        actions = reconcile.reconcile(
            [r.view for r in records],
            [c for c in table.claims.values() if c.job_id in wanted],
            [r.view for r in table.results.values() if r.view.job_id in wanted],
            reconcile.live_nodes(self._registry.snapshot(), table.claims.values()),
            sweep,
        )
        for action in actions:
            record = table.jobs[action.job_id]
            if action.changed:
                written = await self._write(record, action.job, term, action.reason, action.expect_no_claim)
                if written is not None and action.kind is ActionKind.REQUEUE:
                    self._metrics.requeued()
                if written is not None and action.node is not None:
                    await self._report(action.node)

    async def _write(
        self, record: JobRecord, view: JobView, term: Term, reason: str, expect_no_claim: bool = False
    ) -> JobRecord | None:
        written = await self.store.write(record, view, term.epoch, expect_no_claim=expect_no_claim)
        if written is not None:
            log.info("%s", reason)
            if view.final:
                self._metrics.finished(view.state, view.error_code)
            if view.final and view.created_at:
                self._metrics.end_to_end(max(0.0, view.finished_at - view.created_at))
        return written

    # --- node health ------------------------------------------------------------------------

    def node_health(self, node: NodeView) -> tuple[NodeHealth, Standing]:
        """The node's dispatch health now as this leader sees it (ListNodes, ClusterStatus);
        healthy when unknown or when this coordinator does not lead."""
        if self._term is None:
            return health.HEALTHY, health.standing(health.HEALTHY, self._clock(), self.config.health)
        return self._fleet.health_of(node)

    async def _report(self, report: NodeReport) -> None:
        """Apply what an attempt said about its node; rebuild the channel if the connection is suspect."""
        step = self._fleet.report(report)
        if report.failure is not None:
            self._metrics.node_failure(report.failure.value, step.set_aside)
        if report.suspect_connection:
            addr = next((n.addr for n in self._registry.snapshot() if n.node_id == report.node_id), "")
            if addr:
                await self._calls.reset(addr)

    # --- dispatch ---------------------------------------------------------------------------

    async def _dispatch_round(self, term: Term) -> None:
        table = self.store.table
        depth = table.queued_count()
        self._metrics.queue_depth(depth)
        now = self._clock()
        nodes = {n.node_id: n for n in self._fleet.routable(self._registry.snapshot(), now)}
        self._metrics.nodes_held_back(
            sum(1 for n in nodes.values() if n.cooldown_s > 0),
            sum(1 for n in nodes.values() if n.set_aside),
        )
        if not depth:
            return
        occupied = frozenset(r.view.node_id for r in table.active())
        if not any(n.available and n.node_id not in occupied for n in nodes.values()):
            return  # no free node: a round would only re-derive that every job waits
        queued = table.queued()
        plan = next_dispatches(
            [QueuedJob(r.view.need, r.view.created_at, self._skips.get(r.job_id, 0)) for r in queued],
            list(nodes.values()),
            self._rng,
            now,
            occupied=occupied,
            policy=self.config.queue_policy,
        )
        for job_id in plan.passed_over:
            self._skips[job_id] = self._skips.get(job_id, 0) + 1
        for dispatch in plan.dispatches:
            record = table.jobs.get(dispatch.job_id)
            node = nodes[dispatch.node_id]
            if record is None:
                continue
            t = jobs.assign(record.view, node.node_id, node.tier, term.epoch, now)
            written = await self.store.write(record, t.job, term.epoch)
            if written is None:
                continue
            log.info("%s: %s", t.reason, dispatch.reason)
            self._skips.pop(record.job_id, None)
            self._fleet.assigned(node.node_id, now)
            self._metrics.queue_wait(max(0.0, now - record.view.created_at))
            task = term.spawn(self._call(written, node), f"dispatch-{record.job_id}")
            self._call_tasks.add(task)
            task.add_done_callback(self._call_tasks.discard)

    def output_uri(self, job_id: str, attempt: int) -> str:
        return self._artifacts.uri_for(f"jobs/{job_id}/attempt-{attempt}.mp4")

    async def _call(self, record: JobRecord, node: NodeView) -> None:
        output_uri = self.output_uri(record.view.job_id, record.view.attempt)
        failure = await attempt.dispatch(
            self._calls,
            record,
            node,
            output_uri,
            self._hub.publish,
            first_event_s=self.config.first_event_s,
            idle_s=self.config.stream_idle_s,
        )
        if failure is not None:
            self._ended.append(failure)
            self.wake()

    async def _call_ended(self, failure: CallFailure, term: Term) -> None:
        record = self.store.table.jobs.get(failure.job_id)
        if record is None:
            return  # finished meanwhile
        t = jobs.on_dispatch_failed(record.view, failure, self._clock())
        if not t.changed:
            log.info("%s", t.reason)
            return
        # The write requires the attempt to be unclaimed; once claimed, the node's result decides.
        written = await self._write(record, t.job, term, t.reason, expect_no_claim=True)
        if written is None:
            return
        if t.job.state == states.QUEUED:
            self._metrics.dispatch_retry()
        if t.node is not None:
            await self._report(t.node)

    # --- client actions ---------------------------------------------------------------------

    async def cancel(self, job_id: str, attempts: int = 5) -> JobRecord | None:
        """Mark the job CANCELLED (fenced) and tell its node to stop; None if no such job."""
        term = self._term
        if term is None:
            raise Fenced("not leading")
        for _ in range(attempts):
            record = self.store.table.jobs.get(job_id) or await self.store.fetch(job_id)
            if record is None:
                return None
            t = jobs.on_cancel(record.view, self._clock())
            if not t.changed:
                return record
            written = await self._write(record, t.job, term, t.reason)
            if written is None:
                await self.store.fetch(job_id)
                continue
            if t.stop_node:
                await attempt.stop(self._calls, self._registry.snapshot(), t.stop_node, job_id)
            self.wake()
            return written
        raise Fenced(f"job {job_id} kept changing during cancel; retry")
