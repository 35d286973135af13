"""The node's cluster membership: its registration on an etcd lease, the fenced claim, results.

`Membership` keeps `nodes/{node_id}` alive on the node's own lease and re-puts it when the node's
state changes (busy flips at once, memory changes coalesced); it re-registers on a new lease once
etcd answers again after the lease was lost. `ClusterHooks` plugs into the servicer's JobHooks
seam: before the GPU is touched it wins the fenced claim txn (leader epoch, job revision, attempt);
while the job runs it watches the claim key and the node's lease, and stops the job (within one
denoising step) when the claim is deleted (the leader finalised or cancelled the job) or the lease
stops being valid; after the run it writes the attempt's result write-once, and only while the
claim it won still stands (compare on the claim's create revision). A node without a valid lease
takes no cluster work; standalone requests (no job_id) pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from i2v_common.artifacts import ArtifactError, ArtifactStore
from i2v_common.lease import LeaseKeeper
from i2v_contract.fencing import claim_txn
from i2v_contract.keys import Keys, NodeRecord, ResultRecord
from i2v_contract.kv import (
    DEFAULT_LEASE_MARGIN_S,
    KV,
    Compacted,
    Compare,
    KeyValue,
    KVUnavailable,
    LeaseLost,
    Put,
)
from i2v_contract.memory import ArchSpec
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.servicer import JobRejected, JobReport, Stop

log = logging.getLogger(__name__)

NOT_ACCEPTING = "node lost its cluster lease; not taking work"
CLAIM_GONE = "claim gone: result not written (job re-run elsewhere or cancelled)"

Sleep = Callable[[float], Awaitable[None]]


class DuplicateNode(RuntimeError):
    """Another live process holds nodes/{node_id}: node ids must be unique in a cluster."""


# --- pure publishing policy ------------------------------------------------------------------


@dataclass(frozen=True)
class NodeState:
    """What changes while a node runs; published in its NodeRecord."""

    busy: bool  # running a job, or not serving (loading, draining): routing must skip it
    free_bytes: int
    total_bytes: int
    tier: int  # common_pb2.Tier value
    serving: bool = True  # model loaded and not draining
    arch: ArchSpec | None = None  # the loaded model's shape (None until loaded)


@dataclass(frozen=True)
class PublishPolicy:
    min_interval_s: float = 0.5  # memory-only changes go out at most this often
    free_bytes_step: int = 256 * 1024**2  # free-memory moves smaller than this are not worth a write


def publish_delay(
    published: NodeState | None, wanted: NodeState, last_put_at: float, now: float, policy: PublishPolicy
) -> float | None:
    """Seconds until `wanted` should be written (0 = now), or None when it is not worth a write.

    Busy, serving and model-shape changes go out at once (routing depends on them); tier, total
    and large free-memory moves are coalesced to one write per `min_interval_s`; small
    free-memory jitter is never written.
    """
    if (
        published is None
        or wanted.busy != published.busy
        or wanted.serving != published.serving
        or wanted.arch != published.arch
    ):
        return 0.0
    moved = (
        wanted.tier != published.tier
        or wanted.total_bytes != published.total_bytes
        or abs(wanted.free_bytes - published.free_bytes) >= policy.free_bytes_step
    )
    if not moved:
        return None
    return max(0.0, last_put_at + policy.min_interval_s - now)


def lease_timing(ttl: float) -> tuple[float, float]:
    """(keepalive interval, validity margin) for a lease TTL: ttl/3 and at most 1.5 s
    (docs/architecture.md, timings)."""
    return ttl / 3, min(DEFAULT_LEASE_MARGIN_S, ttl / 4)


# --- registration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    """What does not change while a node runs; the NodeRecord fields besides NodeState."""

    addr: str
    gpu: str  # device name, "" on a CPU node
    models: tuple[str, ...]
    version: str


class Membership:
    def __init__(
        self,
        kv: KV,
        keys: Keys,
        node_id: str,
        info: NodeInfo,
        *,
        lease_ttl: float = 10.0,
        policy: PublishPolicy = PublishPolicy(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.kv = kv
        self.keys = keys
        self.node_id = node_id
        self.info = info
        self.lease_ttl = lease_ttl
        self.interval, self.margin = lease_timing(lease_ttl)
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._key = keys.node(node_id)
        self._keeper: LeaseKeeper | None = None
        self._past_leases: set[int] = set()
        self._wanted: NodeState | None = None
        self._published: NodeState | None = None
        self._last_put_at = float("-inf")
        self._key_rev = 0  # mod revision of our key after our last write
        self._registered = False  # nodes/{id} is known to be ours on the current lease
        self._recheck = False  # a write's outcome is unknown: re-read the key before the next one
        self._retry_at = float("-inf")
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._lease_listeners: list[Callable[[int, str], None]] = []

    # --- public -------------------------------------------------------------------------------

    @property
    def lease_id(self) -> int:
        """The current lease (0 while none): claims are written on it."""
        return self._keeper.lease_id if self._keeper is not None else 0

    @property
    def keeper(self) -> LeaseKeeper | None:
        return self._keeper

    @property
    def accepting(self) -> bool:
        """Whether the node may take cluster work: registered on a lease that is still valid."""
        return self._registered and self._keeper is not None and self._keeper.valid()

    async def start(self, state: NodeState) -> None:
        """Register nodes/{id} on a new lease; raises DuplicateNode or KVUnavailable.

        Call it after the node's server is listening on `info.addr`: a key left at the same
        address by a dead previous process of this node is then replaced (its lease revoked).
        """
        self._wanted = state
        async with self._lock:
            await self._new_lease()
            try:
                await self._register(first=True)
            except BaseException:
                await self._drop_keeper(revoke=True)
                raise
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"membership-{self.node_id}")

    def on_lease_lost(self, callback: Callable[[int, str], None]) -> None:
        """callback(lease_id, reason) whenever a lease stops being valid unplanned (not on stop())."""
        self._lease_listeners.append(callback)

    def _lease_lost(self, lease_id: int, reason: str) -> None:
        for callback in self._lease_listeners:
            try:
                callback(lease_id, reason)
            except Exception:
                log.exception("lease-lost listener failed")

    def publish(self, state: NodeState) -> None:
        """Note the node's current state; the background loop writes it per PublishPolicy."""
        if state != self._wanted:
            self._wanted = state
            self._wake.set()

    async def sync(self) -> float | None:
        """Do what is due now (re-register, publish); returns seconds until something is due next."""
        async with self._lock:
            if self._stopped:
                return None
            try:
                if self._keeper is None or not self._keeper.valid():
                    return await self._recover()
                if not self._registered or self._recheck:
                    try:
                        await self._register(first=False)
                    except (KVUnavailable, DuplicateNode) as exc:
                        return self._backoff(f"could not re-check registration: {exc}")
                    return None
                return await self._publish_due()
            except LeaseLost as exc:
                log.warning("node %s: %s; taking a new lease", self.node_id, exc)
                if self._keeper is not None:
                    self._lease_lost(self._keeper.lease_id, str(exc))
                await self._drop_keeper(revoke=False)
                return 0.0

    async def stop(self) -> None:
        """Planned shutdown: revoke the lease so nodes/{id} (and any claim) disappears at once."""
        self._stopped = True
        self._wake.set()  # the loop also ends by itself: LeaseKeeper.stop can swallow a cancel
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._lock:
            await self._drop_keeper(revoke=True)
        log.info("node %s left the cluster (lease revoked)", self.node_id)

    # --- internals ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopped:
            self._wake.clear()  # before sync, so a publish() during it is not missed
            try:
                delay = await self.sync()
            except Exception:
                log.exception("membership loop error; retrying in %.1fs", self.interval)
                delay = self.interval
            if self._stopped:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: on 3.11 it can swallow a cancel
                    await self._wake.wait()

    def _backoff(self, why: str) -> float:
        delay = min(1.0, self.interval)
        self._retry_at = self._clock() + delay
        log.warning("node %s: %s; retrying in %.1fs", self.node_id, why, delay)
        return delay

    async def _recover(self) -> float | None:
        """The lease is gone or no longer trustworthy: take a new one and register again."""
        if self._keeper is not None:
            log.warning(
                "node %s: lease %x no longer valid (%s); not taking work until re-registered",
                self.node_id,
                self._keeper.lease_id,
                self._keeper.lost_reason or "keepalive deadline passed",
            )
            # Usually on_lost said so already; a deadline passed between keeper ticks has not.
            self._lease_lost(self._keeper.lease_id, self._keeper.lost_reason or "keepalive deadline passed")
            await self._drop_keeper(revoke=False)
        wait = self._retry_at - self._clock()
        if wait > 0:
            return wait
        try:
            await self._new_lease()
            await self._register(first=False)
        except (KVUnavailable, DuplicateNode) as exc:
            return self._backoff(f"re-registration failed: {exc}")
        log.info("node %s re-registered on lease %x", self.node_id, self.lease_id)
        return None

    async def _new_lease(self) -> None:
        keeper = LeaseKeeper(
            self.kv, self.lease_ttl, self.interval, self._clock, margin=self.margin, sleep=self._sleep
        )
        await keeper.start()

        def lost(reason: str) -> None:
            self._wake.set()
            self._lease_lost(keeper.lease_id, reason)

        keeper.on_lost(lost)
        self._keeper = keeper
        self._registered = False

    async def _drop_keeper(self, *, revoke: bool) -> None:
        keeper, self._keeper = self._keeper, None
        self._registered = False
        if keeper is not None:
            self._past_leases.add(keeper.lease_id)
            await keeper.stop(revoke=revoke)

    def _record(self, state: NodeState) -> bytes:
        return NodeRecord(
            addr=self.info.addr,
            gpu=self.info.gpu,
            total_bytes=state.total_bytes,
            free_bytes=state.free_bytes,
            tier=state.tier,
            busy=state.busy,
            models=self.info.models,
            version=self.info.version,
            serving=state.serving,
            arch=state.arch.to_dict() if state.arch is not None else {},
        ).to_json()

    async def _register(self, *, first: bool) -> None:
        """Write our key on the current lease unless another live node holds it."""
        assert self._keeper is not None and self._wanted is not None
        lease = self._keeper.lease_id
        existing = await self.kv.get(self._key)
        guard = self._guard_for(existing, lease)
        if guard is None and existing is not None and first and self._same_addr(existing):
            log.warning(
                "node %s: replacing the registration a previous process at %s left on lease %x "
                "(revoked: its claims are released so the coordinator requeues them)",
                self.node_id,
                self.info.addr,
                existing.lease,
            )
            await self.kv.revoke_lease(existing.lease)
            guard = Compare(self._key, "create", "==", 0)
        if guard is None:
            assert existing is not None
            self._registered = False
            raise DuplicateNode(self._duplicate_message(existing))
        await self._write(guard)

    def _guard_for(self, existing: KeyValue | None, lease: int) -> Compare | None:
        if existing is None:
            return Compare(self._key, "create", "==", 0)
        if existing.lease == lease or existing.lease in self._past_leases:
            return Compare(self._key, "mod", "==", existing.mod_revision)
        return None

    def _same_addr(self, existing: KeyValue) -> bool:
        try:
            return NodeRecord.from_json(existing.value).addr == self.info.addr
        except ValueError:
            return False

    def _duplicate_message(self, existing: KeyValue) -> str:
        try:
            where = f"at {NodeRecord.from_json(existing.value).addr}"
        except ValueError:
            where = "with an unreadable record"
        return (
            f"node id {self.node_id!r} is already registered {where} on lease {existing.lease:x}: "
            f"node ids must be unique; pick another --node-id or stop the other node "
            f"(a crashed one's key expires within {self.lease_ttl:g}s)"
        )

    async def _write(self, guard: Compare) -> None:
        assert self._keeper is not None and self._wanted is not None
        state = self._wanted
        try:
            result = await self.kv.txn([guard], [Put(self._key, self._record(state), self._keeper.lease_id)])
        except KVUnavailable:
            self._recheck = True
            raise
        if not result.succeeded:
            self._registered = False
            raise DuplicateNode(f"nodes/{self.node_id} changed while this node was writing it")
        self._registered = True
        self._recheck = False
        self._key_rev = result.revision
        self._published = state
        self._last_put_at = self._clock()
        log.info(
            "node %s published busy=%s serving=%s tier=%d free=%d bytes (lease %x)",
            self.node_id,
            state.busy,
            state.serving,
            state.tier,
            state.free_bytes,
            self._keeper.lease_id,
        )

    async def _publish_due(self) -> float | None:
        assert self._wanted is not None
        delay = publish_delay(self._published, self._wanted, self._last_put_at, self._clock(), self.policy)
        if delay is None or delay > 0:
            return delay
        try:
            await self._write(Compare(self._key, "mod", "==", self._key_rev))
        except KVUnavailable as exc:
            return self._backoff(f"publish failed: {exc}")
        except DuplicateNode:
            log.warning("node %s: its key changed or vanished; registering again", self.node_id)
            return 0.0
        return None


