"""The job state machine, as pure transitions over immutable job views.

Life of a job (docs/architecture.md, life of a job): QUEUED -> ASSIGNED(node, attempt) -> node
claims -> RUNNING -> node writes its result -> SUCCEEDED / FAILED / CANCELLED. Every transition
returns a `Transition` with the new view, whether anything changed and a reason for the log line;
an event that does not apply (stale attempt, duplicate, job already final) returns the job
unchanged with the reason it was ignored.

Attempts are numbered from 1. A result counts only for the job's current attempt and only while the
job is not final, so a result is never accepted twice. Attempts lost to a node (claim gone, node
dead, claim never made, node gave the job back or failed it for a reason that is not the request's:
INTERNAL, UNKNOWN, UNAVAILABLE, FAILED_PRECONDITION, DATA_LOSS, ABORTED) are bounded by
`max_attempts`; re-routing after an OOM is bounded by the tier ladder instead, since each one moves
the job to a strictly larger tier. Only INVALID_ARGUMENT (and codes no node should send) fail the job
at once: the request is at fault. An unclaimed assignment that no dispatch call of the leader
follows (made in another epoch, or before its lead loop started) is taken back: the next attempt,
not counted as lost.

Transitions that say something about the node's health carry a `NodeReport` (a failure that is not
the request's fault, or a success); the dispatcher feeds it to health.py.

Times are wall-clock seconds (Unix time): they are stored in etcd and compared by the next leader.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from i2v_contract.codes import Code
from i2v_contract.states import (
    ACTIVE_STATES,
    ASSIGNED,
    CANCELLED,
    FAILED,
    FINAL_STATES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    state_name,
)
from i2v_contract.tiers import tier_name
from i2v_contract.wire import common_pb2
from i2v_coordinator.routing import JobNeed, NodeView, escalate_after_oom

# Result codes that blame the node (its store, its runtime, its state), never the request: the job
# is requeued as a lost attempt so it can run on another node, and the node's failure is reported.
_NODE_FAULTS = frozenset(
    {Code.INTERNAL, Code.UNKNOWN, Code.UNAVAILABLE, Code.FAILED_PRECONDITION, Code.DATA_LOSS, Code.ABORTED}
)
# The node stopped the job itself (e.g. its lease ended): requeued, but no fault of the node's.
_GIVEN_BACK = frozenset({Code.CANCELLED})
# Node.Generate failing BEFORE the claim: FAILED_PRECONDITION is the node refusing a stale dispatch
# (its claim compare failed: nothing to do); _REQUEST_FAULTS fail the job (the request is at fault);
# any other code gives the job back to the queue as a fresh attempt and counts against the node.
_STALE_DISPATCH = Code.FAILED_PRECONDITION
_REQUEST_FAULTS = frozenset({Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE})


class FailureKind(enum.Enum):
    """Where a node failure showed (a bounded metrics label)."""

    DISPATCH = "dispatch"  # Node.Generate failed or went silent before the claim
    CLAIM_TIMEOUT = "claim_timeout"
    BUSY = "busy"  # the node answered busy before its busy flag reached routing: a pause, not a fault
    RESULT = "result"  # the node's result blamed the node


@dataclass(frozen=True)
class NodeReport:
    """What the end of an attempt says about its node's health."""

    node_id: str
    failure: FailureKind | None  # None: the node succeeded
    reason: str = ""

    @property
    def suspect_connection(self) -> bool:
        """The coordinator's connection to the node may be dead: rebuild it."""
        return self.failure in (FailureKind.DISPATCH, FailureKind.CLAIM_TIMEOUT)


@dataclass(frozen=True)
class JobView:
    job_id: str
    state: int  # coordinator_pb2.JobState value
    attempt: int = 1
    node_id: str = ""
    node_tier: int = common_pb2.TIER_UNSPECIFIED  # the node's tier when assigned (for OOM escalation)
    epoch: int = 0  # the leader epoch that made the last assignment
    required_bytes: int = 0
    required_tier: int = common_pb2.TIER_UNSPECIFIED
    min_tier: int = common_pb2.TIER_UNSPECIFIED  # raised after an OOM
    model: str = ""
    lost_attempts: int = 0
    created_at: float = 0.0
    assigned_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    error: str = ""
    error_code: int = Code.OK
    artifact_uri: str = ""
    result_attempt: int = 0  # the attempt whose result finished the job

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def need(self) -> JobNeed:
        return JobNeed(self.job_id, self.required_bytes, self.required_tier, self.min_tier, self.model)


