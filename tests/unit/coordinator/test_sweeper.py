"""The leader's retention sweeper on MemoryKV with a real file artifact store: fenced bounded batches,
tombstones on a reused lease, NOT_FOUND that says why, and sweeps only within a term."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any, NoReturn, cast

import grpc
import pytest

from i2v_common.artifacts import FileStore
from i2v_contract import states
from i2v_contract.keys import Keys, LeaderRecord
from i2v_contract.kv import count_prefix
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator import jobs, sweeper
from i2v_coordinator.jobstore import Fenced, JobStore
from i2v_coordinator.records import JobRecord, request_digest
from i2v_coordinator.retention import (
    RetentionPolicy,
)
from i2v_coordinator.servicer import CoordinatorServicer
from i2v_coordinator.sweeper import RetentionSweeper
from i2v_coordinator.term import Term
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/rt/")
DAY = 86400.0
NOW = 100 * DAY


class Counting:
    def __init__(self) -> None:
        self.removed = 0
        self.oldest_age = -1.0

    def retention_removed(self, count: int) -> None:
        self.removed += count

    def oldest_finished_age(self, seconds: float) -> None:
        self.oldest_age = seconds


@dataclasses.dataclass
class Env:
    kv: MemoryKV
    store: JobStore
    artifacts: FileStore
    epoch: int
    metrics: Counting

    def sweeper(self, policy: RetentionPolicy, now: float = NOW) -> RetentionSweeper:
        return RetentionSweeper(
            self.store,
            self.artifacts,
            policy,
            lambda job_id, attempt: self.artifacts.uri_for(f"jobs/{job_id}/attempt-{attempt}.mp4"),
            metrics=self.metrics,
            clock=lambda: now,
            monotonic=lambda: 0.0,
        )


@pytest.fixture
async def env(tmp_path: Path) -> Env:
    kv = MemoryKV(ManualClock())
    await kv.put(KEYS.leader, LeaderRecord("c1", "c:1").to_json())
    leader = await kv.get(KEYS.leader)
    assert leader is not None
    return Env(kv, JobStore(kv, KEYS), FileStore(tmp_path / "store"), leader.create_revision, Counting())


async def finish_jobs(env: Env, count: int, days_old: float, frames: int = 0) -> list[str]:
    """`count` jobs finished `days_old`.. days ago (one second apart), each with its input and video
    (and, with `frames`, that many stored frames beside each attempt's video)."""
    ids = []
    for i in range(count):
        job_id = f"j{days_old:g}-{i:04d}"
        request = common_pb2.GenerationRequest(prompt="p", seed=1, frames=frames, return_frames=bool(frames))
        input_uri = env.artifacts.put(f"jobs/{job_id}/input.png", b"png")
        video = env.artifacts.put(f"jobs/{job_id}/attempt-2.mp4", b"mp4")
        env.artifacts.put(f"jobs/{job_id}/attempt-1.mp4", b"lost attempt's video")
        for attempt, frame in ((a, f) for a in (1, 2) for f in range(frames)):
            env.artifacts.put(f"jobs/{job_id}/attempt-{attempt}-frame-{frame:04d}.png", b"frame")
        view = jobs.new_job(job_id, 1, common_pb2.TIER_CPU, "tiny", 0.0)
        created, _ = await env.store.submit(
            JobRecord(view, request, input_uri, request_digest(request)), env.epoch
        )
        finished_at = NOW - days_old * DAY + i
        final = dataclasses.replace(
            created.view, state=states.SUCCEEDED, attempt=2, finished_at=finished_at, artifact_uri=video
        )
        assert await env.store.write(created, final, env.epoch) is not None
        ids.append(job_id)
    return ids


async def test_sweep_removes_due_jobs_records_and_artifacts_leaving_tombstones(env: Env) -> None:
    old = await finish_jobs(env, 3, 9)
    young = await finish_jobs(env, 2, 1)
    removed = await env.sweeper(RetentionPolicy(7 * DAY, 0)).sweep(env.epoch)
    assert removed == 3 and env.metrics.removed == 3
    assert env.metrics.oldest_age == pytest.approx(1 * DAY)
    for job_id in old:
        assert await env.store.fetch(job_id) is None and await env.kv.get(KEYS.done_of(job_id)) is None
        assert not (env.artifacts.root / "jobs" / job_id).exists()  # input and every attempt's video
        tomb = await env.store.tombstone(job_id)
        assert tomb is not None and tomb.expired_at == NOW and "older than 7d" in tomb.reason
    for job_id in young:
        assert await env.store.fetch(job_id) is not None
        assert (env.artifacts.root / "jobs" / job_id / "attempt-2.mp4").exists()
    # One lease carries every tombstone, as long as the tombstone window.
    leases = {(await env.kv.get(KEYS.expired_of(j))).lease for j in old}  # type: ignore[union-attr]
    assert len(leases) == 1 and env.kv.lease_keys(leases.pop()) == {KEYS.expired_of(j) for j in old}
    assert await env.sweeper(RetentionPolicy(7 * DAY, 0)).sweep(env.epoch) == 0


async def test_sweep_removes_every_attempts_stored_frames(env: Env) -> None:
    (job_id,) = await finish_jobs(env, 1, 9, frames=3)
    assert len(list((env.artifacts.root / "jobs" / job_id).iterdir())) == 9
    assert await env.sweeper(RetentionPolicy(7 * DAY, 0)).sweep(env.epoch) == 1
    assert not (env.artifacts.root / "jobs" / job_id).exists()


async def test_sweep_commits_bounded_batches(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweeper, "BATCH", 4)
    monkeypatch.setattr(sweeper, "PAGE", 10)
    await finish_jobs(env, 13, 9)
    txns: list[int] = []
    inner = env.kv.txn

    async def counting(compares, success, failure=()):  # type: ignore[no-untyped-def]
        txns.append(len(success))
        return await inner(compares, success, failure)

    monkeypatch.setattr(env.kv, "txn", counting)
    sweep = env.sweeper(RetentionPolicy(0, 2))
    assert await sweep.sweep(env.epoch) == 10  # one page
    assert txns == [12, 12, 6]  # 3 ops per job, at most 4 jobs per txn
    assert await sweep.sweep(env.epoch) == 1 and await count_prefix(env.kv, KEYS.history) == 2


async def test_a_deposed_leader_removes_nothing(env: Env) -> None:
    await finish_jobs(env, 2, 9)
    await env.kv.delete(KEYS.leader)
    await env.kv.put(KEYS.leader, LeaderRecord("c2", "c:2").to_json())  # another coordinator leads
    with pytest.raises(Fenced):
        await env.sweeper(RetentionPolicy(7 * DAY, 0)).sweep(env.epoch)
    assert await count_prefix(env.kv, KEYS.history) == 2 and await count_prefix(env.kv, KEYS.expired) == 0


class Leader:
    member_id = "c1"
    addr = "c:1"
    term: Term | None = None  # set by the test
    leader = ("c1", "c:1")


class Dispatching:
    term: Term | None = None


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: object = ()) -> NoReturn:
        raise Aborted(code, details)


