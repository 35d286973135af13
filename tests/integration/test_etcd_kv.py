"""The same behaviour tests against MemoryKV and a real etcd (so the fake stays faithful), then
failover tests against a real 3-member cluster."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import pytest

from i2v_common.etcd_kv import EtcdKV
from i2v_contract.kv import (
    Compacted,
    Compare,
    Delete,
    KVUnavailable,
    LeaseLost,
    Put,
    WatchEvent,
    count_prefix,
    prefix_end,
    range_pages,
)
from tests.etcd_cluster import EtcdCluster
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

pytestmark = pytest.mark.integration

WAIT_S = 5.0  # bound on any wait for an event or an expiry


@dataclass
class Backend:
    kv: MemoryKV | EtcdKV
    prefix: str  # unique per test: the single etcd member is shared by the module
    pass_time: Callable[[float], Awaitable[None]]  # let `seconds` elapse for leases


@pytest.fixture(params=["memory", "etcd"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    prefix = f"/t/{uuid.uuid4().hex[:8]}/"
    if request.param == "memory":
        clock = ManualClock()
        mem = MemoryKV(clock)

        async def advance(seconds: float) -> None:
            clock.advance(seconds)
            mem.expire()

        yield Backend(mem, prefix, advance)
        return
    cluster: EtcdCluster = request.getfixturevalue("etcd")
    kv = EtcdKV(cluster.endpoints)
    try:
        yield Backend(kv, prefix, asyncio.sleep)
    finally:
        await kv.close()


async def take(events: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    got: list[WatchEvent] = []
    async with asyncio.timeout(WAIT_S):
        async for ev in events:
            got.append(ev)
            if len(got) == n:
                break
    await cast(AsyncGenerator[WatchEvent, None], events).aclose()
    return got


async def wait_gone(b: Backend, key: str, ttl: float) -> float:
    """Let time pass until `key` disappears (lease expiry); returns the seconds it took."""
    start = time.monotonic()
    waited = 0.0
    while await b.kv.get(key) is not None:
        assert waited < ttl + WAIT_S, f"{key} still present {waited:.1f}s after a {ttl}s lease"
        await b.pass_time(0.25)
        waited += 0.25
    return time.monotonic() - start


async def test_put_get_bookkeeping(backend: Backend) -> None:
    kv, key = backend.kv, backend.prefix + "a"
    rev1 = await kv.put(key, b"1")
    rev2 = await kv.put(key, b"2")
    got = await kv.get(key)
    assert got is not None
    assert (got.value, got.create_revision, got.mod_revision, got.version) == (b"2", rev1, rev2, 2)
    assert rev2 == rev1 + 1
    deleted_at = await kv.delete(key)
    assert deleted_at == rev2 + 1
    assert await kv.get(key) is None
    # Deleting a missing key changes nothing, so the revision stays.
    assert await kv.delete(key) == deleted_at


async def test_range_prefix_sorted_with_header_revision(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    for name in ("b", "a", "c"):
        await kv.put(p + name, name.encode())
    last = await kv.put(p + "sub/x", b"x")
    await kv.put(p[:-1] + "-outside", b"no")
    items, revision = await kv.range_prefix(p)
    assert [i.key for i in items] == [p + "a", p + "b", p + "c", p + "sub/x"]
    assert revision == last + 1  # the header is the store revision, including the outside write
    assert await kv.range_prefix(p + "nothing/") == ([], revision)


@pytest.mark.parametrize(
    ("limit", "expected", "more"),
    [
        (1, ["a"], True),
        (2, ["a", "b"], True),
        (4, ["a", "b", "c", "d"], False),
        (9, ["a", "b", "c", "d"], False),
    ],
)
async def test_range_page_limit_and_order(
    backend: Backend, limit: int, expected: list[str], more: bool
) -> None:
    kv, p = backend.kv, backend.prefix
    for name in ("c", "a", "d", "b"):
        await kv.put(p + name, name.encode())
    last = await kv.put(p[:-1] + "-outside", b"no")
    page = await kv.range_page(p, prefix_end(p), limit)
    assert [i.key.removeprefix(p) for i in page.items] == expected
    assert (page.more, page.revision) == (more, last)


async def test_range_page_bounds_and_pages_walk_everything_once(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    names = [f"k{i:03d}" for i in range(7)]
    for name in names:
        await kv.put(p + name, b"v")
    # The start is inclusive, the end exclusive.
    window = await kv.range_page(p + "k001", p + "k004", 10)
    assert [i.key.removeprefix(p) for i in window.items] == ["k001", "k002", "k003"]
    assert not window.more
    assert await kv.count_range(p + "k001", p + "k004") == 3
    pages = [page async for page in range_pages(kv, p, 3)]
    assert [len(page.items) for page in pages] == [3, 3, 1]
    assert [i.key.removeprefix(p) for page in pages for i in page.items] == names
    assert await count_prefix(kv, p) == 7
    assert await count_prefix(kv, p + "nothing/") == 0


async def test_txn_prefix_delete_removes_only_that_prefix(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    for key in ("claims/j1/1", "claims/j1/2", "claims/j10/1", "jobs/j1"):
        await kv.put(p + key, b"v")
    start = await kv.put(p + "results/j1/2", b"r")
    events = kv.watch_prefix(p, start + 1)
    done = await kv.txn(
        [Compare(p + "jobs/j1", "create", ">", 0)],
        [
            Delete(p + "jobs/j1"),
            Delete(p + "claims/j1/", prefix=True),
            Delete(p + "results/j1/", prefix=True),
        ],
    )
    assert done.succeeded and done.revision == start + 1
    items, _ = await kv.range_prefix(p)
    assert [i.key.removeprefix(p) for i in items] == ["claims/j10/1"]
    got = await take(events, 4)
    assert {e.kv.key.removeprefix(p) for e in got} == {
        "jobs/j1",
        "claims/j1/1",
        "claims/j1/2",
        "results/j1/2",
    }
    assert {(e.kind, e.kv.mod_revision) for e in got} == {("delete", done.revision)}
    # A prefix delete of nothing succeeds and writes nothing.
    again = await kv.txn([], [Delete(p + "claims/j1/", prefix=True)])
    assert again.succeeded and again.revision == done.revision


async def test_create_if_absent(backend: Backend) -> None:
    kv, key = backend.kv, backend.prefix + "job"
    absent = [Compare(key, "create", "==", 0)]
    first = await kv.txn(absent, [Put(key, b"v1")], [Put(backend.prefix + "lost", b"x")])
    assert first.succeeded
    second = await kv.txn(absent, [Put(key, b"v2")])
    assert not second.succeeded
    assert second.revision == first.revision  # a failed txn with no failure ops writes nothing
    got = await kv.get(key)
    assert got is not None and got.value == b"v1" and got.create_revision == first.revision
    assert await kv.get(backend.prefix + "lost") is None
    third = await kv.txn(absent, [Put(key, b"v3")], [Put(backend.prefix + "lost", b"y")])
    assert not third.succeeded and third.revision == first.revision + 1
    assert await kv.get(backend.prefix + "lost") is not None


async def test_mod_revision_fencing(backend: Backend) -> None:
    kv, key, other = backend.kv, backend.prefix + "job", backend.prefix + "claim"
    seen = await kv.put(key, b"assigned")
    await kv.put(key, b"reassigned")  # someone else moved on
    stale = await kv.txn([Compare(key, "mod", "==", seen)], [Put(other, b"x")])
    assert not stale.succeeded and await kv.get(other) is None
    current = await kv.get(key)
    assert current is not None
    fresh = await kv.txn(
        [Compare(key, "mod", "==", current.mod_revision), Compare(other, "create", "==", 0)],
        [Put(other, b"x"), Delete(key)],
    )
    assert fresh.succeeded
    assert await kv.get(key) is None
    claim = await kv.get(other)
    assert claim is not None and claim.mod_revision == fresh.revision


@pytest.mark.parametrize(
    ("compare_on", "target", "op", "value", "expected"),
    [
        ("present", "version", "==", 1, True),
        ("present", "version", ">", 1, False),
        ("present", "value", "==", b"v", True),
        ("present", "value", "!=", b"v", False),
        ("present", "value", ">", b"a", True),
        ("present", "create", "<", 1, False),
        ("missing", "value", "==", b"", False),  # etcd: a value compare on a missing key is false
        ("missing", "value", "!=", b"v", False),
        ("missing", "version", "==", 0, True),
        ("missing", "mod", "<", 1, True),
    ],
)
async def test_compare_targets(
    backend: Backend, compare_on: str, target: str, op: str, value: int | bytes, expected: bool
) -> None:
    kv = backend.kv
    await kv.put(backend.prefix + "present", b"v")
    result = await kv.txn([Compare(backend.prefix + compare_on, target, op, value)], [])  # type: ignore[arg-type]
    assert result.succeeded is expected


async def test_lease_expiry_deletes_keys(backend: Backend) -> None:
    kv, key = backend.kv, backend.prefix + "node"
    lease = await kv.grant_lease(1)
    await kv.put(key, b"up", lease=lease)
    got = await kv.get(key)
    assert got is not None and got.lease == lease
    await wait_gone(backend, key, 1)
    with pytest.raises(LeaseLost):
        await kv.keepalive_once(lease)
    with pytest.raises(LeaseLost):
        await kv.put(key, b"again", lease=lease)
    with pytest.raises(LeaseLost):
        await kv.txn([], [Put(key, b"again", lease)])
    await kv.revoke_lease(lease)  # already gone: not an error


async def test_keepalive_keeps_keys(backend: Backend) -> None:
    kv, key = backend.kv, backend.prefix + "node"
    lease = await kv.grant_lease(1)
    await kv.put(key, b"up", lease=lease)
    for _ in range(6):  # 1.8 s, well past the TTL
        assert await kv.keepalive_once(lease) >= 1
        await backend.pass_time(0.3)
    assert await kv.get(key) is not None
    await kv.revoke_lease(lease)


async def test_revoke_deletes_keys_in_one_revision_and_is_watched(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    lease = await kv.grant_lease(30)
    await kv.put(p + "a", b"1", lease=lease)
    before = await kv.put(p + "b", b"2", lease=lease)
    watch = kv.watch_prefix(p, before + 1)
    await kv.revoke_lease(lease)
    events = await take(watch, 2)
    assert [(e.kind, e.kv.key, e.kv.value) for e in events] == [
        ("delete", p + "a", b""),
        ("delete", p + "b", b""),
    ]
    assert {e.kv.mod_revision for e in events} == {before + 1}
    assert await kv.range_prefix(p) == ([], before + 1)
    await kv.revoke_lease(lease)


async def test_watch_from_revision_replays_then_follows(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    first = await kv.put(p + "x", b"1")
    await kv.put(p[:-1] + "-other", b"skip")
    await kv.txn([], [Put(p + "y", b"2"), Delete(p + "x")])
    watch = kv.watch_prefix(p, first)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await kv.put(p + "z", b"3")
        await kv.delete(p + "y")

    writer = asyncio.create_task(later())
    events = await take(watch, 5)
    await writer
    assert [(e.kind, e.kv.key) for e in events] == [
        ("put", p + "x"),
        ("put", p + "y"),
        ("delete", p + "x"),
        ("put", p + "z"),
        ("delete", p + "y"),
    ]
    revisions = [e.kv.mod_revision for e in events]
    assert revisions == sorted(revisions) and revisions[1] == revisions[2]  # one txn, one revision
    assert events[3].kv.version == 1 and events[3].kv.create_revision == events[3].kv.mod_revision


async def test_compaction_makes_old_watch_raise(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    old = await kv.put(p + "a", b"1")
    await kv.put(p + "a", b"2")
    keep = await kv.put(p + "a", b"3")
    await kv.compact(keep)
    with pytest.raises(Compacted) as raised:
        await take(kv.watch_prefix(p, old), 1)
    assert raised.value.compact_revision == keep
    events = await take(kv.watch_prefix(p, keep), 1)  # the compaction revision itself is kept
    assert events[0].kv.value == b"3"
    with pytest.raises(ValueError):
        await kv.compact(old)


# ---- real 3-member cluster: failover ----


@pytest.fixture
async def kv3(etcd3: EtcdCluster) -> AsyncIterator[EtcdKV]:
    kv = EtcdKV(etcd3.endpoints, timeout=1.5)
    yield kv
    await kv.close()


def index_of(cluster: EtcdCluster, endpoint: str) -> int:
    return cluster.endpoints.index(endpoint)


async def timed(call: Awaitable[object]) -> tuple[object, float]:
    start = time.monotonic()
    result = await call
    return result, time.monotonic() - start


async def test_failover_when_used_member_is_killed(etcd3: EtcdCluster, kv3: EtcdKV) -> None:
    await kv3.put("/f/k", b"1")
    victim = index_of(etcd3, kv3.endpoint)
    etcd3.kill(victim)
    got, read_s = await timed(kv3.get("/f/k"))
    assert got is not None and read_s < 1.5
    assert kv3.endpoint != etcd3.endpoints[victim]
    rev, write_s = await timed(kv3.put("/f/k", b"2"))
    assert isinstance(rev, int) and write_s < 1.5


async def test_leader_kill_create_if_absent_settles(etcd3: EtcdCluster) -> None:
    """Writes racing a leader crash may fail with an unknown outcome; each failure is bounded by the
    timeout and a create-if-absent retry converges to exactly one write."""
    leader = etcd3.leader_index()
    endpoints = etcd3.endpoints
    kv = EtcdKV([endpoints[leader]] + [e for i, e in enumerate(endpoints) if i != leader], timeout=1.5)
    key = "/f/created"
    try:
        await kv.put("/f/warm", b"1")
        etcd3.kill(leader)
        start = time.monotonic()
        await create_once(kv, key, b"x")
        settled_s = time.monotonic() - start
        assert settled_s < 4.5, f"writes still failing {settled_s:.2f}s after the leader was killed"
        got = await kv.get(key)
        assert got is not None and got.version == 1
        assert etcd3.leader_index() != leader
    finally:
        await kv.close()


async def test_paused_member_costs_one_attempt(etcd3: EtcdCluster, kv3: EtcdKV) -> None:
    await kv3.put("/f/k", b"1")
    used = index_of(etcd3, kv3.endpoint)
    etcd3.pause(used)
    try:
        got, read_s = await timed(kv3.get("/f/k"))
        assert got is not None and read_s < 1.5
    finally:
        etcd3.resume(used)


async def test_watch_resumes_on_another_member_without_gaps(etcd3: EtcdCluster, kv3: EtcdKV) -> None:
    start = await kv3.put("/w/0", b"0")
    watch = kv3.watch_prefix("/w/", start)
    first = await take_keep_open(watch, 1)
    etcd3.kill(index_of(etcd3, kv3.endpoint))
    for i in range(1, 4):
        await create_once(kv3, f"/w/{i}", str(i).encode())
    rest = await take(watch, 3)
    assert [e.kv.key for e in first + rest] == ["/w/0", "/w/1", "/w/2", "/w/3"]


async def create_once(kv: EtcdKV, key: str, value: bytes, tries: int = 4) -> None:
    """A write racing a member's death may have an unknown outcome: retry as create-if-absent."""
    for _ in range(tries):
        try:
            await kv.txn([Compare(key, "create", "==", 0)], [Put(key, value)])
            return
        except KVUnavailable:
            continue
    raise AssertionError(f"{key} not written after {tries} tries")


async def take_keep_open(events: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    got: list[WatchEvent] = []
    async with asyncio.timeout(WAIT_S):
        while len(got) < n:
            got.append(await anext(events))
    return got


async def test_all_members_down_is_bounded_kv_unavailable(etcd3: EtcdCluster, kv3: EtcdKV) -> None:
    await kv3.put("/f/k", b"1")
    for i in range(3):
        etcd3.kill(i)
    start = time.monotonic()
    with pytest.raises(KVUnavailable, match="no etcd endpoint answered"):
        await kv3.get("/f/k")
    assert time.monotonic() - start < 1.5 + 0.3
    with pytest.raises(KVUnavailable):
        await kv3.put("/f/k", b"2")


def test_etcd3_restart_after_stop(etcd3: EtcdCluster) -> None:
    pids = [etcd3.pid(i) for i in range(3)]
    assert len(set(pids)) == 3 and all(etcd3.running(i) for i in range(3))
    etcd3.stop(0)
    assert not etcd3.running(0)
    etcd3.restart(0)
    assert etcd3.running(0) and etcd3.pid(0) not in pids
    assert etcd3.leader_index() in range(3)