@dataclass(frozen=True)
class ClaimView:
    job_id: str
    attempt: int
    node_id: str
    epoch: int


@dataclass(frozen=True)
class ResultView:
    job_id: str
    attempt: int
    code: int  # Code value; RESOURCE_EXHAUSTED = out of memory at the node's leanest profile
    message: str = ""
    artifact_uri: str = ""


@dataclass(frozen=True)
class Transition:
    job: JobView
    changed: bool
    reason: str
    stop_node: str = ""  # node to tell to stop the job's current attempt (cancel of an active job)
    node: NodeReport | None = None


def _same(job: JobView, reason: str) -> Transition:
    return Transition(job, False, reason)


def _ended(
    job: JobView,
    state: int,
    now: float,
    *,
    error: str = "",
    error_code: int = Code.OK,
    result_attempt: int = 0,
    artifact_uri: str = "",
) -> JobView:
    return replace(
        job,
        state=state,
        finished_at=now,
        error=error,
        error_code=error_code,
        result_attempt=result_attempt,
        artifact_uri=artifact_uri,
    )


def new_job(job_id: str, required_bytes: int, required_tier: int, model: str, now: float) -> JobView:
    return JobView(
        job_id,
        QUEUED,
        required_bytes=required_bytes,
        required_tier=required_tier,
        model=model,
        created_at=now,
    )


def assign(job: JobView, node_id: str, node_tier: int, epoch: int, now: float) -> Transition:
    if job.state != QUEUED:
        return _same(job, f"{job.job_id} is {state_name(job.state)}, not queued: not assigning")
    new = replace(job, state=ASSIGNED, node_id=node_id, node_tier=node_tier, epoch=epoch, assigned_at=now)
    return Transition(new, True, f"{job.job_id} attempt {job.attempt} assigned to {node_id} in epoch {epoch}")


def on_claim(job: JobView, claim: ClaimView, now: float) -> Transition:
    if claim.job_id != job.job_id or claim.attempt != job.attempt or claim.node_id != job.node_id:
        return _same(
            job,
            f"claim by {claim.node_id} for {claim.job_id} attempt {claim.attempt} does not match "
            f"{job.job_id} attempt {job.attempt} on {job.node_id or 'no node'}: ignored",
        )
    if job.state == RUNNING:
        return _same(job, f"{job.job_id} attempt {job.attempt} already running on {job.node_id}")
    if job.state != ASSIGNED:
        return _same(job, f"{job.job_id} is {state_name(job.state)}: claim ignored")
    return Transition(
        replace(job, state=RUNNING, started_at=now),
        True,
        f"{job.job_id} attempt {job.attempt} claimed by {job.node_id}: running",
    )


def requeue(job: JobView, *, lost: bool = False, min_tier: int | None = None) -> JobView:
    """The job back in the queue as its next attempt, off its node.

    A fresh attempt number keeps any late claim or result of the old dispatch from counting. `lost`
    counts the attempt against `max_attempts` (a take-back does not); `min_tier` raises the job's
    floor (after an OOM).
    """
    return replace(
        job,
        state=QUEUED,
        attempt=job.attempt + 1,
        node_id="",
        node_tier=common_pb2.TIER_UNSPECIFIED,
        assigned_at=0.0,
        started_at=0.0,
        lost_attempts=job.lost_attempts + 1 if lost else job.lost_attempts,
        min_tier=job.min_tier if min_tier is None else min_tier,
    )


