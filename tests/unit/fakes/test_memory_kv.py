"""MemoryKV specifics (the shared etcd-fidelity tests live in tests/integration/test_etcd_kv.py),
plus the pure helpers of the etcd adapter: endpoint parsing and retry classification."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from i2v_common.etcd_kv import retry_safe
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
        [Put("/a", b"1"), Put("/a", b"2")],
        [Put("/a", b"1"), Delete("/a")],
        [Put("/a/b", b"1"), Delete("/a/", prefix=True)],
    ],
)
async def test_txn_rejects_duplicate_keys(kv: MemoryKV, ops: list[Put | Delete]) -> None:
    with pytest.raises(ValueError, match="more than once"):
        await kv.txn([], ops)
    assert kv.revision == 1


async def test_unavailable_flag(kv: MemoryKV) -> None:
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
    [(3, 2, True), (3, 3, False), (3, 4, False), (4, 1, True)],
)
async def test_compaction_boundary(kv: MemoryKV, compact_to: int, watch_from: int, raises: bool) -> None:
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


@pytest.mark.parametrize(
    ("target", "value"),
    [("value", 1), ("create", b"1"), ("mod", b"x"), ("version", b"")],
)
def test_compare_value_type_must_match_target(target: str, value: int | bytes) -> None:
    with pytest.raises(ValueError, match="needs"):
        Compare("/k", target, "==", value)  # type: ignore[arg-type]


U, D, N = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("code", "details", "mutating", "safe"),
    [
        (U, "failed to connect to all addresses; Connection refused", True, True),
        (U, "etcdserver: no leader", True, True),
        (U, "etcdserver: request timed out", True, False),  # may still commit
        (U, "etcdserver: leader changed", True, False),
        (U, "Socket closed", True, False),
        (D, "Deadline Exceeded", True, False),
        (D, "Deadline Exceeded", False, True),
        (U, "Socket closed", False, True),
        (N, "etcdserver: requested lease not found", False, False),
    ],
)
def test_retry_safe(code: grpc.StatusCode, details: str, mutating: bool, safe: bool) -> None:
    assert retry_safe(code, details, mutating=mutating) is safe