async def test_get_of_a_removed_job_says_when_and_why(env: Env) -> None:
    [job_id] = await finish_jobs(env, 1, 9)
    await env.sweeper(RetentionPolicy(7 * DAY, 0)).sweep(env.epoch)
    leader, dispatching = Leader(), Dispatching()
    leader.term = dispatching.term = Term(env.epoch)
    unused = cast(Any, None)
    servicer = CoordinatorServicer(leader, unused, env.store, cast(Any, dispatching), unused, env.artifacts)
    with pytest.raises(Aborted) as err:
        await servicer.Get(coordinator_pb2.GetRequest(job_id=job_id), cast(Any, Context()))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert f"job {job_id} finished at 1970-04-02 00:00:00 UTC" in str(err.value)
    assert "removed by retention at 1970-04-11 00:00:00 UTC (kept 7d / no job count limit" in str(err.value)
    with pytest.raises(Aborted, match="no job 'never'"):
        await servicer.Get(coordinator_pb2.GetRequest(job_id="never"), cast(Any, Context()))


async def test_the_sweeper_runs_only_while_leading(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    epochs: list[int] = []

    async def sweep(self: RetentionSweeper, epoch: int) -> int:
        epochs.append(epoch)
        return 0

    monkeypatch.setattr(RetentionSweeper, "sweep", sweep)
    sweep_ = env.sweeper(RetentionPolicy(7 * DAY, 0))
    term = Term(env.epoch)
    first = sweep_.lead(term)
    await asyncio.sleep(0.01)
    assert epochs == [env.epoch]
    assert first is not None and not first.done()
    term.end()  # deposed: the sweeps stop at once
    await asyncio.sleep(0)
    assert first.cancelled()
    later = Term(env.epoch + 5)
    second = sweep_.lead(later)
    await asyncio.sleep(0.01)
    assert epochs == [env.epoch, env.epoch + 5]
    later.end()
    await later.stopped()
    assert second is not None and second.cancelled()
    unlimited = env.sweeper(RetentionPolicy(0, 0))
    assert unlimited.lead(Term(env.epoch)) is None  # nothing to enforce: no task at all
