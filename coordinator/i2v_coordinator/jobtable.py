"""The leader's in-memory mirror of jobs/, claims/, results/ (open jobs only), and the JobEvent a
watcher sees for a record.

The mirror is filled by JobStore: a paged read at one revision R, then one watch from R + 1 (nothing
lives only in memory: docs/architecture.md, life of a job). Pages read after R may already show newer
claims and results; replaying the watch from R + 1 folds the same changes in again, which is
idempotent. Every fold returns the `Change` it made, with the job id it concerns, so the dispatcher
and the watch streams react. The last FINISHED_CACHE jobs this process finished stay in memory, so
their final event reaches the watch streams.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field

from google.protobuf import json_format

from i2v_contract.keys import Keys
from i2v_contract.kv import WatchEvent
from i2v_contract.states import ACTIVE_STATES, QUEUED, SUCCEEDED
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.jobs import ClaimView, JobView
from i2v_coordinator.records import JobRecord, StoredResult, decode_claim, decode_job, decode_result

log = logging.getLogger(__name__)

FINISHED_CACHE = 1024  # recently finished records kept in memory for the watch streams' final events


class ChangeKind(enum.Enum):
    JOB = "job"
    CLAIM = "claim"
    CLAIM_GONE = "claim_gone"
    RESULT = "result"
    RELIST = "relist"  # the whole table was reloaded: re-examine every job


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    job_id: str = ""
    attempt: int = 0


class OpenJobs(MutableMapping[str, JobRecord]):
    """The open jobs by id, with each state's jobs kept beside them: the queue depth and the active
    jobs are read without a scan, which a submit burst would otherwise make quadratic."""

    def __init__(self) -> None:
        self._all: dict[str, JobRecord] = {}
        self._by_state: dict[int, dict[str, JobRecord]] = {}

    def __getitem__(self, job_id: str) -> JobRecord:
        return self._all[job_id]

    def __setitem__(self, job_id: str, record: JobRecord) -> None:
        if job_id in self._all:
            del self[job_id]
        self._all[job_id] = record
        self._by_state.setdefault(record.view.state, {})[job_id] = record

    def __delitem__(self, job_id: str) -> None:
        old = self._all.pop(job_id)
        del self._by_state[old.view.state][job_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def in_states(self, *states: int) -> list[JobRecord]:
        return [r for state in states for r in self._by_state.get(state, {}).values()]

    def count(self, state: int) -> int:
        return len(self._by_state.get(state, ()))


@dataclass
class JobTable:
    """The mirror of jobs/, claims/, results/ at `revision` (open jobs only), plus the last
    FINISHED_CACHE jobs this process finished, so their final event reaches the watch streams."""

    keys: Keys
    revision: int = 0
    jobs: OpenJobs = field(default_factory=OpenJobs)
    claims: dict[tuple[str, int], ClaimView] = field(default_factory=dict)
    results: dict[tuple[str, int], StoredResult] = field(default_factory=dict)
    finished: OrderedDict[str, JobRecord] = field(default_factory=OrderedDict)

    def clear(self) -> None:
        self.jobs.clear()
        self.claims.clear()
        self.results.clear()

    def get(self, job_id: str) -> JobRecord | None:
        """The open job, or one this process finished recently."""
        return self.jobs.get(job_id) or self.finished.get(job_id)

    def apply(self, event: WatchEvent) -> Change | None:
        """Fold one event in; None when it changes nothing (e.g. our own write seen again)."""
        kv = event.kv
        self.revision = max(self.revision, kv.mod_revision)
        try:
            return self._apply(event)
        except (ValueError, KeyError, TypeError, json_format.ParseError) as exc:
            log.warning("ignoring undecodable record %s: %s", kv.key, exc)
            return None

    def _apply(self, event: WatchEvent) -> Change | None:
        kv, keys = event.kv, self.keys
        if kv.key.startswith(keys.jobs):
            job_id = kv.key[len(keys.jobs) :]
            old = self.jobs.get(job_id)
            if event.kind == "delete":
                return Change(ChangeKind.JOB, job_id) if self.jobs.pop(job_id, None) else None
            if old is not None and old.mod_revision >= kv.mod_revision:
                return None
            self.jobs[job_id] = decode_job(kv)
            return Change(ChangeKind.JOB, job_id)
        if kv.key.startswith(keys.claims):
            job_id, attempt = keys.job_attempt_of(kv.key, keys.claims)
            if event.kind == "delete":
                if self.claims.pop((job_id, attempt), None) is None:
                    return None
                return Change(ChangeKind.CLAIM_GONE, job_id, attempt)
            self.claims[(job_id, attempt)] = decode_claim(kv, keys)
            return Change(ChangeKind.CLAIM, job_id, attempt)
        if kv.key.startswith(keys.results):
            if event.kind == "delete":
                # Only a finalisation deletes results; a replayed put after it is undone here.
                self.results.pop(keys.job_attempt_of(kv.key, keys.results), None)
                return None
            stored = decode_result(kv, keys)
            self.results.setdefault((stored.view.job_id, stored.view.attempt), stored)
            return Change(ChangeKind.RESULT, stored.view.job_id, stored.view.attempt)
        return None

    def record_write(self, record: JobRecord) -> Change | None:
        """Our own committed write, folded in before its watch event arrives.

        A final record leaves the open table with its claims and results (the txn deleted them).
        """
        old = self.jobs.get(record.job_id)
        if old is not None and old.mod_revision >= record.mod_revision:
            return None
        if not record.view.final:
            self.jobs[record.job_id] = record
            return Change(ChangeKind.JOB, record.job_id)
        self.forget(record.job_id)
        self.finished[record.job_id] = record
        self.finished.move_to_end(record.job_id)
        while len(self.finished) > FINISHED_CACHE:
            self.finished.popitem(last=False)
        return Change(ChangeKind.JOB, record.job_id)

    def forget(self, job_id: str) -> None:
        """Drop the job with its claims and results (a txn moved them out of the open prefixes)."""
        self.jobs.pop(job_id, None)
        for table in (self.claims, self.results):
            for key in [k for k in table if k[0] == job_id]:
                del table[key]

    def legacy_finished(self) -> list[JobRecord]:
        """Final records under jobs/: left there by the schema before history/ (this one moves a job
        out of jobs/ in the txn that finishes it), oldest finished first."""
        return sorted((r for r in self.jobs.values() if r.view.final), key=lambda r: r.view.finished_at)

    def result_for(self, job: JobView) -> StoredResult | None:
        return self.results.get((job.job_id, job.result_attempt or job.attempt))

    def queued(self) -> list[JobRecord]:
        return self.jobs.in_states(QUEUED)

    def queued_count(self) -> int:
        return self.jobs.count(QUEUED)

    def active(self) -> list[JobRecord]:
        return self.jobs.in_states(*sorted(ACTIVE_STATES))


def job_event(record: JobRecord, table: JobTable) -> coordinator_pb2.JobEvent:
    """The JobEvent that tells a watcher the job's current state (final ones carry result or error)."""
    view = record.view
    event = coordinator_pb2.JobEvent(
        job_id=view.job_id,
        state=coordinator_pb2.JobState.ValueType(view.state),
        attempt=view.attempt,
        node_id=view.node_id,
    )
    if view.state == SUCCEEDED:
        result = record.result
        if result is None:
            stored = table.result_for(view)
            result = stored.result if stored else common_pb2.Result(artifact_uri=view.artifact_uri)
        event.result.CopyFrom(result)
        _fill_from_request(event.result, record.request)
    elif view.final:
        event.error = view.error
        event.error_code = view.error_code
    return event


def _fill_from_request(result: common_pb2.Result, request: common_pb2.GenerationRequest) -> None:
    """Fields the node's result record left out, where the normalised request settles them.

    The seed and fps are never changed by a node. Size, frames and steps are only known to be as
    requested when the request did not allow degradation.
    """
    result.seed = result.seed or request.seed
    result.fps = result.fps or request.fps
    if not request.allow_degrade:
        result.width = result.width or request.width
        result.height = result.height or request.height
        result.frames = result.frames or request.frames
        result.steps = result.steps or request.steps
