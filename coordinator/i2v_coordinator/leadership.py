"""The election shell: runs `election.decide` against etcd and tells the rest of the process who leads.

One loop per coordinator: read the leader key (a watch delivers changes at once, a periodic read is
the backstop), probe the leader's address while following, ask `decide`, act (campaign txn, revoke a
dead leader's lease, step down), log the decision when it changes. Each win starts a `Term`
(term.py): the leader's workers take it (`terms`, `on_started_leading`), write under its epoch and run
their work in it; stepping down ends it, which cancels that work. A LeaseKeeper renews this
coordinator's lease every keepalive interval; `Term.valid` and `epoch` re-check the lease's validity
window on every read, so a leader that could not renew for ttl - margin stops dispatching even before
the loop runs.

Every coordinator also holds `members/{id}` on its lease (members.py); the leader probe is probe.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from i2v_common.lease import LeaseKeeper
from i2v_contract.fencing import fence
from i2v_contract.keys import Keys, LeaderRecord
from i2v_contract.kv import KV, Compacted, Compare, KeyValue, KVUnavailable, LeaseLost, Put
from i2v_coordinator.election import (
    DEFAULT_TIMINGS,
    Decision,
    DecisionKind,
    ElectionTimings,
    LeaderKey,
    LeaderView,
    ProbeTally,
    decide,
)
from i2v_coordinator.members import register
from i2v_coordinator.probe import PROBE_INTERVAL_S, PROBE_TIMEOUT_S, Probe, probe_tcp
from i2v_coordinator.statusview import Roster, roster_of
from i2v_coordinator.term import Succession, Term

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

_RETRY_S = 0.2  # pause after an etcd call failed before the next tick


class NotLeader(Exception):
    """This coordinator does not lead (or its lease is no longer valid): do not write."""


def _leader_key(kv: KeyValue | None) -> LeaderKey | None:
    if kv is None:
        return None
    try:
        record = LeaderRecord.from_json(kv.value)
    except ValueError:
        # An unreadable value still names a lease: treat it as a holder nobody can reach.
        record = LeaderRecord(id="?", addr="")
    return LeaderKey(record.id, record.addr, kv.create_revision, kv.lease)


class Leadership:
    def __init__(
        self,
        kv: KV,
        keys: Keys,
        member_id: str,
        addr: str,
        timings: ElectionTimings = DEFAULT_TIMINGS,
        clock: Callable[[], float] = time.monotonic,
        *,
        probe: Probe = probe_tcp,
        probe_interval_s: float = PROBE_INTERVAL_S,
        sleep: Sleep = asyncio.sleep,
        lease_kv: KV | None = None,
    ) -> None:
        if not member_id:
            raise ValueError("member_id must not be empty: pass --id or let main derive one")
        self._kv = kv
        # Keepalives on a channel of their own never queue behind a large range read or watch burst.
        self._lease_kv = lease_kv or kv
        self._keys = keys
        self.member_id = member_id
        self.addr = addr
        self.timings = timings
        self._clock = clock
        self._probe = probe
        self._probe_interval = probe_interval_s
        self._sleep = sleep
        self._keeper: LeaseKeeper | None = None
        self._my_leases: set[int] = set()
        self._succession = Succession()
        self._seen: LeaderKey | None = None
        self._seen_changed = asyncio.Event()
        self._seen_rev = 0
        self._stale = True
        self._last_read = -math.inf
        self._tally = ProbeTally()
        self._last_logged: tuple[DecisionKind, str, int] | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._saw_other_leader = False

    # ---- what the rest of the process reads ----

    @property
    def term(self) -> Term | None:
        """The term while leading with a lease inside its validity window; None otherwise."""
        term = self._succession.current
        return term if term is not None and term.valid() else None

    @property
    def epoch(self) -> int | None:
        term = self.term
        return None if term is None else term.epoch

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None

    @property
    def leader(self) -> tuple[str, str] | None:
        seen = self._seen
        return None if seen is None else (seen.holder_id, seen.addr)

    def leader_changed(self) -> asyncio.Event:
        """Set when the leader key as seen next changes (holder, address or epoch); fresh after each."""
        return self._seen_changed

    @property
    def lease_id(self) -> int:
        keeper = self._keeper
        return 0 if keeper is None else keeper.lease_id

    async def roster(self) -> Roster:
        """The leader key and members/ as etcd has them now (ClusterStatus, on any coordinator)."""
        leader = await self._kv.get(self._keys.leader)
        members, _ = await self._kv.range_prefix(self._keys.members)
        return roster_of(self._keys, leader, members)

    def fence(self) -> Compare:
        """The compare every leader write carries: the leader key still has my epoch."""
        epoch = self.epoch
        if epoch is None:
            raise NotLeader(f"coordinator {self.member_id} does not lead (leader: {self.leader})")
        return fence(self._keys, epoch)

    def on_started_leading(self, hook: Callable[[Term], object]) -> None:
        """hook(term) as each term starts, in order; quick and synchronous (term.spawn for work)."""
        self._succession.on_started_leading(hook)

    def terms(self) -> AsyncIterator[Term]:
        """Every term from now on, as it starts, for a loop that serves one term at a time."""
        return self._succession.terms()

    def _lease_valid(self) -> bool:
        keeper = self._keeper
        return keeper is not None and keeper.valid()

    # ---- life cycle ----

    async def open(self) -> None:
        """Grant the lease, register as a member, read the leader key; no background loop."""
        await self._new_lease()
        await self._register(first=True)
        await self._refresh()

    async def start(self) -> None:
        await self.open()
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="leadership-watch"))
        self._tasks.append(asyncio.create_task(self._run(), name="leadership-loop"))

    async def resign(self) -> None:
        """Planned handover: end the term and let its work stop, then revoke the lease (deletes the
        leader key at once)."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        term = self._succession.current
        self._depose("resigning (planned stop)")
        if term is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(term.stopped(), self.timings.call_timeout_s)
        if self._keeper is not None:
            await self._keeper.stop(revoke=True)
        log.info("coordinator %s resigned: lease revoked", self.member_id)

    # ---- the loop ----

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                delay = await self.tick()
            except KVUnavailable as err:
                log.warning("election tick failed, retrying in %.1f s: %s", _RETRY_S, err)
                self._stale = True
                delay = _RETRY_S
            except LeaseLost as err:
                self._depose(f"etcd no longer knows my lease ({err})")
                await self._drop_lease()
                delay = 0.0
            except Exception:
                # The loop must outlive any surprise: a coordinator without it never leads again.
                log.exception("election tick failed unexpectedly; retrying in %.1f s", _RETRY_S)
                self._stale = True
                delay = _RETRY_S
            if delay > 0 and not self._wake.is_set():
                await self._sleep_or_wake(delay)

    async def _sleep_or_wake(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def tick(self) -> float:
        """One decision and its action; returns how long to wait before the next tick."""
        if self._keeper is None or not self._keeper.valid():
            # A lapsed lease is never trusted again: stop acting on it, take a fresh one (if the old
            # one still holds the leader key, the decision below revokes it as a previous incarnation).
            self._depose("my lease is no longer valid")
            await self._drop_lease()
            await self._new_lease()
            await self._register(first=False)
        due = self._clock() - self._last_read >= self.timings.keepalive_s
        if self._stale or due or not self._watching():
            await self._refresh()
        seen = self._seen
        if seen is not None and seen.holder_id != self.member_id:
            outcome = await self._probe(seen.addr, PROBE_TIMEOUT_S)
            self._tally = self._tally.record(seen, outcome, self._clock())
        decision = decide(self._view(), self._clock(), self.timings)
        return await self._act(decision)

    def _watching(self) -> bool:
        return any(t.get_name() == "leadership-watch" and not t.done() for t in self._tasks)

    def _view(self) -> LeaderView:
        keeper = self._keeper
        lease = 0 if keeper is None else keeper.lease_id
        valid_until = None
        if keeper is not None and keeper.lost_reason is None:
            valid_until = keeper.deadline()
        return LeaderView(self.member_id, lease, valid_until, self._seen, self._tally)

    async def _act(self, d: Decision) -> float:
        kind = d.kind
        if kind is DecisionKind.LEAD:
            current = self._succession.current
            if current is None or current.epoch != d.epoch:
                self._elect(d.epoch, d.reason)
            return self.timings.keepalive_s
        if kind is DecisionKind.FOLLOW:
            self._depose(f"leader key now held by {d.leader_id} at {d.leader_addr}")
            self._log(d)
            return self._probe_interval
        if kind is DecisionKind.STEP_DOWN:
            self._depose(d.reason)
            await self._drop_lease()
            return 0.0
        if kind is DecisionKind.REVOKE_DEAD_LEADER:
            self._depose("the leader key names a lease this process no longer renews")
            await self._kv.revoke_lease(d.revoke_lease)
            log.warning("election: revoked the leader's lease (%s)", d.reason)
            self._stale = True
            return 0.0
        self._depose("leader key absent")
        return await self._campaign(d)

    async def _campaign(self, d: Decision) -> float:
        keeper = self._keeper
        if d.needs_fresh_lease or keeper is None or not keeper.valid():
            await self._drop_lease()
            await self._new_lease()
            await self._register(first=False)
        lease = self.lease_id
        leader_key = self._keys.leader
        value = LeaderRecord(self.member_id, self.addr).to_json()
        try:
            result = await self._kv.txn(
                [Compare(leader_key, "create", "==", 0)], [Put(leader_key, value, lease=lease)]
            )
        except LeaseLost:
            log.warning("campaign: my lease %x vanished before the txn; retrying with a fresh one", lease)
            await self._drop_lease()
            return 0.0
        if not result.succeeded:
            log.info("campaign lost: another coordinator created the leader key first")
            self._stale = True
            return 0.0
        self._apply_seen(LeaderKey(self.member_id, self.addr, result.revision, lease), result.revision)
        self._elect(result.revision, f"won the campaign with lease {lease:x}")
        return self.timings.keepalive_s

    # ---- state changes ----

    def _elect(self, epoch: int, reason: str) -> None:
        self._depose(f"a new term starts with epoch {epoch}")
        self._tally = ProbeTally()
        log.info("coordinator %s leads with epoch %d: %s", self.member_id, epoch, reason)
        self._last_logged = (DecisionKind.LEAD, self.member_id, epoch)
        self._succession.start(Term(epoch, self._lease_valid, took_over=self._saw_other_leader))

    def _depose(self, reason: str) -> None:
        term = self._succession.end()
        if term is not None:
            log.warning("coordinator %s stepped down from epoch %d: %s", self.member_id, term.epoch, reason)

    def _log(self, d: Decision) -> None:
        seen = self._seen
        key = (d.kind, d.leader_id, 0 if seen is None else seen.create_revision)
        if key != self._last_logged:
            self._last_logged = key
            log.info("election: %s (%s)", d.kind.value, d.reason)

    def _on_lease_lost(self, reason: str) -> None:
        self._depose(f"lease lost: {reason}")
        self._wake.set()

    # ---- etcd I/O ----

    async def _new_lease(self) -> None:
        keeper = LeaseKeeper(
            self._lease_kv,
            ttl=self.timings.ttl_s,
            interval=self.timings.keepalive_s,
            clock=self._clock,
            margin=self.timings.margin_s,
            sleep=self._sleep,
        )
        keeper.on_lost(self._on_lease_lost)
        await keeper.start()
        self._keeper = keeper
        self._my_leases.add(keeper.lease_id)

    async def _drop_lease(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is None:
            return
        await keeper.stop(revoke=True)

    async def _register(self, *, first: bool) -> None:
        await register(
            self._kv,
            self._keys,
            self.member_id,
            self.addr,
            self.lease_id,
            self._my_leases,
            self._probe,
            first=first,
        )

    async def _refresh(self) -> None:
        items, revision = await self._kv.range_prefix(self._keys.leader)
        current = next((kv for kv in items if kv.key == self._keys.leader), None)
        self._last_read = self._clock()
        self._stale = False
        self._apply_seen(_leader_key(current), revision)

    def _apply_seen(self, seen: LeaderKey | None, revision: int) -> None:
        if revision < self._seen_rev:
            return
        self._seen_rev = revision
        if seen != self._seen:
            self._seen_changed.set()
            self._seen_changed = asyncio.Event()
        self._seen = seen
        if seen is not None and seen.holder_id != self.member_id:
            self._saw_other_leader = True

    async def _watch_loop(self) -> None:
        key = self._keys.leader
        while not self._closing:
            try:
                async for ev in self._kv.watch_prefix(key, self._seen_rev + 1):
                    if ev.kv.key != key:
                        continue
                    self._apply_seen(_leader_key(ev.kv) if ev.kind == "put" else None, ev.kv.mod_revision)
                    self._wake.set()
            except Compacted:
                self._stale = True
                with contextlib.suppress(KVUnavailable):
                    await self._refresh()
            except KVUnavailable as err:
                log.warning("leader key watch failed, re-reading and re-watching: %s", err)
                self._stale = True
                await asyncio.sleep(_RETRY_S)