# --- the JobHooks seam -------------------------------------------------------------------------


def _stale(request: node_pb2.NodeGenerateRequest) -> JobRejected:
    return JobRejected(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"stale dispatch: job {request.job_id} attempt {request.attempt} epoch {request.epoch} "
        "no longer current (leader changed or job reassigned); not started",
    )


def _failure(status: str, message: str) -> ResultRecord:
    return ResultRecord(status, message)


RESULT_BUDGET_MIN_S = 60.0
WATCH_RETRY_S = 1.0


@dataclass
class _Claim:
    """A claim this node holds while its job runs: what guards the result, and how to stop the job."""

    key: str
    guard: Compare  # the result is written only while this holds
    lease: int
    stop: Stop
    why_stopped: str = ""
    watch: asyncio.Task[None] | None = None

    def stop_for(self, why: str) -> None:
        if not self.why_stopped:
            self.why_stopped = why
            self.stop(why)


class ClusterHooks:
    """Fenced claim before the GPU is touched; the job stops when the claim goes; a write-once
    result, guarded by the claim, after every claimed run."""

    def __init__(
        self,
        membership: Membership,
        store: ArtifactStore,
        *,
        call_budget_s: float = 5.0,
        result_budget_s: float | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.m = membership
        self.store = store
        self.call_budget_s = call_budget_s
        # etcd cannot expire leases without a quorum (a new etcd leader renews them), so the claim
        # usually outlives an outage: keep trying long enough that finished work is not redone.
        default_budget = max(2 * membership.lease_ttl, RESULT_BUDGET_MIN_S)
        self.result_budget_s = result_budget_s if result_budget_s is not None else default_budget
        self._sleep = sleep
        self._clock = clock
        self._claimed: dict[tuple[str, int], _Claim] = {}
        self._writes: set[asyncio.Task[bool]] = set()
        membership.on_lease_lost(self._lease_lost)

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        if not request.job_id:
            return
        if request.epoch <= 0 or request.assign_revision <= 0:
            raise JobRejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"job {request.job_id}: epoch ({request.epoch}) and assign_revision "
                f"({request.assign_revision}) must be > 0 for a dispatched job; only a coordinator "
                "sets job_id, or leave job_id empty for a standalone run",
            )
        if not self.m.accepting:
            raise JobRejected(grpc.StatusCode.UNAVAILABLE, f"{NOT_ACCEPTING} (node {self.m.node_id})")
        lease = self.m.lease_id
        revision = await self._claim(request)
        if revision:
            claim_key = self.m.keys.claim(request.job_id, request.attempt)
            claim = _Claim(
                claim_key,
                Compare(claim_key, "create", "==", revision),
                lease,
                stop,
            )
            self._claimed[(request.job_id, request.attempt)] = claim
            claim.watch = asyncio.get_running_loop().create_task(
                self._watch_claim(claim, revision), name=f"claim-watch-{request.job_id}-{request.attempt}"
            )
            log.info(
                "claimed job %s attempt %d for epoch %d on lease %x (claim revision %d)",
                request.job_id,
                request.attempt,
                request.epoch,
                lease,
                revision,
            )
            if not self.m.accepting:  # the lease lapsed while the claim txn was in flight
                claim.stop_for(f"node lease {lease:x} stopped being valid right after the claim")
            return
        log.info(
            "refused job %s attempt %d: claim txn failed (epoch %d / revision %d no longer current)",
            request.job_id,
            request.attempt,
            request.epoch,
            request.assign_revision,
        )
        raise _stale(request)

    async def _claim(self, request: node_pb2.NodeGenerateRequest) -> int:
        """Run the claim txn: the claim's create revision, 0 if refused. An unknown outcome (etcd
        blip) is settled by reading the claim back."""
        txn = claim_txn(
            self.m.keys,
            request.job_id,
            request.attempt,
            epoch=request.epoch,
            assign_revision=request.assign_revision,
            node_id=self.m.node_id,
            lease=self.m.lease_id,
        )
        deadline = self._clock() + self.call_budget_s
        delay = 0.05
        while True:
            try:
                done = await self.m.kv.txn(txn.compares, txn.puts)
                return done.revision if done.succeeded else 0
            except LeaseLost as exc:
                raise JobRejected(
                    grpc.StatusCode.UNAVAILABLE, f"{NOT_ACCEPTING} (node {self.m.node_id}: {exc})"
                ) from None
            except KVUnavailable as exc:
                log.warning(
                    "claim txn for job %s: outcome unknown (%s); reading it back", request.job_id, exc
                )
            with contextlib.suppress(KVUnavailable):
                existing = await self.m.kv.get(txn.key)
                if existing is not None:
                    ours = existing.lease == txn.lease and existing.value == txn.value
                    return existing.create_revision if ours else 0
            if self._clock() + delay > deadline:
                break
            await self._sleep(delay)
            delay = min(delay * 2, 1.0)
        # The claim may have landed unseen: hand the attempt back so the coordinator requeues it
        # (written only if the claim did land: it is guarded by the claim's exact value).
        self._spawn_write(request, self._give_back_record(), Compare(txn.key, "value", "==", txn.value))
        raise JobRejected(
            grpc.StatusCode.UNAVAILABLE,
            f"job {request.job_id}: etcd did not answer the claim within {self.call_budget_s:g}s; "
            "not started, retry on another node",
        )

    def _give_back_record(self) -> ResultRecord:
        return _failure(
            grpc.StatusCode.UNAVAILABLE.name,
            f"node {self.m.node_id} could not confirm its claim (etcd unreachable); not started",
        )

    async def _watch_claim(self, claim: _Claim, revision: int) -> None:
        """Stop the job when its claim key is deleted (finalised, cancelled, or gone with the lease)."""
        start = revision + 1
        while True:
            try:
                async for event in self.m.kv.watch_prefix(claim.key, start):
                    start = event.kv.mod_revision + 1
                    if event.kv.key == claim.key and event.kind == "delete":
                        claim.stop_for(
                            f"claim {claim.key} deleted at revision {event.kv.mod_revision} (the leader "
                            "finalised or cancelled the job, or the node's lease expired)"
                        )
                        return
            except Compacted:
                try:
                    items, read_at = await self.m.kv.range_prefix(claim.key)
                except KVUnavailable:
                    await asyncio.sleep(WATCH_RETRY_S)  # not the budgeted retry clock
                    continue
                if not any(kv.key == claim.key and kv.create_revision == revision for kv in items):
                    claim.stop_for(f"claim {claim.key} is gone (found after a watch compaction)")
                    return
                start = read_at + 1
            except KVUnavailable as exc:
                log.warning("watch of claim %s broke (%s); resuming from revision %d", claim.key, exc, start)
                await asyncio.sleep(WATCH_RETRY_S)  # not the budgeted retry clock

    def _lease_lost(self, lease_id: int, reason: str) -> None:
        for claim in list(self._claimed.values()):
            if claim.lease == lease_id:
                claim.stop_for(f"node lease {lease_id:x} stopped being valid ({reason})")

    async def after_run(self, report: JobReport) -> None:
        request = report.request
        claim = self._claimed.pop((request.job_id, request.attempt), None) if request.job_id else None
        if claim is None:
            return
        if claim.watch is not None:
            claim.watch.cancel()
        if claim.why_stopped:
            log.info(
                "job %s attempt %d: %s; %s", request.job_id, request.attempt, CLAIM_GONE, claim.why_stopped
            )
            return
        record = await self._result_record(report)
        # Shielded: the coordinator's stream dropping must not lose the result write.
        await asyncio.shield(self._spawn_write(request, record, claim.guard))

    async def _result_record(self, report: JobReport) -> ResultRecord:
        result = report.result
        status, message = report.code.name, report.message
        if result is None:
            return _failure(status, message)
        artifact_uri = result.artifact_uri
        if not artifact_uri and result.video:
            # Videos never go into etcd: store one that came back inline.
            name = f"jobs/{report.request.job_id}/output-{report.request.attempt}.mp4"
            try:
                artifact_uri = await asyncio.to_thread(self.store.put, name, result.video)
            except (ArtifactError, OSError) as exc:
                status = grpc.StatusCode.UNAVAILABLE.name
                message = (
                    f"node {self.m.node_id} could not store the video in its artifact store "
                    f"({self.store.root_url}): {exc}; check the store is reachable and writable from there"
                )
        stored = common_pb2.Result()
        stored.CopyFrom(result)
        stored.artifact_uri = artifact_uri
        return ResultRecord(status, message, stored)

    def _spawn_write(
        self, request: node_pb2.NodeGenerateRequest, record: ResultRecord, guard: Compare
    ) -> asyncio.Task[bool]:
        task = asyncio.get_running_loop().create_task(
            self.write_result(request.job_id, request.attempt, record, guard),
            name=f"result-{request.job_id}-{request.attempt}",
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def write_result(self, job_id: str, attempt: int, record: ResultRecord, guard: Compare) -> bool:
        """Write results/{job}/{attempt} once, only while `guard` (the claim) holds; retried with
        backoff through etcd blips.

        Returns True when the record is in etcd (ours, or an earlier write for the same attempt);
        False when the claim is gone (nothing written) or etcd stayed away.
        """
        key = self.m.keys.result(job_id, attempt)
        value = record.to_json()
        deadline = self._clock() + self.result_budget_s
        delay = 0.05
        while True:
            try:
                done = await self.m.kv.txn([guard, Compare(key, "create", "==", 0)], [Put(key, value)])
                if done.succeeded:
                    log.info("job %s attempt %d: result %s recorded", job_id, attempt, record.status)
                    return True
                if await self.m.kv.get(key) is not None:
                    log.info("job %s attempt %d: result already recorded; not written again", job_id, attempt)
                    return True
                log.info("job %s attempt %d: %s", job_id, attempt, CLAIM_GONE)
                return False
            except KVUnavailable as exc:
                if self._clock() + delay > deadline:
                    log.error(
                        "job %s attempt %d: RESULT %s NOT RECORDED: etcd unreachable for %.0fs (%s); "
                        "the claim expires with this node's lease and the coordinator requeues the job",
                        job_id,
                        attempt,
                        record.status,
                        self.result_budget_s,
                        exc,
                    )
                    return False
                log.warning("job %s attempt %d: result write failed (%s); retrying", job_id, attempt, exc)
            await self._sleep(delay)
            delay = min(delay * 2, 2.0)

    async def drain(self) -> None:
        """Wait for result writes still in flight (call before Membership.stop on shutdown)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
