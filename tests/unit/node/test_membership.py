"""Membership on MemoryKV with a manual clock: registration on the node's lease, lease loss and
re-registration, duplicate node ids, coalesced publishing."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from i2v_contract.keys import NodeRecord
from i2v_contract.memory import I2VGEN_XL, ArchSpec
from i2v_contract.wire import common_pb2
from i2v_node.membership import DuplicateNode
from tests.fakes.node import GIB, IDLE, TTL, World


async def test_registration_is_on_the_lease_and_revoked_on_stop(world: World) -> None:
    m = await world.started()
    got = await world.record()
    assert got is not None
    record, lease = got
    assert lease == m.lease_id != 0
    assert world.keys.node("n1") in world.kv.lease_keys(m.lease_id)
    assert record == NodeRecord(
        addr="10.0.0.1:50051",
        gpu="NVIDIA RTX 4090",
        total_bytes=24 * GIB,
        free_bytes=20 * GIB,
        tier=common_pb2.TIER_16_24,
        busy=False,
        models=("tiny",),
        version="0.1.0",
    )
    assert m.accepting
    await m.stop()
    assert await world.record() is None
    assert not m.accepting


async def test_key_disappears_on_lease_expiry_and_node_stops_accepting(world: World) -> None:
    m = await world.started()
    world.lapse(TTL - 1.5)  # past ttl - margin: the node stops acting before etcd expires the lease
    assert not m.accepting
    assert await world.record() is not None
    world.lapse(1.5)
    assert await world.record() is None


async def test_re_registers_on_a_new_lease_after_expiry(world: World) -> None:
    m = await world.started()
    old = m.lease_id
    world.lapse(TTL + 1)
    assert await world.record() is None
    await m.sync()
    got = await world.record()
    assert got is not None and got[1] == m.lease_id != old
    assert m.accepting


async def test_re_registration_waits_for_etcd_and_replaces_own_stale_key(world: World) -> None:
    m = await world.started()
    old = m.lease_id
    world.kv.available = False
    world.clock.advance(TTL - 1)  # lease invalid locally, not yet expired in the store
    assert await m.sync() == pytest.approx(1.0)  # backoff while etcd is away
    assert not m.accepting
    world.kv.available = True
    world.clock.advance(1.0)
    await m.sync()
    got = await world.record()
    assert got is not None and got[1] == m.lease_id != old  # own old key moved onto the new lease
    assert m.accepting


async def test_duplicate_node_id_at_another_address_is_rejected(world: World) -> None:
    first = await world.started()
    second = world.node("n1", addr="10.0.0.2:50051")
    with pytest.raises(DuplicateNode, match=r"'n1' is already registered at 10\.0\.0\.1:50051"):
        await second.start(IDLE)
    got = await world.record()
    assert got is not None and got[1] == first.lease_id
    assert not second.accepting and second.lease_id == 0


async def test_restart_at_same_address_replaces_a_dead_process_key(world: World) -> None:
    dead = world.node()
    await dead.start(IDLE)
    dead_lease = dead.lease_id
    claim = world.keys.claim("j1", 1)
    await world.kv.put(claim, b"{}", lease=dead_lease)  # the dead process's claim
    world.members.remove(dead)  # it never stops cleanly
    fresh = await world.started()
    got = await world.record()
    assert got is not None and got[1] == fresh.lease_id != dead_lease
    assert await world.kv.get(claim) is None  # released at once: the coordinator requeues it


async def test_busy_flip_is_published_at_once_memory_changes_coalesced(world: World) -> None:
    m = await world.started()
    m.publish(replace(IDLE, busy=True))
    await m.sync()
    got = await world.record()
    assert got is not None and got[0].busy
    moved = replace(IDLE, busy=True, free_bytes=10 * GIB, tier=common_pb2.TIER_LT12)
    m.publish(moved)
    assert await m.sync() == pytest.approx(0.5)
    got = await world.record()
    assert got is not None and got[0].free_bytes == 20 * GIB  # not yet: within min interval
    world.clock.advance(0.5)
    await m.sync()
    got = await world.record()
    assert got is not None and (got[0].free_bytes, got[0].tier) == (10 * GIB, common_pb2.TIER_LT12)


async def test_serving_and_model_shape_are_published_and_read_back(world: World) -> None:
    m = world.node()
    await m.start(replace(IDLE, busy=True, serving=False))
    got = await world.record()
    assert got is not None and (got[0].busy, got[0].serving, got[0].arch) == (True, False, {})
    m.publish(replace(IDLE, arch=I2VGEN_XL))
    await m.sync()
    got = await world.record()
    assert got is not None and (got[0].busy, got[0].serving) == (False, True)
    assert ArchSpec.from_dict(json.loads(json.dumps(got[0].arch))) == I2VGEN_XL


async def test_small_free_memory_jitter_is_not_written(world: World) -> None:
    m = await world.started()
    revision = world.kv.revision
    m.publish(replace(IDLE, free_bytes=IDLE.free_bytes - 1024))
    world.clock.advance(5)
    await m.sync()
    assert world.kv.revision == revision


async def test_key_taken_by_another_node_stops_work_until_it_is_free(world: World) -> None:
    m = await world.started()
    await world.kv.revoke_lease(m.lease_id)  # e.g. an operator deleted it; then another node took it
    other = await world.started(addr="10.0.0.9:50051")
    m.publish(replace(IDLE, busy=True))
    await m.sync()  # the write finds its lease gone
    await m.sync()  # new lease; the key is held by the other node
    assert not m.accepting
    await other.stop()
    world.clock.advance(1.0)
    await m.sync()
    got = await world.record()
    assert got is not None and got[0].addr == "10.0.0.1:50051" and got[0].busy
    assert m.accepting
