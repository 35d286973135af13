from __future__ import annotations

import asyncio
import dataclasses

import pytest

from i2v_contract.keys import ClaimRecord, Keys, LeaderRecord, ResultRecord
from i2v_contract.kv import KeyValue, WatchEvent
from i2v_contract.memory_kv import ManualClock, MemoryKV
from i2v_contract.v1 import common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.jobstore import (
    ChangeKind,
    Fenced,
    IdConflict,
    JobRecord,
    JobStore,
    JobTable,
    decode_job,
    encode_job,
    job_event,
    request_digest,
)

KEYS = Keys("/t/")


def record(job_id: str = "job1", prompt: str = "a cat") -> JobRecord:
    request = common_pb2.GenerationRequest(prompt=prompt, width=64, height=64, frames=4, seed=7)
    view = jobs.new_job(job_id, 123, common_pb2.TIER_CPU, "tiny", 1000.0)
    return JobRecord(view, request, f"file:///store/jobs/{job_id}/input.png", request_digest(request))


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


def test_job_record_round_trips_through_its_codec() -> None:
    rec = dataclasses.replace(
        record(),
        view=dataclasses.replace(record().view, state=jobs.RUNNING, attempt=3, node_id="n1", min_tier=4),
    )
    kv_value = encode_job(rec)
    back = decode_job(KeyValue(KEYS.job("job1"), kv_value, 5, 9, 2, 0))
    assert back == dataclasses.replace(rec, mod_revision=9)
    assert b"image" not in kv_value  # never image bytes in etcd


