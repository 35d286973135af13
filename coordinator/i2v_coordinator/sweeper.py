"""The leader's retention sweeper: removes finished jobs that `retention.due` says are past the policy.

It runs only while this coordinator leads: started in each term (`lead`, a start-of-term hook) and
cancelled with it, it writes under the term's epoch every `interval_s`, and at once again while a full
page was due. Each round reads the
oldest `page` history entries, then removes the due ones in fenced txns of `batch` jobs (3 ops per
job: history record, done/ pointer, tombstone; etcd's default --max-txn-ops is 128), yielding to the
loop between txns, then deletes each removed job's input image and videos from the artifact store.
The records go first: a crash in between leaves files without a record (harmless, never read),
never a record pointing at deleted files. Tombstones share one lease for about an hour of sweeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from i2v_common.artifacts import ArtifactError, ArtifactStore
from i2v_contract.keys import ExpiredRecord
from i2v_contract.kv import KVUnavailable, LeaseLost
from i2v_contract.outputs import frame_uri
from i2v_coordinator import retention
from i2v_coordinator.jobstore import Fenced, JobStore
from i2v_coordinator.records import JobRecord
from i2v_coordinator.retention import Finished, RetentionPolicy
from i2v_coordinator.term import Term

log = logging.getLogger(__name__)

PAGE = 200
BATCH = 40
LEASE_REUSE_S = 3600.0


class RetentionMetrics(Protocol):
    def retention_removed(self, count: int) -> None: ...

    def oldest_finished_age(self, seconds: float) -> None: ...


class RetentionSweeper:
    def __init__(
        self,
        store: JobStore,
        artifacts: ArtifactStore,
        policy: RetentionPolicy,
        outputs: Callable[[str, int], str],
        *,
        metrics: RetentionMetrics | None = None,
        interval_s: float = 60.0,
        tombstone_s: float = retention.TOMBSTONE_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._policy = policy
        self._outputs = outputs  # (job id, attempt) -> that attempt's video URI
        self._metrics = metrics
        self._interval_s = interval_s
        self._tombstone_s = tombstone_s
        self._clock = clock
        self._monotonic = monotonic
        self._lease: tuple[int, float] | None = None  # (lease id, monotonic time it was granted)

    def lead(self, term: Term) -> asyncio.Task[None] | None:
        """Start-of-term hook: sweep while `term` lasts (its end cancels the sweeps); no task when the
        policy limits nothing."""
        if not self._policy.limited:
            return None
        return term.spawn(self.run(term.epoch), f"retention-{term.epoch}")

    async def run(self, epoch: int) -> None:
        log.info("retention sweeps in epoch %d: %s", epoch, self._policy.describe())
        while True:
            try:
                removed = await self.sweep(epoch)
            except Fenced as exc:
                log.warning("retention sweeps stop: %s", exc)
                return
            except (KVUnavailable, LeaseLost, ValueError) as exc:
                log.warning("retention sweep failed (%s); next try in %g s", exc, self._interval_s)
                self._lease = None
                removed = 0
            await asyncio.sleep(0 if removed >= PAGE else self._interval_s)

    async def sweep(self, epoch: int) -> int:
        """One round: remove what is due among the oldest PAGE finished jobs; how many were removed."""
        oldest, total = await self._store.oldest_finished(PAGE)
        now = self._clock()
        entries = [Finished(key, record.job_id, record.view.finished_at) for key, record in oldest]
        expiring = retention.due(entries, total, now, self._policy)
        records = dict(oldest)
        for start in range(0, len(expiring), BATCH):
            chunk = expiring[start : start + BATCH]
            lease = await self._tombstone_lease()
            removals = [
                (e.entry.key, e.entry.job_id, ExpiredRecord(e.entry.finished_at, now, e.reason))
                for e in chunk
            ]
            await self._store.remove_finished(epoch, removals, lease)
            for e in chunk:
                log.info(
                    "retention removed job %s finished at %.0f: %s",
                    e.entry.job_id,
                    e.entry.finished_at,
                    e.reason,
                )
            await asyncio.gather(*(self._delete_artifacts(records[e.entry.key]) for e in chunk))
            if self._metrics is not None:
                self._metrics.retention_removed(len(chunk))
            await asyncio.sleep(0)
        if self._metrics is not None and len(expiring) < len(entries):
            self._metrics.oldest_finished_age(max(0.0, now - entries[len(expiring)].finished_at))
        elif self._metrics is not None and not entries:
            self._metrics.oldest_finished_age(0.0)
        return len(expiring)

    async def _tombstone_lease(self) -> int:
        if self._lease is None or self._monotonic() - self._lease[1] > LEASE_REUSE_S:
            self._lease = (await self._store.kv.grant_lease(int(self._tombstone_s)), self._monotonic())
        return self._lease[0]

    async def _delete_artifacts(self, record: JobRecord) -> None:
        view = record.view
        uris = {record.input_uri, view.artifact_uri}
        videos = {self._outputs(view.job_id, attempt) for attempt in range(1, view.attempt + 1)}
        uris |= videos
        if record.request.return_frames:  # each attempt's frames beside its video, at most as asked
            uris |= {frame_uri(v, i) for v in videos for i in range(record.request.frames)}
        if record.result is not None:
            uris |= {record.result.artifact_uri, *record.result.frame_uris}
        for uri in sorted(u for u in uris if u):
            try:
                await asyncio.to_thread(self._artifacts.delete, uri)
            except (ArtifactError, OSError) as exc:
                log.warning(
                    "retention of job %s: %s not deleted (%s); remove it by hand", view.job_id, uri, exc
                )
