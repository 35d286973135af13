"""NodeRegistry on MemoryKV: list then watch, joins/leaves, lease expiry, relist after compaction."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

from i2v_common.kv_metrics import TimedKV
from i2v_contract.keys import Keys, NodeRecord
from i2v_contract.wire import common_pb2
from i2v_coordinator.metrics import CoordinatorMetrics
from i2v_coordinator.registry import NodeRegistry
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/r/")
GIB = 1024**3
Setup = tuple[MemoryKV, ManualClock, NodeRegistry, list[int]]


def record(free_gib: int, *, busy: bool = False, tier: int = common_pb2.TIER_16_24) -> bytes:
    return NodeRecord(
        addr="10.0.0.5:7100",
        gpu="RTX 4080",
        total_bytes=16 * GIB,
        free_bytes=free_gib * GIB,
        tier=tier,
        busy=busy,
        models=("i2vgen-xl",),
        version="t",
    ).to_json()


async def until(cond: Callable[[], bool]) -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    clock = ManualClock()
    kv = MemoryKV(clock)
    await kv.put(KEYS.node("a"), record(15))
    registry = NodeRegistry(kv, KEYS)
    changes: list[int] = []
    registry.on_change(lambda: changes.append(len(registry.snapshot())))
    await registry.start()
    yield kv, clock, registry, changes
    await registry.stop()


async def test_initial_list_is_ready_on_start(
    setup: Setup,
) -> None:
    _, _, registry, _ = setup
    (node,) = registry.snapshot()
    assert (node.node_id, node.addr, node.free_bytes, node.model) == (
        "a",
        "10.0.0.5:7100",
        15 * GIB,
        "i2vgen-xl",
    )
    assert node.tier == common_pb2.TIER_16_24 and node.total_bytes == 16 * GIB and not node.busy


async def test_joins_updates_and_lease_expiry_are_followed(
    setup: Setup,
) -> None:
    kv, clock, registry, changes = setup
    lease = await kv.grant_lease(10)
    await kv.put(KEYS.node("b"), record(8, tier=common_pb2.TIER_LT12), lease)
    await until(lambda: len(registry.snapshot()) == 2)
    await kv.put(KEYS.node("a"), record(3, busy=True))
    await until(lambda: registry.snapshot()[0].busy)
    assert registry.snapshot()[0].free_bytes == 3 * GIB
    clock.advance(11)
    kv.expire()  # node b died: its lease expired
    await until(lambda: [n.node_id for n in registry.snapshot()] == ["a"])
    assert changes[-1] == 1
    assert registry.revision == kv.revision


async def test_unreadable_node_value_is_ignored(
    setup: Setup,
) -> None:
    kv, _, registry, _ = setup
    await kv.put(KEYS.node("bad"), b"not json")
    await kv.put(KEYS.node("c"), record(12))
    await until(lambda: len(registry.snapshot()) == 2)
    assert [n.node_id for n in registry.snapshot()] == ["a", "c"]


async def test_relists_after_compaction() -> None:
    clock = ManualClock()
    kv = MemoryKV(clock)
    registry = NodeRegistry(kv, KEYS)
    await registry.start()
    await registry.stop()  # the watch is down while history moves on and is compacted
    await kv.put(KEYS.node("x"), record(20))
    await kv.delete(KEYS.node("x"))
    await kv.put(KEYS.node("y"), record(20))
    await kv.compact(kv.revision)
    await registry.start()
    assert [n.node_id for n in registry.snapshot()] == ["y"]
    await registry.stop()


async def test_timed_kv_records_latency_by_op() -> None:
    metrics = CoordinatorMetrics()
    kv = TimedKV(MemoryKV(ManualClock()), metrics.etcd_call)
    await kv.put("/k", b"v")
    await kv.get("/k")
    await kv.get("/k")
    count = metrics.registry.get_sample_value("i2v_etcd_call_seconds_count", {"op": "get"})
    assert count == 2
    assert metrics.registry.get_sample_value("i2v_etcd_call_seconds_count", {"op": "put"}) == 1


async def test_nodes_gauge_counts_by_tier_and_state(
    setup: Setup,
) -> None:
    kv, _, registry, _ = setup
    metrics = CoordinatorMetrics()
    metrics.watch_nodes(registry.snapshot)
    await kv.put(KEYS.node("b"), record(15, busy=True))
    await until(lambda: len(registry.snapshot()) == 2)
    sample = metrics.registry.get_sample_value
    assert sample("i2v_nodes", {"tier": "16-24", "state": "idle"}) == 1
    assert sample("i2v_nodes", {"tier": "16-24", "state": "busy"}) == 1
    assert sample("i2v_nodes", {"tier": "ge40", "state": "idle"}) == 0


async def test_a_node_s_registration_changes_only_when_it_registers_anew(setup: Setup) -> None:
    kv, _, registry, _ = setup
    first = registry.snapshot()[0].registration
    assert first > 0
    await kv.put(KEYS.node("a"), record(3, busy=True))  # an update of the same key
    await until(lambda: registry.snapshot()[0].busy)
    assert registry.snapshot()[0].registration == first
    await kv.delete(KEYS.node("a"))
    await until(lambda: registry.snapshot() == ())
    await kv.put(KEYS.node("a"), record(15))  # the node came back: a new key
    await until(lambda: len(registry.snapshot()) == 1)
    assert registry.snapshot()[0].registration > first


def test_node_health_metrics() -> None:
    metrics = CoordinatorMetrics()
    metrics.node_failure("claim_timeout", False)
    metrics.node_failure("result", True)
    metrics.nodes_held_back(2, 1)
    sample = metrics.registry.get_sample_value
    assert sample("i2v_coordinator_node_cooldowns_total", {"reason": "claim_timeout"}) == 1
    assert sample("i2v_coordinator_node_cooldowns_total", {"reason": "result"}) == 1
    assert sample("i2v_coordinator_node_set_asides_total") == 1
    assert (sample("i2v_coordinator_nodes_cooling"), sample("i2v_coordinator_nodes_set_aside")) == (2, 1)


async def test_the_snapshot_stays_sorted_as_nodes_join_and_leave(setup: Setup) -> None:
    kv, _, registry, _ = setup
    for node_id in ("d", "b", "c"):
        await kv.put(KEYS.node(node_id), record(15))
    await until(lambda: len(registry.snapshot()) == 4)
    await kv.delete(KEYS.node("b"))
    await kv.put(KEYS.node("c"), record(2, busy=True))
    await until(lambda: [n.node_id for n in registry.snapshot()] == ["a", "c", "d"])
    assert [n.busy for n in registry.snapshot()] == [False, True, False]
    assert registry.snapshot() is registry.snapshot()  # rebuilt only after a change


async def test_adverts_revision_moves_when_what_nodes_serve_changes_not_when_busy_flips(setup: Setup) -> None:
    kv, _, registry, _ = setup
    start = registry.adverts_revision
    await kv.put(KEYS.node("a"), record(3, busy=True))
    await until(lambda: registry.snapshot()[0].busy)
    assert registry.adverts_revision == start
    changed = dataclasses.replace(NodeRecord.from_json(record(15)), arch={"name": "other"})
    await kv.put(KEYS.node("a"), changed.to_json())
    await until(lambda: registry.adverts_revision != start)
    joined = registry.adverts_revision
    await kv.put(KEYS.node("b"), record(15))
    await until(lambda: registry.adverts_revision > joined)
    joined = registry.adverts_revision
    await kv.delete(KEYS.node("b"))
    await until(lambda: registry.adverts_revision > joined)
