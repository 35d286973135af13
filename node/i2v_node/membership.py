"""The node's registration: `nodes/{node_id}` on the node's own etcd lease.

`Membership` keeps the key alive and re-puts it when the node's state changes (busy flips at once,
memory changes coalesced: publishing.py); it re-registers on a new lease once etcd answers again
after the lease was lost, and tells its listeners when a lease stops being valid (the claims made
on it go with it: claims.py). A node without a valid lease takes no cluster work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from i2v_common.lease import LeaseKeeper
from i2v_contract.keys import Keys, NodeRecord
from i2v_contract.kv import KV, Compare, KeyValue, KVUnavailable, LeaseLost, Put
from i2v_node.publishing import DEFAULT_POLICY, NodeState, PublishPolicy, lease_timing, publish_delay

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class DuplicateNode(RuntimeError):
    """Another live process holds nodes/{node_id}: node ids must be unique in a cluster."""


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
        policy: PublishPolicy = DEFAULT_POLICY,
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