def on_claim_lost(job: JobView, now: float, max_attempts: int, cause: str = "claim lost") -> Transition:
    """The current attempt's node is gone (or never claimed): requeue with attempt+1, or fail."""
    if job.state not in ACTIVE_STATES:
        return _same(job, f"{job.job_id} is {state_name(job.state)}: {cause} ignored")
    lost = job.lost_attempts + 1
    where = f"{job.job_id} attempt {job.attempt} on {job.node_id}"
    if lost >= max_attempts:
        message = (
            f"attempt {job.attempt} on node {job.node_id} was lost ({cause}); gave up after {lost} lost "
            f"attempts (limit {max_attempts}); submit the job again under a new request id"
        )
        failed = _ended(replace(job, lost_attempts=lost), FAILED, now, error=message, error_code=Code.ABORTED)
        return Transition(failed, True, f"{where}: {cause}, {lost}/{max_attempts} attempts lost: failed")
    return Transition(
        requeue(job, lost=True),
        True,
        f"{where}: {cause}, requeued as attempt {job.attempt + 1} ({lost}/{max_attempts} attempts lost)",
    )


def on_node_oom(
    job: JobView, result_attempt: int, message: str, now: float, nodes: Sequence[NodeView]
) -> Transition:
    """The node ran out of memory at its leanest profile: move to a strictly larger tier, or fail."""
    if job.state not in ACTIVE_STATES or result_attempt != job.attempt:
        return _same(job, f"{job.job_id}: OOM report for attempt {result_attempt} ignored")
    node_tier = job.node_tier
    if node_tier == common_pb2.TIER_UNSPECIFIED:
        # A record written without the node's tier: fall back to what the node reports now.
        node_tier = next((n.tier for n in nodes if n.node_id == job.node_id), node_tier)
    failed_tier = tier_name(node_tier)
    escalated = escalate_after_oom(job.need, node_tier, nodes)
    where = f"{job.job_id} attempt {job.attempt} out of memory on {job.node_id} (tier {failed_tier})"
    if escalated is None:
        error = (
            f"out of memory on node {job.node_id} (tier {failed_tier}) at its leanest profile: {message}; "
            f"no node of a larger tier is in the cluster; lower width, height or frames, or add a larger GPU"
        )
        failed = _ended(
            job, FAILED, now, error=error, error_code=Code.RESOURCE_EXHAUSTED, result_attempt=result_attempt
        )
        return Transition(failed, True, f"{where}: no larger tier in the cluster, failed")
    return Transition(
        requeue(job, min_tier=escalated.min_tier),
        True,
        f"{where}: requeued as attempt {job.attempt + 1} for tier {tier_name(escalated.min_tier)} or above",
    )


def on_result(
    job: JobView, result: ResultView, now: float, *, nodes: Sequence[NodeView], max_attempts: int
) -> Transition:
    """Apply a node's result; only the current attempt of an active job counts, and only once."""
    if result.job_id != job.job_id:
        return _same(job, f"result for {result.job_id} applied to {job.job_id}: ignored")
    if job.final:
        return _same(
            job, f"{job.job_id} already {state_name(job.state)}: result for attempt {result.attempt} ignored"
        )
    if result.attempt != job.attempt or job.state not in ACTIVE_STATES:
        return _same(
            job,
            f"{job.job_id} is {state_name(job.state)} at attempt {job.attempt}: stale result for attempt "
            f"{result.attempt} ignored",
        )
    if result.code == Code.OK:
        done = _ended(job, SUCCEEDED, now, result_attempt=result.attempt, artifact_uri=result.artifact_uri)
        return Transition(
            done,
            True,
            f"{job.job_id} attempt {job.attempt} succeeded on {job.node_id}",
            node=NodeReport(job.node_id, None),
        )
    if result.code == Code.RESOURCE_EXHAUSTED:
        return on_node_oom(job, result.attempt, result.message, now, nodes)
    if result.code in _GIVEN_BACK:
        cause = f"node gave it back ({_code_name(result.code)}: {result.message})"
        return on_claim_lost(job, now, max_attempts, cause)
    if result.code in _NODE_FAULTS:
        fault = f"{_code_name(result.code)}: {result.message}"
        t = on_claim_lost(job, now, max_attempts, f"node failed it ({fault})")
        return replace(t, node=NodeReport(job.node_id, FailureKind.RESULT, fault))
    failed = _ended(
        job, FAILED, now, error=result.message, error_code=result.code, result_attempt=result.attempt
    )
    return Transition(
        failed, True, f"{job.job_id} attempt {job.attempt} failed on {job.node_id}: {_code_name(result.code)}"
    )


