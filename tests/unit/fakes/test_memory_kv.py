"""MemoryKV specifics (the shared etcd-fidelity tests live in tests/integration/test_etcd_kv.py)."""

from __future__ import annotations

import asyncio

import pytest

from i2v_contract.kv import Compacted, Compare, Delete, KVUnavailable, LeaseLost, Put
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def kv(clock: ManualClock) -> MemoryKV:
    return MemoryKV(clock)


async def test_revision_starts_at_one_and_reads_do_not_bump(kv: MemoryKV) -> None:
    assert kv.revision == 1
    await kv.get("/a")
    await kv.range_prefix("/")
    assert (await kv.txn([Compare("/a", "create", "==", 0)], [])).revision == 1
    assert await kv.put("/a", b"x") == 2


async def test_leases_expire_lazily_by_clock_oldest_first(kv: MemoryKV, clock: ManualClock) -> None:
    short = await kv.grant_lease(2)
    long = await kv.grant_lease(5)
    await kv.put("/short", b"s", lease=short)
    await kv.put("/long", b"l", lease=long)
    assert kv.lease_keys(short) == {"/short"}
    clock.advance(2.0)
    items, revision = await kv.range_prefix("/")
    assert [i.key for i in items] == ["/long"] and revision == 4
    clock.advance(3.0)
    assert (await kv.range_prefix("/"))[0] == []
    assert kv.lease_keys(long) == set()


async def test_keepalive_moves_the_deadline(kv: MemoryKV, clock: ManualClock) -> None:
    lease = await kv.grant_lease(2)
    await kv.put("/k", b"v", lease=lease)
    clock.advance(1.5)
    assert await kv.keepalive_once(lease) == 2
    clock.advance(1.5)
    kv.expire()
    assert await kv.get("/k") is not None
    clock.advance(0.5)
    kv.expire()
    assert await kv.get("/k") is None
    with pytest.raises(LeaseLost):
        await kv.keepalive_once(lease)


async def test_rewriting_a_key_without_lease_detaches_it(kv: MemoryKV) -> None:
    lease = await kv.grant_lease(10)
    await kv.put("/k", b"v", lease=lease)
    await kv.put("/k", b"v2")
    await kv.revoke_lease(lease)
    got = await kv.get("/k")
    assert got is not None and got.lease == 0 and got.version == 2


@pytest.mark.parametrize(
    "ops",
    [
        pytest.param([Put("/a", b"1"), Put("/a", b"2")], id="two-puts"),
        pytest.param([Put("/a", b"1"), Delete("/a")], id="put-and-delete"),
        pytest.param([Put("/a/b", b"1"), Delete("/a/", prefix=True)], id="put-under-range-delete"),
    ],
)
async def test_txn_rejects_duplicate_keys(kv: MemoryKV, ops: list[Put | Delete]) -> None:
    with pytest.raises(ValueError, match="more than once"):
        await kv.txn([], ops)
    assert kv.revision == 1


async def test_an_unavailable_store_fails_every_call_until_back(kv: MemoryKV) -> None:
    kv.available = False
    with pytest.raises(KVUnavailable):
        await kv.get("/a")
    with pytest.raises(KVUnavailable):
        await kv.put("/a", b"1")
    kv.available = True
    assert await kv.put("/a", b"1") == 2


async def test_watch_from_zero_starts_now_and_wakes_on_write(kv: MemoryKV) -> None:
    await kv.put("/w/old", b"old")
    events = kv.watch_prefix("/w/", 0)
    reader = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    assert not reader.done()
    await kv.put("/w/new", b"new")
    async with asyncio.timeout(1):
        ev = await reader
    assert (ev.kind, ev.kv.key) == ("put", "/w/new")


@pytest.mark.parametrize(
    ("compact_to", "watch_from", "raises"),
    [
        pytest.param(3, 2, True, id="just-before-compaction-raises"),
        pytest.param(3, 3, False, id="at-compaction-revision-replays"),
        pytest.param(3, 4, False, id="after-compaction-replays"),
        pytest.param(4, 1, True, id="long-before-compaction-raises"),
    ],
)
async def test_a_watch_from_before_the_compaction_raises_compacted(
    kv: MemoryKV, compact_to: int, watch_from: int, raises: bool
) -> None:
    for i in range(4):
        await kv.put("/c", str(i).encode())  # revisions 2..5
    await kv.compact(compact_to)
    events = kv.watch_prefix("/c", watch_from)
    if raises:
        with pytest.raises(Compacted) as raised:
            await anext(events)
        assert raised.value.compact_revision == compact_to
    else:
        assert (await anext(events)).kv.mod_revision == watch_from


async def test_compact_rejects_future_and_past(kv: MemoryKV) -> None:
    await kv.put("/a", b"1")
    with pytest.raises(ValueError, match="store is at revision 2"):
        await kv.compact(3)
    await kv.compact(2)
    with pytest.raises(ValueError, match="already compacted"):
        await kv.compact(2)