async def test_submit_is_create_if_absent_and_idempotent_on_digest(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    created, was_new = await store.submit(record(), epoch)
    assert was_new and created.mod_revision == (await kv.get(KEYS.job("job1"))).mod_revision  # type: ignore[union-attr]
    again, was_new = await store.submit(record(), epoch)
    assert not was_new and again.mod_revision == created.mod_revision
    with pytest.raises(IdConflict, match="different request"):
        await store.submit(record(prompt="a dog"), epoch)


async def test_writes_from_a_past_epoch_are_fenced(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    old_epoch = await lead(kv, "c1")
    created, _ = await store.submit(record(), old_epoch)
    await lead(kv, "c2")  # another coordinator took over
    with pytest.raises(Fenced):
        await store.write(created, dataclasses.replace(created.view, state=jobs.CANCELLED), old_epoch)
    with pytest.raises(Fenced):
        await store.submit(record("job2"), old_epoch)
    assert decode_job(await kv.get(KEYS.job("job1"))).view.state == jobs.QUEUED  # type: ignore[arg-type]
    assert await kv.get(KEYS.job("job2")) is None


async def test_write_compares_mod_revision_and_optionally_the_claim(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    created, _ = await store.submit(record(), epoch)
    assigned = await store.write(created, dataclasses.replace(created.view, state=jobs.ASSIGNED), epoch)
    assert assigned is not None and assigned.mod_revision > created.mod_revision
    # A write based on the older view loses the mod compare.
    assert await store.write(created, dataclasses.replace(created.view, state=jobs.FAILED), epoch) is None
    await kv.put(KEYS.claim("job1", 1), ClaimRecord(node_id="n1", epoch=epoch).to_json())
    requeue = dataclasses.replace(assigned.view, state=jobs.QUEUED, attempt=2)
    assert await store.write(assigned, requeue, epoch, expect_no_claim=True) is None
    assert await store.write(assigned, requeue, epoch) is not None


async def test_table_follows_jobs_claims_and_results_at_one_revision(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    changes: list[tuple[ChangeKind, str, int]] = []
    store.on_change(lambda c: changes.append((c.kind, c.job_id, c.attempt)))
    epoch = await lead(kv)
    await store.submit(record(), epoch)
    revision = await store.load()
    assert set(store.table.jobs) == {"job1"} and store.table.revision == revision
    follow = asyncio.create_task(store.follow())
    try:
        changes.clear()
        await kv.put(KEYS.claim("job1", 1), ClaimRecord(node_id="n1", epoch=epoch).to_json())
        result = ResultRecord(
            status="OK",
            artifact_uri="file:///store/out.mp4",
            sha256="ab",
            profile_used="fast",
            timings={"total_s": 2.5, "bogus": 1.0},
            peak_bytes=99,
        )
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
        await store.submit(record(), epoch)
        await asyncio.sleep(0.05)
        assert seen == [ChangeKind.JOB]
    finally:
        follow.cancel()


async def test_compacted_watch_relists(kv: MemoryKV) -> None:
    store = JobStore(kv, KEYS)
    epoch = await lead(kv)
    await store.load()
    await store.submit(record("job1"), epoch)
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


def test_undecodable_records_are_skipped_not_fatal() -> None:
    table = JobTable(KEYS)
    assert table.apply(WatchEvent("put", KeyValue(KEYS.job("x"), b"not json", 2, 2, 1, 0))) is None
    assert table.apply(WatchEvent("put", KeyValue(KEYS.result("x", 1), b"{}", 3, 3, 1, 0))) is None
    assert table.jobs == {} and table.results == {}


@pytest.mark.parametrize(
    ("state", "status", "expect_result", "expect_error"),
    [
        (jobs.SUCCEEDED, "OK", True, ""),
        (jobs.FAILED, "RESOURCE_EXHAUSTED", False, "out of memory"),
        (jobs.RUNNING, "OK", False, ""),
    ],
)
def test_job_event_carries_result_or_error_only_when_final(
    state: int, status: str, expect_result: bool, expect_error: str
) -> None:
    table = JobTable(KEYS)
    result = ResultRecord(
        status=status, artifact_uri="file:///o.mp4", sha256="s", profile_used="p", timings={}, peak_bytes=1
    )
    table.apply(WatchEvent("put", KeyValue(KEYS.result("job1", 1), result.to_json(), 4, 4, 1, 0)))
    view = dataclasses.replace(
        record().view, state=state, result_attempt=1, error=expect_error, error_code=8 if expect_error else 0
    )
    event = job_event(dataclasses.replace(record(), view=view), table)
    assert event.state == state
    assert event.HasField("result") == expect_result
    if expect_result:
        assert event.result.artifact_uri == "file:///o.mp4"
        # The record has no size or seed: they come from the normalised request (no degradation allowed).
        assert (event.result.seed, event.result.width, event.result.frames) == (7, 64, 4)
    assert event.error == expect_error
    assert isinstance(event, coordinator_pb2.JobEvent)


def _succeeded(raw: bytes, allow_degrade: bool) -> coordinator_pb2.JobEvent:
    table = JobTable(KEYS)
    table.apply(WatchEvent("put", KeyValue(KEYS.result("job1", 1), raw, 4, 4, 1, 0)))
    base = record()
    request = common_pb2.GenerationRequest()
    request.CopyFrom(base.request)
    request.allow_degrade = allow_degrade
    request.steps, request.fps = 6, 8
    view = dataclasses.replace(base.view, state=jobs.SUCCEEDED, result_attempt=1)
    return job_event(dataclasses.replace(base, view=view, request=request), table)


def test_result_carries_exactly_what_the_node_produced() -> None:
    produced = ResultRecord(
        status="OK", artifact_uri="file:///o.mp4", sha256="s", profile_used="p", timings={}, peak_bytes=1,
        width=32, height=48, frames=2, fps=8, steps=3, seed=2**63,
        degradations=("width 64->32", "steps 6->3"), metadata={"dtype": "float32", "tier": "cpu"},
    )  # fmt: skip
    result = _succeeded(produced.to_json(), allow_degrade=True).result
    # Degraded values from the node win over the request's.
    assert (result.width, result.height, result.frames, result.steps) == (32, 48, 2, 3)
    assert (result.fps, result.seed) == (8, 2**63)
    assert list(result.degradations) == ["width 64->32", "steps 6->3"]
    assert dict(result.metadata) == {"dtype": "float32", "tier": "cpu"}


def test_a_result_record_from_an_older_node_still_decodes() -> None:
    old = b'{"status":"OK","artifact_uri":"file:///o.mp4","sha256":"s","profile_used":"p","timings":{},"peak_bytes":1}'
    result = _succeeded(old, allow_degrade=False).result
    assert result.artifact_uri == "file:///o.mp4"
    assert (result.width, result.frames, result.steps, result.seed) == (64, 4, 6, 7)  # from the request
    assert list(result.degradations) == [] and dict(result.metadata) == {}
