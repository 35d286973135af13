"""The job table in etcd: fenced create and writes, load and follow, history reads, legacy moves."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from benchmarks.fill_etcd import fill
from i2v_contract import states
from i2v_contract.keys import ClaimRecord, Keys, LeaderRecord, ResultRecord
from i2v_contract.kv import KeyValue, WatchEvent, count_prefix
from i2v_contract.wire import common_pb2
from i2v_coordinator import jobs
from i2v_coordinator.jobstore import MOVE_BATCH, Fenced, IdConflict, JobStore
from i2v_coordinator.jobtable import ChangeKind
from i2v_coordinator.records import JobRecord, decode_job, encode_job
from tests.fakes.clock import ManualClock
from tests.fakes.coordinator import job_record
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/t/")


async def lead(kv: MemoryKV, holder: str = "c1") -> int:
    """Make `holder` the leader key's owner; returns the epoch (its create revision)."""
    await kv.delete(KEYS.leader)
    await kv.put(KEYS.leader, LeaderRecord(id=holder, addr="127.0.0.1:1").to_json())
    kv_leader = await kv.get(KEYS.leader)
    assert kv_leader is not None
    return kv_leader.create_revision


@pytest.fixture
def kv() -> MemoryKV:
    return MemoryKV(ManualClock())