@dataclass(frozen=True)
class CallFailure:
    """Node.Generate for one attempt failed, or went silent, with a status code and message."""

    job_id: str
    attempt: int
    node_id: str
    code: int  # Code value
    message: str


def on_dispatch_failed(job: JobView, failure: CallFailure, now: float) -> Transition:
    """Node.Generate for an attempt failed (or went silent) before the node claimed it.

    Counts only for the job's current attempt on that node. The shell writes the result only while
    the attempt is unclaimed: once claimed, the node's claim and result decide. Unchanged for a
    stale-dispatch refusal (the claim timeout handles the rest).
    """
    code, message = failure.code, failure.message
    where = f"{failure.job_id} attempt {failure.attempt} on {failure.node_id}: {_code_name(code)}: {message}"
    if (failure.attempt, failure.node_id) != (job.attempt, job.node_id):
        return _same(
            job, f"{where}: the job is at attempt {job.attempt} on {job.node_id or 'no node'}; nothing to do"
        )
    if job.state != ASSIGNED:
        return _same(job, f"{where}: job is {state_name(job.state)}; nothing to do")
    if code == _STALE_DISPATCH:
        return _same(job, f"{where}: the node refused a stale dispatch; nothing to do")
    if code in _REQUEST_FAULTS:
        failed = _ended(
            job, FAILED, now, error=f"node {job.node_id} refused the job: {message}", error_code=code
        )
        return Transition(failed, True, f"{where}: failed")
    back = requeue(job)
    kind = FailureKind.BUSY if code == Code.RESOURCE_EXHAUSTED else FailureKind.DISPATCH
    return Transition(
        back,
        True,
        f"{where}: not claimed, requeued as attempt {back.attempt}",
        node=NodeReport(job.node_id, kind, f"{_code_name(code)}: {message}"),
    )


def take_back_unfollowed(job: JobView, epoch: int, *, fresh: bool) -> Transition:
    """An unclaimed assignment no dispatch call of this leader's follows, back to the queue.

    That is one made in another epoch (the node's claim compares that epoch and can never win), or,
    when the lead loop is `fresh`, any: the calls of an earlier loop ended with it. Taken back as the
    next attempt, not counted as lost; the shell writes it only while the attempt is unclaimed.
    """
    if job.state != ASSIGNED:
        return _same(job, f"{job.job_id} is {state_name(job.state)}: nothing to take back")
    if job.epoch == epoch and not fresh:
        return _same(job, f"{job.job_id} attempt {job.attempt} was assigned in this epoch: its call goes on")
    why = f"assigned in epoch {job.epoch}" if job.epoch != epoch else "assigned before this lead loop"
    return Transition(
        requeue(job),
        True,
        f"{job.job_id} attempt {job.attempt} on {job.node_id} {why}, not claimed: taken back as attempt "
        f"{job.attempt + 1} in epoch {epoch}",
    )


def _code_name(code: int) -> str:
    try:
        return Code(code).name
    except ValueError:
        return f"code {code}"


def on_cancel(job: JobView, now: float, message: str = "cancelled by the client") -> Transition:
    """Cancel at once; an active attempt's node is told to stop, and its later result is ignored."""
    if job.final:
        return _same(job, f"{job.job_id} already {state_name(job.state)}: cancel has nothing to do")
    stop = job.node_id if job.state in ACTIVE_STATES else ""
    cancelled = _ended(job, CANCELLED, now, error=message, error_code=Code.CANCELLED)
    where = f" (stopping attempt {job.attempt} on {stop})" if stop else ""
    return Transition(cancelled, True, f"{job.job_id} cancelled from {state_name(job.state)}{where}", stop)


def claim_overdue(job: JobView, now: float, claim_timeout_s: float) -> bool:
    """An assignment the node has not claimed within `claim_timeout_s`."""
    return job.state == ASSIGNED and now - job.assigned_at > claim_timeout_s
