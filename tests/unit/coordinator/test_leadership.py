"""Leadership (the election shell) on MemoryKV with a manual clock; ticks driven by the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from i2v_contract.keys import Keys, LeaderRecord, MemberRecord
from i2v_contract.kv import Compare, Put
from i2v_coordinator.election import ElectionTimings, ProbeOutcome
from i2v_coordinator.leadership import Leadership, NotLeader
from i2v_coordinator.members import DuplicateMember
from i2v_coordinator.term import Term
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/t/")
TIMINGS = ElectionTimings()  # ttl 5, keepalive 1, margin 1.5, 3 refusals over >= 0.3 s


async def never_wakes(seconds: float) -> None:
    await asyncio.Event().wait()  # the test drives tick() and keeper ticks itself


class Probes:
    """Probe outcomes by address (OK unless set); counts calls."""

    def __init__(self) -> None:
        self.outcomes: dict[str, ProbeOutcome] = {}
        self.calls = 0

    async def __call__(self, addr: str, wait_s: float) -> ProbeOutcome:
        self.calls += 1
        return self.outcomes.get(addr, ProbeOutcome.OK)


class Cluster:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.kv = MemoryKV(self.clock)
        self.probes = Probes()
        self.members: list[Leadership] = []
        self.terms: dict[str, list[Term]] = {}

    async def add(self, member_id: str) -> Leadership:
        lead = Leadership(
            self.kv,
            KEYS,
            member_id,
            f"10.0.0.{len(self.members) + 1}:7000",
            TIMINGS,
            self.clock,
            probe=self.probes,
            sleep=never_wakes,
        )
        lead.on_started_leading(self.terms.setdefault(member_id, []).append)
        await lead.open()
        self.members.append(lead)
        return lead

    async def renew(self, lead: Leadership) -> None:
        keeper = lead._keeper
        assert keeper is not None
        await keeper.tick()

    def changes(self, member_id: str) -> list[int | None]:
        """Each term's epoch as it started, and None where it ended."""
        out: list[int | None] = []
        for term in self.terms.get(member_id, []):
            out += [term.epoch, None] if term.ended.is_set() else [term.epoch]
        return out


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    yield c
    for lead in c.members:
        await lead.resign()


async def leader_txn(c: Cluster, lead: Leadership, key: str) -> bool:
    """A fenced write as the jobs code makes it: True when it committed."""
    result = await c.kv.txn([lead.fence()], [Put(KEYS.jobs + key, b"x")])
    return result.succeeded


async def test_first_coordinator_campaigns_and_leads_with_epoch_of_leader_key(cluster: Cluster) -> None:
    a = await cluster.add("a")
    assert a.epoch is None
    await a.tick()
    stored = await cluster.kv.get(KEYS.leader)
    assert stored is not None
    assert LeaderRecord.from_json(stored.value) == LeaderRecord("a", "10.0.0.1:7000")
    assert stored.lease == a.lease_id
    assert a.epoch == stored.create_revision
    assert a.is_leader and a.leader == ("a", "10.0.0.1:7000")
    assert a.fence() == Compare(KEYS.leader, "create", "==", stored.create_revision)
    assert await leader_txn(cluster, a, "j1")
    assert cluster.changes("a") == [stored.create_revision]


