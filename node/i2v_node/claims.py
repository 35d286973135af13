"""ClusterHooks, the cluster's side of the node's JobHooks seam: the fenced claim and the result.

Before the GPU is touched it wins the fenced claim txn (leader epoch, job revision, attempt) on the
node's lease; while the job runs it watches the claim key and the node's lease, and stops the job
(within one denoising step) when the claim is deleted (the leader finalised or cancelled the job)
or the lease stops being valid; after the run it writes the attempt's result write-once, and only
while the claim it won still stands (compare on the claim's create revision). A node without a
valid lease takes no cluster work; standalone requests (no job_id) pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from i2v_common.artifacts import ArtifactError, ArtifactStore
from i2v_contract.fencing import claim_txn
from i2v_contract.keys import ResultRecord
from i2v_contract.kv import Compacted, Compare, KVUnavailable, LeaseLost, Put
from i2v_contract.reasons import FieldViolation, Reason, details
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.hooks import JobRejected, JobReport, Stop
from i2v_node.membership import Membership, Sleep

log = logging.getLogger(__name__)

NOT_ACCEPTING = "node lost its cluster lease; not taking work"
CLAIM_GONE = "claim gone: result not written (job re-run elsewhere or cancelled)"


def _stale(request: node_pb2.NodeGenerateRequest) -> JobRejected:
    return JobRejected(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"stale dispatch: job {request.job_id} attempt {request.attempt} epoch {request.epoch} "
        "no longer current (leader changed or job reassigned); not started",
        details(Reason.STALE_DISPATCH, job_id=request.job_id, attempt=str(request.attempt)),
    )


def _failure(status: str, message: str) -> ResultRecord:
    return ResultRecord(status, message)


RESULT_BUDGET_MIN_S = 60.0
WATCH_RETRY_S = 1.0


@dataclass
class _Claim:
    """A claim this node holds while its job runs: what guards the result, and how to stop the job."""

    key: str
    guard: Compare  # the result is written only while this holds
    lease: int
    stop: Stop
    why_stopped: str = ""
    watch: asyncio.Task[None] | None = None

    def stop_for(self, why: str) -> None:
        if not self.why_stopped:
            self.why_stopped = why
            self.stop(why)


class ClusterHooks:
    """Fenced claim before the GPU is touched; the job stops when the claim goes; a write-once
    result, guarded by the claim, after every claimed run."""

    def __init__(
        self,
        membership: Membership,
        store: ArtifactStore,
        *,
        call_budget_s: float = 5.0,
        result_budget_s: float | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.m = membership
        self.store = store
        self.call_budget_s = call_budget_s
        # etcd cannot expire leases without a quorum (a new etcd leader renews them), so the claim
        # usually outlives an outage: keep trying long enough that finished work is not redone.
        default_budget = max(2 * membership.lease_ttl, RESULT_BUDGET_MIN_S)
        self.result_budget_s = result_budget_s if result_budget_s is not None else default_budget
        self._sleep = sleep
        self._clock = clock
        self._claimed: dict[tuple[str, int], _Claim] = {}
        self._writes: set[asyncio.Task[bool]] = set()
        membership.on_lease_lost(self._lease_lost)

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        if not request.job_id:
            return
        if request.epoch <= 0 or request.assign_revision <= 0:
            message = (
                f"job {request.job_id}: epoch ({request.epoch}) and assign_revision "
                f"({request.assign_revision}) must be > 0 for a dispatched job; only a coordinator "
                "sets job_id, or leave job_id empty for a standalone run"
            )
            bad = [f for f in ("epoch", "assign_revision") if getattr(request, f) <= 0]
            violations = tuple(FieldViolation(f, "must be > 0 for a dispatched job") for f in bad)
            why = details(Reason.INVALID_DISPATCH, job_id=request.job_id, field=bad[0])
            raise JobRejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                message,
                dataclasses.replace(why, field_violations=violations),
            )
        if not self.m.accepting:
            raise JobRejected(grpc.StatusCode.UNAVAILABLE, f"{NOT_ACCEPTING} (node {self.m.node_id})")
        lease = self.m.lease_id
        revision = await self._claim(request)
        if revision:
            claim_key = self.m.keys.claim(request.job_id, request.attempt)
            claim = _Claim(
                claim_key,
                Compare(claim_key, "create", "==", revision),
                lease,
                stop,
            )
            self._claimed[(request.job_id, request.attempt)] = claim
            claim.watch = asyncio.get_running_loop().create_task(
                self._watch_claim(claim, revision), name=f"claim-watch-{request.job_id}-{request.attempt}"
            )
            log.info(
                "claimed job %s attempt %d for epoch %d on lease %x (claim revision %d)",
                request.job_id,
                request.attempt,
                request.epoch,
                lease,
                revision,
            )
            if not self.m.accepting:  # the lease lapsed while the claim txn was in flight
                claim.stop_for(f"node lease {lease:x} stopped being valid right after the claim")
            return
        log.info(
            "refused job %s attempt %d: claim txn failed (epoch %d / revision %d no longer current)",
            request.job_id,
            request.attempt,
            request.epoch,
            request.assign_revision,
        )
        raise _stale(request)

    async def _claim(self, request: node_pb2.NodeGenerateRequest) -> int:
        """Run the claim txn: the claim's create revision, 0 if refused. An unknown outcome (etcd
        blip) is settled by reading the claim back."""
        txn = claim_txn(
            self.m.keys,
            request.job_id,
            request.attempt,
            epoch=request.epoch,
            assign_revision=request.assign_revision,
            node_id=self.m.node_id,
            lease=self.m.lease_id,
        )
        deadline = self._clock() + self.call_budget_s
        delay = 0.05
        while True:
            try:
                done = await self.m.kv.txn(txn.compares, txn.puts)
                return done.revision if done.succeeded else 0
            except LeaseLost as exc:
                raise JobRejected(
                    grpc.StatusCode.UNAVAILABLE, f"{NOT_ACCEPTING} (node {self.m.node_id}: {exc})"
                ) from None
            except KVUnavailable as exc:
                log.warning(
                    "claim txn for job %s: outcome unknown (%s); reading it back", request.job_id, exc
                )
            with contextlib.suppress(KVUnavailable):
                existing = await self.m.kv.get(txn.key)
                if existing is not None:
                    ours = existing.lease == txn.lease and existing.value == txn.value
                    return existing.create_revision if ours else 0
            if self._clock() + delay > deadline:
                break
            await self._sleep(delay)
            delay = min(delay * 2, 1.0)
        # The claim may have landed unseen: hand the attempt back so the coordinator requeues it
        # (written only if the claim did land: it is guarded by the claim's exact value).
        self._spawn_write(request, self._give_back_record(), Compare(txn.key, "value", "==", txn.value))
        raise JobRejected(
            grpc.StatusCode.UNAVAILABLE,
            f"job {request.job_id}: etcd did not answer the claim within {self.call_budget_s:g}s; "
            "not started, retry on another node",
        )

    def _give_back_record(self) -> ResultRecord:
        return _failure(
            grpc.StatusCode.UNAVAILABLE.name,
            f"node {self.m.node_id} could not confirm its claim (etcd unreachable); not started",
        )

    async def _watch_claim(self, claim: _Claim, revision: int) -> None:
        """Stop the job when its claim key is deleted (finalised, cancelled, or gone with the lease)."""
        start = revision + 1
        while True:
            try:
                async for event in self.m.kv.watch_prefix(claim.key, start):
                    start = event.kv.mod_revision + 1
                    if event.kv.key == claim.key and event.kind == "delete":
                        claim.stop_for(
                            f"claim {claim.key} deleted at revision {event.kv.mod_revision} (the leader "
                            "finalised or cancelled the job, or the node's lease expired)"
                        )
                        return
            except Compacted:
                try:
                    items, read_at = await self.m.kv.range_prefix(claim.key)
                except KVUnavailable:
                    await asyncio.sleep(WATCH_RETRY_S)  # not the budgeted retry clock
                    continue
                if not any(kv.key == claim.key and kv.create_revision == revision for kv in items):
                    claim.stop_for(f"claim {claim.key} is gone (found after a watch compaction)")
                    return
                start = read_at + 1
            except KVUnavailable as exc:
                log.warning("watch of claim %s broke (%s); resuming from revision %d", claim.key, exc, start)
                await asyncio.sleep(WATCH_RETRY_S)  # not the budgeted retry clock

    def _lease_lost(self, lease_id: int, reason: str) -> None:
        for claim in list(self._claimed.values()):
            if claim.lease == lease_id:
                claim.stop_for(f"node lease {lease_id:x} stopped being valid ({reason})")

    async def after_run(self, report: JobReport) -> None:
        request = report.request
        claim = self._claimed.pop((request.job_id, request.attempt), None) if request.job_id else None
        if claim is None:
            return
        if claim.watch is not None:
            claim.watch.cancel()
        if claim.why_stopped:
            log.info(
                "job %s attempt %d: %s; %s", request.job_id, request.attempt, CLAIM_GONE, claim.why_stopped
            )
            return
        record = await self._result_record(report)
        # Shielded: the coordinator's stream dropping must not lose the result write.
        await asyncio.shield(self._spawn_write(request, record, claim.guard))

    async def _result_record(self, report: JobReport) -> ResultRecord:
        result = report.result
        status, message = report.code.name, report.message
        if result is None:
            return _failure(status, message)
        artifact_uri = result.artifact_uri
        if not artifact_uri and result.video:
            # Videos never go into etcd: store one that came back inline.
            name = f"jobs/{report.request.job_id}/output-{report.request.attempt}.mp4"
            try:
                artifact_uri = await asyncio.to_thread(self.store.put, name, result.video)
            except (ArtifactError, OSError) as exc:
                status = grpc.StatusCode.UNAVAILABLE.name
                message = (
                    f"node {self.m.node_id} could not store the video in its artifact store "
                    f"({self.store.root_url}): {exc}; check the store is reachable and writable from there"
                )
        stored = common_pb2.Result()
        stored.CopyFrom(result)
        stored.artifact_uri = artifact_uri
        return ResultRecord(status, message, stored)

    def _spawn_write(
        self, request: node_pb2.NodeGenerateRequest, record: ResultRecord, guard: Compare
    ) -> asyncio.Task[bool]:
        task = asyncio.get_running_loop().create_task(
            self.write_result(request.job_id, request.attempt, record, guard),
            name=f"result-{request.job_id}-{request.attempt}",
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def write_result(self, job_id: str, attempt: int, record: ResultRecord, guard: Compare) -> bool:
        """Write results/{job}/{attempt} once, only while `guard` (the claim) holds; retried with
        backoff through etcd blips.

        Returns True when the record is in etcd (ours, or an earlier write for the same attempt);
        False when the claim is gone (nothing written) or etcd stayed away.
        """
        key = self.m.keys.result(job_id, attempt)
        value = record.to_json()
        deadline = self._clock() + self.result_budget_s
        delay = 0.05
        while True:
            try:
                done = await self.m.kv.txn([guard, Compare(key, "create", "==", 0)], [Put(key, value)])
                if done.succeeded:
                    log.info("job %s attempt %d: result %s recorded", job_id, attempt, record.status)
                    return True
                if await self.m.kv.get(key) is not None:
                    log.info("job %s attempt %d: result already recorded; not written again", job_id, attempt)
                    return True
                log.info("job %s attempt %d: %s", job_id, attempt, CLAIM_GONE)
                return False
            except KVUnavailable as exc:
                if self._clock() + delay > deadline:
                    log.error(
                        "job %s attempt %d: RESULT %s NOT RECORDED: etcd unreachable for %.0fs (%s); "
                        "the claim expires with this node's lease and the coordinator requeues the job",
                        job_id,
                        attempt,
                        record.status,
                        self.result_budget_s,
                        exc,
                    )
                    return False
                log.warning("job %s attempt %d: result write failed (%s); retrying", job_id, attempt, exc)
            await self._sleep(delay)
            delay = min(delay * 2, 2.0)

    async def drain(self) -> None:
        """Wait for result writes still in flight (call before Membership.stop on shutdown)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
