"""Leadership on a real etcd: in-process coordinators, real leases, watches and txns."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from i2v_common.etcd_kv import EtcdKV
from i2v_contract.keys import Keys
from i2v_contract.kv import Put
from i2v_coordinator.election import ElectionTimings, ProbeOutcome
from i2v_coordinator.leadership import Leadership
from tests.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.integration

TIMINGS = ElectionTimings(ttl_s=2.0, keepalive_s=0.4, call_timeout_s=0.6, margin_s=0.6)


async def alive(addr: str, wait_s: float) -> ProbeOutcome:
    return ProbeOutcome.OK  # these coordinators have no server: never "crashed"


class Group:
    def __init__(self, etcd: EtcdCluster) -> None:
        self.etcd = etcd
        self.keys = Keys(f"/lt-{uuid.uuid4().hex[:8]}/")
        self.kvs: list[EtcdKV] = []
        self.members: list[Leadership] = []

    async def add(self, name: str) -> Leadership:
        kv = EtcdKV(self.etcd.endpoints, timeout=TIMINGS.call_timeout_s)
        self.kvs.append(kv)
        lead = Leadership(kv, self.keys, name, f"127.0.0.1:{9000 + len(self.members)}", TIMINGS, probe=alive)
        await lead.start()
        self.members.append(lead)
        return lead

    def leaders(self) -> list[Leadership]:
        return [m for m in self.members if m.is_leader]

    async def wait_for(self, cond: Callable[[], bool], within_s: float) -> float:
        start = time.monotonic()
        while not cond():
            if time.monotonic() - start > within_s:
                raise AssertionError(f"condition not met in {within_s}s; leaders {self.leaders()}")
            await asyncio.sleep(0.005)
        return time.monotonic() - start

    async def one_leader(self, within_s: float = 3.0) -> Leadership:
        await self.wait_for(lambda: len(self.leaders()) == 1, within_s)
        return self.leaders()[0]


@pytest.fixture
async def group(etcd: EtcdCluster) -> AsyncIterator[Group]:
    g = Group(etcd)
    yield g
    for m in g.members:
        await m.resign()
    for kv in g.kvs:
        await kv.close()


async def test_exactly_one_leader_and_the_others_know_it(group: Group) -> None:
    members = [await group.add(f"c{i}") for i in range(3)]
    leader = await group.one_leader()
    await group.wait_for(lambda: all(m.leader == (leader.member_id, leader.addr) for m in members), 3)
    for _ in range(20):  # stays that way across several keepalive rounds
        assert group.leaders() == [leader]
        await asyncio.sleep(0.05)
    stored = await group.kvs[0].get(group.keys.leader)
    assert stored is not None and stored.create_revision == leader.epoch


async def test_resign_hands_over_quickly_with_a_higher_epoch(group: Group) -> None:
    for i in range(3):
        await group.add(f"c{i}")
    epochs: list[int] = []
    for _ in range(2):
        leader = await group.one_leader()
        assert leader.epoch is not None
        epochs.append(leader.epoch)
        await leader.resign()
        group.members.remove(leader)
        took = await group.wait_for(lambda: len(group.leaders()) == 1, 2.0)
        assert took < 0.5, f"handover took {took:.3f}s"
    final = group.leaders()[0].epoch
    assert final is not None
    epochs.append(final)
    assert epochs == sorted(set(epochs)), f"epochs must strictly increase: {epochs}"


async def test_leader_whose_lease_is_revoked_steps_down_and_its_fenced_write_fails(group: Group) -> None:
    a = await group.add("a")
    await group.one_leader()
    b = await group.add("b")
    old = a.epoch
    assert old is not None
    stale_fence = a.fence()
    admin = group.kvs[0]
    await admin.revoke_lease(a.lease_id)  # an operator (or a standby's crash verdict) revoked it
    await group.wait_for(lambda: a.epoch != old, 1.0)
    assert a.epoch is None or a.epoch > old
    result = await admin.txn([stale_fence], [Put(group.keys.jobs + "late", b"x")])
    assert not result.succeeded
    assert await admin.get(group.keys.jobs + "late") is None
    leader = await group.one_leader()
    assert leader.epoch is not None and leader.epoch > old
    assert leader in (a, b)