async def test_second_coordinator_follows_and_cannot_fence(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    b = await cluster.add("b")
    await b.tick()
    assert b.epoch is None and not b.is_leader
    assert b.leader == ("a", "10.0.0.1:7000")
    with pytest.raises(NotLeader, match="does not lead"):
        b.fence()
    member = await cluster.kv.get(KEYS.member("b"))
    assert member is not None and member.lease == b.lease_id
    assert MemberRecord.from_json(member.value).addr == "10.0.0.2:7000"
    assert b.term is None  # not leading: no term


async def test_leader_changed_fires_only_when_the_key_names_someone_else(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    b = await cluster.add("b")
    await b.tick()
    changed = b.leader_changed()
    cluster.clock.advance(TIMINGS.keepalive_s)
    await b.tick()  # the same key read again
    assert not changed.is_set() and b.leader_changed() is changed
    await a.resign()
    cluster.members.remove(a)
    cluster.clock.advance(TIMINGS.keepalive_s)
    await b.tick()  # reads the key gone, campaigns and wins
    assert changed.is_set() and b.leader == ("b", "10.0.0.2:7000")
    assert b.leader_changed() is not changed and not b.leader_changed().is_set()


async def test_leader_stops_at_ttl_minus_margin_without_keepalives(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    epoch = a.epoch
    assert epoch is not None
    term = a.term
    assert term is not None and term.epoch == epoch
    waiter = asyncio.create_task(term.ended.wait())
    cluster.kv.available = False  # keepalives fail from now on
    cluster.clock.advance(2.0)
    await cluster.renew(a)
    assert a.epoch == epoch  # 2 s < 3.5 s validity
    cluster.clock.advance(1.49)
    assert a.epoch == epoch
    cluster.clock.advance(0.01)  # exactly ttl - margin after the last successful send
    assert a.epoch is None  # re-checked on read, before any loop has run
    assert not term.valid() and a.term is None
    assert not waiter.done()
    await cluster.renew(a)  # the keeper notices and reports the loss
    await asyncio.wait_for(waiter, 1)
    assert cluster.changes("a") == [epoch, None]


async def test_keepalives_keep_a_leader_leading(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    epoch = a.epoch
    for _ in range(20):
        cluster.clock.advance(1.0)
        await cluster.renew(a)
        await a.tick()
    assert a.epoch == epoch


@pytest.mark.parametrize(
    ("outcome", "ticks", "takes_over"),
    [
        pytest.param(ProbeOutcome.REFUSED, 4, True, id="refused long enough: revoked"),
        pytest.param(ProbeOutcome.REFUSED, 2, False, id="too few refusals yet"),
        pytest.param(ProbeOutcome.TIMEOUT, 10, False, id="a paused or partitioned leader is never revoked"),
        pytest.param(ProbeOutcome.ERROR, 10, False, id="an error proves nothing"),
        pytest.param(ProbeOutcome.OK, 10, False, id="alive"),
    ],
)
async def test_fast_revoke_only_on_refused_connections(
    cluster: Cluster, outcome: ProbeOutcome, ticks: int, takes_over: bool
) -> None:
    a = await cluster.add("a")
    await a.tick()
    old_epoch = a.epoch
    assert old_epoch is not None
    b = await cluster.add("b")
    cluster.probes.outcomes["10.0.0.1:7000"] = outcome
    for _ in range(ticks):
        await b.tick()
        cluster.clock.advance(0.15)
    await b.tick()  # campaign after a revoke
    assert b.is_leader is takes_over
    if takes_over:
        new_epoch = b.epoch
        assert new_epoch is not None and new_epoch > old_epoch
        assert a.epoch == old_epoch  # a (really alive here) has not looked yet ...
        assert not await leader_txn(cluster, a, "stale")  # ... but its fenced write fails
        await a.tick()
        assert a.epoch is None and a.leader == ("b", "10.0.0.2:7000")
        assert cluster.changes("a") == [old_epoch, None]
        assert cluster.changes("b") == [new_epoch]
        assert b.term is not None and b.term.took_over
        assert not cluster.terms["a"][0].took_over
    else:
        assert a.epoch == old_epoch and b.leader == ("a", "10.0.0.1:7000")


async def test_resign_hands_over_and_epoch_increases(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    b = await cluster.add("b")
    await b.tick()
    epochs = [a.epoch]
    await a.resign()
    cluster.members.remove(a)
    assert await cluster.kv.get(KEYS.leader) is None
    assert await cluster.kv.get(KEYS.member("a")) is None
    await b.tick()
    epochs.append(b.epoch)
    assert epochs[0] is not None and epochs[1] is not None and epochs[1] > epochs[0]
    assert cluster.changes("a") == [epochs[0], None]


async def test_paused_leader_finds_successor_and_follows(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    old = a.epoch
    b = await cluster.add("b")
    await b.tick()
    cluster.clock.advance(10.0)  # a is paused for 2 x ttl; b keeps renewing meanwhile
    await cluster.renew(b)
    assert a.epoch is None  # its validity window passed while it was paused
    await b.tick()  # etcd expired a's lease: the key is gone
    assert b.epoch is not None and old is not None and b.epoch > old
    assert a.leader == ("a", "10.0.0.1:7000")  # what a saw before the pause
    await a.tick()  # a resumes: fresh lease, follows b
    assert a.epoch is None and a.leader == ("b", "10.0.0.2:7000")
    assert a.lease_id != 0
    assert cluster.kv.lease_keys(a.lease_id) == {KEYS.member("a")}


async def test_leader_whose_lease_is_revoked_steps_down_then_campaigns_again(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    old = a.epoch
    await cluster.kv.revoke_lease(a.lease_id)
    await cluster.renew(a)  # the keepalive learns the lease is gone
    assert a.epoch is None
    await a.tick()  # fresh lease, key absent: campaign again with a new epoch
    assert a.epoch is not None and old is not None and a.epoch > old
    assert cluster.changes("a") == [old, None, a.epoch]


async def test_lapsed_lease_still_holding_the_key_is_revoked_after_an_etcd_blip(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    old_epoch, old_lease = a.epoch, a.lease_id
    cluster.kv.available = False
    cluster.clock.advance(3.5)  # validity over on our clock; etcd would keep the lease 1.5 s more
    await cluster.renew(a)
    assert a.epoch is None
    cluster.kv.available = True
    await a.tick()  # fresh lease; the key still names my old lease: revoke it
    assert a.epoch is None and a.lease_id != old_lease
    assert cluster.kv.lease_keys(old_lease) == set()
    member = await cluster.kv.get(KEYS.member("a"))
    assert member is not None and member.lease == a.lease_id
    await a.tick()
    assert a.epoch is not None and old_epoch is not None and a.epoch > old_epoch


async def test_crashed_incarnation_on_same_address_is_replaced_at_start(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    crashed_lease = a.lease_id
    for task in a._tasks:  # a crash: nothing is revoked
        task.cancel()
    assert a._keeper is not None
    await a._keeper.stop(revoke=False)
    cluster.members.remove(a)
    again = await cluster.add("a")  # same id and address: we hold the port, so a is dead
    assert cluster.kv.lease_keys(crashed_lease) == set()
    await again.tick()
    assert again.is_leader


async def test_duplicate_live_member_id_fails_at_start(cluster: Cluster) -> None:
    await cluster.add("a")
    dup = Leadership(cluster.kv, KEYS, "a", "10.0.0.9:7000", TIMINGS, cluster.clock, probe=cluster.probes)
    with pytest.raises(DuplicateMember, match="unique --id"):
        await dup.open()


async def test_dead_member_with_same_id_is_replaced_at_start(cluster: Cluster) -> None:
    a = await cluster.add("a")
    cluster.probes.outcomes["10.0.0.9:7000"] = ProbeOutcome.REFUSED
    stale = await cluster.kv.grant_lease(5)
    await cluster.kv.put(KEYS.member("z"), MemberRecord("10.0.0.9:7000", "0").to_json(), stale)
    z = Leadership(cluster.kv, KEYS, "z", "10.0.0.3:7000", TIMINGS, cluster.clock, probe=cluster.probes)
    await z.open()
    cluster.members.append(z)
    member = await cluster.kv.get(KEYS.member("z"))
    assert member is not None and member.lease == z.lease_id
    assert a.lease_id != z.lease_id


async def test_campaign_race_has_one_winner(cluster: Cluster) -> None:
    members = [await cluster.add(name) for name in "abcd"]
    await asyncio.gather(*(m.tick() for m in members))
    await asyncio.gather(*(m.tick() for m in members))
    leaders = [m.member_id for m in members if m.is_leader]
    assert len(leaders) == 1
    assert all(m.leader == members[0].leader for m in members)


class LeaseCalls:
    """A KV view that counts lease calls and forwards everything to one MemoryKV."""

    def __init__(self, kv: MemoryKV) -> None:
        self._kv = kv
        self.lease_calls = 0

    def __getattr__(self, name: str):
        if name in ("grant_lease", "keepalive_once"):
            self.lease_calls += 1
        return getattr(self._kv, name)


async def test_lease_keepalives_use_their_own_kv() -> None:
    """The leader's lease is granted and renewed on `lease_kv`, never on the bulk KV."""
    clock = ManualClock()
    store = MemoryKV(clock)
    bulk, leases = LeaseCalls(store), LeaseCalls(store)
    lead = Leadership(
        bulk, KEYS, "c1", "10.0.0.1:7000", TIMINGS, clock, probe=Probes(), sleep=never_wakes, lease_kv=leases
    )
    await lead.open()
    await lead.tick()
    assert lead.is_leader
    keeper = lead._keeper
    assert keeper is not None
    await keeper.tick()
    assert leases.lease_calls >= 2  # grant + keepalive
    assert bulk.lease_calls == 0
    await lead.resign()


async def test_work_spawned_in_a_term_is_cancelled_when_the_leader_steps_down(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    term = a.term
    assert term is not None
    work = term.spawn(asyncio.Event().wait(), "work")
    await cluster.kv.revoke_lease(a.lease_id)
    await cluster.renew(a)  # the keepalive learns the lease is gone: the term ends at once
    await asyncio.sleep(0)
    assert term.ended.is_set() and work.cancelled()
    late = term.spawn(asyncio.Event().wait(), "late")  # work for an ended term never runs
    await asyncio.sleep(0)
    assert late.cancelled()


async def test_terms_yields_each_term_as_it_starts(cluster: Cluster) -> None:
    a = await cluster.add("a")
    seen: list[Term] = []

    async def follow() -> None:
        async for term in a.terms():
            seen.append(term)
            await term.ended.wait()

    follower = asyncio.create_task(follow())
    await a.tick()
    await asyncio.sleep(0)
    first = a.term
    assert first is not None and seen == [first]
    await cluster.kv.revoke_lease(a.lease_id)
    await cluster.renew(a)
    await a.tick()  # a fresh lease and a new campaign: a second term
    await asyncio.sleep(0)
    second = a.term
    assert second is not None and second.epoch > first.epoch and seen == [first, second]
    follower.cancel()


async def test_resign_lets_the_term_s_work_finish_before_the_lease_is_revoked(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await a.tick()
    term = a.term
    assert term is not None
    leader_key_at_stop: list[bool] = []

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            leader_key_at_stop.append(await cluster.kv.get(KEYS.leader) is not None)

    term.spawn(work(), "work")
    await asyncio.sleep(0)
    await a.resign()
    cluster.members.remove(a)
    assert leader_key_at_stop == [True]  # stopped while the key (and our fence) still stood
    assert await cluster.kv.get(KEYS.leader) is None


async def test_the_roster_comes_from_the_leader_key_and_members(cluster: Cluster) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    await a.tick()
    roster = await b.roster()  # a standby reads it from etcd as well
    assert (roster.leader_id, roster.leader_addr, roster.epoch) == ("a", "10.0.0.1:7000", a.epoch)
    assert [(m.member_id, m.addr) for m in roster.members] == [("a", "10.0.0.1:7000"), ("b", "10.0.0.2:7000")]