async def test_submit_is_create_if_absent_and_idempotent_on_digest(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    created, was_new = await store.submit(job_record(), epoch)
    assert was_new and created.mod_revision == (await kv.get(KEYS.job("job1"))).mod_revision  # type: ignore[union-attr]
    again, was_new = await store.submit(job_record(), epoch)
    assert not was_new and again.mod_revision == created.mod_revision
    with pytest.raises(IdConflict, match="different request"):
        await store.submit(job_record(prompt="a dog"), epoch)


async def test_writes_from_a_past_epoch_are_fenced(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    old_epoch = await lead(kv, "c1")
    created, _ = await store.submit(job_record(), old_epoch)
    await lead(kv, "c2")  # another coordinator took over
    with pytest.raises(Fenced):
        await store.write(created, dataclasses.replace(created.view, state=states.CANCELLED), old_epoch)
    with pytest.raises(Fenced):
        await store.submit(job_record("job2"), old_epoch)
    assert decode_job(await kv.get(KEYS.job("job1"))).view.state == states.QUEUED  # type: ignore[arg-type]
    assert await kv.get(KEYS.job("job2")) is None


async def test_write_compares_mod_revision_and_optionally_the_claim(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    created, _ = await store.submit(job_record(), epoch)
    assigned = await store.write(created, dataclasses.replace(created.view, state=states.ASSIGNED), epoch)
    assert assigned is not None and assigned.mod_revision > created.mod_revision
    # A write based on the older view loses the mod compare.
    assert await store.write(created, dataclasses.replace(created.view, state=states.FAILED), epoch) is None
    await kv.put(KEYS.claim("job1", 1), ClaimRecord(node_id="n1", epoch=epoch).to_json())
    requeue = dataclasses.replace(assigned.view, state=states.QUEUED, attempt=2)
    assert await store.write(assigned, requeue, epoch, expect_no_claim=True) is None
    assert await store.write(assigned, requeue, epoch) is not None


async def test_table_follows_jobs_claims_and_results_at_one_revision(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    changes: list[tuple[ChangeKind, str, int]] = []
    store.on_change(lambda c: changes.append((c.kind, c.job_id, c.attempt)))
    epoch = await lead(kv)
    await store.submit(job_record(), epoch)
    revision = await store.load()
    assert set(store.table.jobs) == {"job1"} and store.table.revision == revision
    follow = asyncio.create_task(store.follow())
    try:
        changes.clear()
        await kv.put(KEYS.claim("job1", 1), ClaimRecord(node_id="n1", epoch=epoch).to_json())
        produced = common_pb2.Result(
            artifact_uri="file:///store/out.mp4",
            sha256="ab",
            profile="fast",
            timings=common_pb2.Timings(total_s=2.5),
            peak_bytes=99,
        )
        result = ResultRecord("OK", result=produced)
        await kv.put(KEYS.result("job1", 1), result.to_json())
        await kv.delete(KEYS.claim("job1", 1))
        await kv.put(KEYS.node("n1"), b"{}")  # outside the table: no change
        for _ in range(100):
            if len(changes) >= 3:
                break
            await asyncio.sleep(0.01)
        assert changes == [
            (ChangeKind.CLAIM, "job1", 1),
            (ChangeKind.RESULT, "job1", 1),
            (ChangeKind.CLAIM_GONE, "job1", 1),
        ]
        stored = store.table.results[("job1", 1)]
        assert stored.view == jobs.ResultView("job1", 1, 0, "", "file:///store/out.mp4")
        assert stored.result.timings.total_s == 2.5 and stored.result.peak_bytes == 99
        assert stored.result.profile == "fast" and stored.result.mime_type == "video/mp4"
        assert store.table.claims == {}
    finally:
        follow.cancel()


async def test_own_write_seen_again_on_the_watch_is_not_a_second_change(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    await store.load()
    follow = asyncio.create_task(store.follow())
    seen: list[ChangeKind] = []
    store.on_change(lambda c: seen.append(c.kind))
    try:
        await store.submit(job_record(), epoch)
        await asyncio.sleep(0.05)
        assert seen == [ChangeKind.JOB]
    finally:
        follow.cancel()


async def test_compacted_watch_relists(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    await store.load()
    await store.submit(job_record("job1"), epoch)
    store.table.jobs.clear()  # pretend we missed it
    await kv.put(KEYS.claim("job1", 1), ClaimRecord(node_id="n1", epoch=epoch).to_json())
    await kv.compact(kv.revision)
    store.table.revision = 1  # the watch would start before the compaction
    relisted: list[ChangeKind] = []
    store.on_change(lambda c: relisted.append(c.kind))
    follow = asyncio.create_task(store.follow())
    try:
        for _ in range(100):
            if ChangeKind.RELIST in relisted:
                break
            await asyncio.sleep(0.01)
        assert ChangeKind.RELIST in relisted
        assert "job1" in store.table.jobs and ("job1", 1) in store.table.claims
    finally:
        follow.cancel()


OK_RESULT = ResultRecord(
    "OK",
    result=common_pb2.Result(
        artifact_uri="file:///store/out.mp4",
        sha256="ab",
        profile="fast",
        timings=common_pb2.Timings(total_s=2.0),
        peak_bytes=99,
    ),
)


async def running_with_result(kv: MemoryKV, store: JobStore, epoch: int, job_id: str = "job1") -> JobRecord:
    """job_id claimed by n1 (attempt 1), with an OK result, both folded into the table."""
    created, _ = await store.submit(job_record(job_id), epoch)
    view = dataclasses.replace(created.view, state=states.RUNNING, node_id="n1", epoch=epoch)
    running = await store.write(created, view, epoch)
    assert running is not None
    for key, value in (
        (KEYS.claim(job_id, 1), ClaimRecord("n1", epoch).to_json()),
        (KEYS.claim(job_id, 2), ClaimRecord("n1", epoch).to_json()),
        (KEYS.result(job_id, 1), OK_RESULT.to_json()),
    ):
        kv_rev = await kv.put(key, value)
        store.table.apply(WatchEvent("put", KeyValue(key, value, kv_rev, kv_rev, 1, 0)))
    return running


@pytest.mark.parametrize(
    ("state", "result_attempt", "embeds_result"),
    [
        (states.SUCCEEDED, 1, True),
        (states.FAILED, 1, True),
        (states.FAILED, 0, False),
        (states.CANCELLED, 0, False),
    ],
)
async def test_a_final_write_moves_the_job_to_history_in_one_txn(
    kv: MemoryKV, state: int, result_attempt: int, embeds_result: bool
) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    running = await running_with_result(kv, store, epoch)
    await kv.put(KEYS.claim("job10", 1), b"{}")  # another job's claim under a longer id stays
    before = kv.revision
    final = dataclasses.replace(running.view, state=state, finished_at=2000.5, result_attempt=result_attempt)
    written = await store.write(running, final, epoch)
    assert written is not None and written.mod_revision == before + 1  # one revision: one txn
    items, _ = await kv.range_prefix(KEYS.prefix)
    entry = KEYS.history_entry(2000.5, "job1")
    assert entry == "/t/history/0000002000500000-job1"
    assert [i.key for i in items] == [KEYS.claim("job10", 1), KEYS.leader, KEYS.done_of("job1"), entry]
    stored = decode_job(items[3])
    assert stored.view == final and (stored.result is not None) == embeds_result
    if embeds_result:
        assert stored.result is not None and stored.result.artifact_uri == OK_RESULT.result.artifact_uri
    # The open table lost the job, its claims and results; the finished cache has it.
    assert "job1" not in store.table.jobs and not store.table.claims and not store.table.results
    assert store.table.get("job1") == written
    fetched = await store.fetch("job1")
    assert fetched is not None and fetched.view == final and fetched.digest == running.digest


async def test_a_stale_final_write_loses_and_changes_nothing(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    running = await running_with_result(kv, store, epoch)
    newer = await store.write(running, dataclasses.replace(running.view, node_id="n2"), epoch)
    assert newer is not None
    before = kv.revision
    final = dataclasses.replace(running.view, state=states.SUCCEEDED, finished_at=2000.0, result_attempt=1)
    assert await store.write(running, final, epoch) is None
    assert kv.revision == before
    assert await kv.get(KEYS.done_of("job1")) is None and await kv.get(KEYS.claim("job1", 1)) is not None
    assert await count_prefix(kv, KEYS.history) == 0


async def test_submit_of_a_finished_id_returns_the_finished_job(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    running = await running_with_result(kv, store, epoch)
    done = dataclasses.replace(running.view, state=states.SUCCEEDED, finished_at=2000.0, result_attempt=1)
    assert await store.write(running, done, epoch) is not None
    again, created = await store.submit(job_record(), epoch)
    assert not created and again.view.state == states.SUCCEEDED
    assert await kv.get(KEYS.job("job1")) is None  # not re-opened
    with pytest.raises(IdConflict, match="different request"):
        await store.submit(job_record(prompt="a dog"), epoch)


async def test_load_pages_only_the_open_prefixes(kv: MemoryKV, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    monkeypatch.setattr("i2v_coordinator.jobstore.LOAD_PAGE", 2)
    for i in range(5):
        await store.submit(job_record(f"open{i}"), epoch)
    for i in range(7):
        running = await running_with_result(kv, store, epoch, f"done{i}")
        final = dataclasses.replace(running.view, state=states.CANCELLED, finished_at=2000.0 + i)
        assert await store.write(running, final, epoch) is not None
    reads: list[str] = []
    inner = kv.range_page

    async def counting(start: str, end: str, limit: int):  # type: ignore[no-untyped-def]
        reads.append(start)
        return await inner(start, end, limit)

    monkeypatch.setattr(kv, "range_page", counting)
    fresh = JobStore(kv, KEYS)
    await fresh.load()
    assert sorted(fresh.table.jobs) == [f"open{i}" for i in range(5)]
    assert all(not r.startswith((KEYS.history, KEYS.done)) for r in reads)
    assert len([r for r in reads if r.startswith(KEYS.jobs)]) == 3  # 5 jobs in pages of 2


async def test_follow_yields_to_the_loop_within_a_burst_of_events(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    await store.load()
    for i in range(1000):  # a burst the watch delivers back to back
        await kv.put(KEYS.claim(f"job{i}", 1), ClaimRecord("n1", 2).to_json())
    seen: list[int] = []

    async def ticker() -> None:  # stands in for the lease keepalive
        while True:
            seen.append(len(store.table.claims))
            await asyncio.sleep(0)

    all_in = asyncio.Event()
    store.on_change(lambda _: len(store.table.claims) == 1000 and all_in.set())
    tick = asyncio.create_task(ticker())
    follow = asyncio.create_task(store.follow())
    try:
        await asyncio.wait_for(all_in.wait(), 5)
    finally:
        follow.cancel()
        tick.cancel()
    assert any(0 < n < 1000 for n in seen), "the burst held the loop until its end"


NOW_S = 1.7e9


@pytest.mark.parametrize(
    ("finished_at", "limit"),
    [
        ([NOW_S - 6 * i for i in range(40)], 7),  # jobs finishing up to now
        ([NOW_S - 30 * 86400 - i for i in range(40)], 5),  # after a month without jobs
        ([NOW_S - 5.0] * 30, 4),  # a burst within one microsecond: ties broken by id
        ([NOW_S + 86400 + i for i in range(10)] + [NOW_S - i for i in range(10)], 3),  # a clock a day ahead
        ([float(i) for i in range(25)], 10),  # 1970
        ([NOW_S - 1], 1),
        ([], 5),
    ],
)
async def test_history_pages_walk_newest_first_exactly_once(
    kv: MemoryKV, finished_at: list[float], limit: int
) -> None:
    store = JobStore(kv, KEYS, clock=lambda: NOW_S)
    for i, at in enumerate(finished_at):
        view = dataclasses.replace(job_record(f"job{i:03d}").view, state=states.CANCELLED, finished_at=at)
        await kv.put(
            KEYS.history_entry(at, view.job_id), encode_job(dataclasses.replace(job_record(), view=view))
        )
    expected = sorted(
        (KEYS.history_entry(at, f"job{i:03d}") for i, at in enumerate(finished_at)), reverse=True
    )
    walked: list[str] = []
    before, more = "", True
    while more:
        page, more = await store.history_page(before, limit)
        assert len(page) <= limit and (more or len(walked) + len(page) == len(expected))
        walked += [key for key, _ in page]
        before = page[-1][0] if page else before
        assert len(walked) <= len(expected) + limit
    assert walked == expected


async def test_finished_jobs_the_previous_schema_left_in_jobs_move_to_history_in_fenced_batches(
    kv: MemoryKV,
) -> None:
    await fill(kv, KEYS, 30, 4, layout="jobs", batch=50, concurrency=1, now=1_700_000_000.0)
    epoch = await lead(kv)
    store = JobStore(kv, KEYS)
    await store.load()
    legacy = store.table.legacy_finished()
    assert len(legacy) == 30 and len(store.table.jobs) == 34 and len(store.table.results) == 30
    assert [r.view.finished_at for r in legacy] == sorted(r.view.finished_at for r in legacy)
    before = kv.revision
    moved = [await store.move_legacy(legacy[i : i + MOVE_BATCH], epoch) for i in range(0, 30, MOVE_BATCH)]
    assert moved == [MOVE_BATCH, 30 - MOVE_BATCH] and kv.revision == before + 2  # one txn per batch
    assert sorted(store.table.jobs) == sorted(r.job_id for r in store.table.jobs.values() if not r.view.final)
    assert len(store.table.jobs) == 4 and not store.table.results and not store.table.finished
    assert await count_prefix(kv, KEYS.results) == 0 and await count_prefix(kv, KEYS.jobs) == 4
    assert await count_prefix(kv, KEYS.history) == await count_prefix(kv, KEYS.done) == 30
    for old in legacy:
        fetched = await store.fetch(old.job_id)
        assert fetched is not None and fetched.view == old.view and fetched.result is not None
        assert fetched.result.artifact_uri == old.view.artifact_uri != ""
    fresh = JobStore(kv, KEYS)
    await fresh.load()  # the next leader loads the open jobs only
    assert len(fresh.table.jobs) == 4 and fresh.table.legacy_finished() == []


async def test_a_legacy_record_that_changed_is_skipped_and_a_past_epoch_is_fenced(kv: MemoryKV) -> None:
    await fill(kv, KEYS, 3, 0, layout="jobs", batch=50, concurrency=1, now=1_700_000_000.0)
    epoch = await lead(kv)
    store = JobStore(kv, KEYS)
    await store.load()
    legacy = store.table.legacy_finished()
    changed = legacy[1]
    await kv.put(KEYS.job(changed.job_id), encode_job(changed))  # a newer mod revision than loaded
    assert await store.move_legacy(legacy, epoch) == 2  # the batch lost; one by one, two moved
    assert await count_prefix(kv, KEYS.jobs) == 1 and await kv.get(KEYS.job(changed.job_id)) is not None
    await lead(kv, "c2")
    with pytest.raises(Fenced):
        await store.move_legacy(store.table.legacy_finished(), epoch)


async def test_running_on_maps_each_node_to_the_job_it_holds_the_newest_claim_for(kv: MemoryKV) -> None:
    """What a standby shows as the nodes' current jobs: read from claims/, since only a leader
    loads the job table; a stale claim of an older attempt loses, a bad record is skipped."""
    store = JobStore(kv, KEYS)
    await kv.put(KEYS.claim("j1", 1), ClaimRecord(node_id="n1", epoch=3).to_json())
    await kv.put(KEYS.claim("j2", 1), ClaimRecord(node_id="n2", epoch=3).to_json())
    await kv.put(KEYS.claim("j3", 2), ClaimRecord(node_id="n2", epoch=4).to_json())
    await kv.put(KEYS.claim("j4", 1), b"not json")
    assert await store.running_on() == {"n1": "j1", "n2": "j3"}
    await kv.delete(KEYS.claim("j1", 1))
    assert await store.running_on() == {"n2": "j3"}
