"""Reconcile: what the leader does with every open job, from one snapshot of jobs/, claims/, results/.

A new leader runs it over the whole table once (with `Sweep.fresh`: none of its dispatch calls is
open yet, so every unclaimed assignment is taken back), and a sitting leader over what changed and,
every sweep interval, over every active job (claim timeouts, vanished nodes). Each job gets one
`Action`: the job as it should be written, why, and whether the write must also find the attempt
unclaimed. Pure: the transitions are jobs.py's; time and the live nodes come in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from i2v_contract.states import QUEUED, RUNNING
from i2v_contract.wire import common_pb2
from i2v_coordinator.jobs import (
    ClaimView,
    FailureKind,
    JobView,
    NodeReport,
    ResultView,
    claim_overdue,
    on_claim,
    on_claim_lost,
    on_result,
    take_back_unfollowed,
)
from i2v_coordinator.routing import NodeView


class ActionKind(enum.Enum):
    KEEP_QUEUED = "keep_queued"
    AWAIT_CLAIM = "await_claim"  # assigned to a live node, claim not due yet (re-sending is safe)
    TAKE_BACK = "take_back"  # assigned, unclaimed, and no call of this leader's follows it
    REATTACH = "reattach"  # the node holds the claim for the current attempt: follow it
    FINALIZE = "finalize"  # a result for the current attempt ends the job
    REQUEUE = "requeue"
    FAIL = "fail"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    job: JobView  # the job as it should be written (unchanged for KEEP_QUEUED, AWAIT_CLAIM)
    changed: bool
    reason: str
    # The write must also check that the current attempt's claim key is absent, so a claim made
    # after the snapshot aborts the requeue instead of running the attempt twice.
    expect_no_claim: bool = False
    node: NodeReport | None = None

    @property
    def job_id(self) -> str:
        return self.job.job_id


def live_nodes(registered: Iterable[NodeView], claims: Iterable[ClaimView]) -> list[NodeView]:
    """Registered nodes, plus a busy stand-in for any node holding a claim: a claim lives on its node's
    lease, so a node whose key has not reached the registry yet is alive all the same."""
    nodes = list(registered)
    known = {n.node_id for n in nodes}
    for claim in claims:
        if claim.node_id not in known:
            known.add(claim.node_id)
            nodes.append(NodeView(claim.node_id, "", common_pb2.TIER_UNSPECIFIED, 0, busy=True))
    return nodes


@dataclass(frozen=True)
class Sweep:
    """What one reconcile pass knows besides the jobs: where it stands and its bounds."""

    now: float
    epoch: int  # the epoch this leader dispatches in
    claim_timeout_s: float
    max_attempts: int
    fresh: bool = False  # the lead loop just started: no earlier dispatch call of its is open


def reconcile(
    jobs: Iterable[JobView],
    claims: Iterable[ClaimView],
    results: Iterable[ResultView],
    live_nodes: Sequence[NodeView],
    sweep: Sweep,
) -> list[Action]:
    """What a new leader does with every non-final job, from one snapshot of jobs/, claims/, results/.

    Also usable as a periodic sweep by a sitting leader. Claims and results of other attempts are
    ignored; final jobs get no action.
    """
    claim_of = {(c.job_id, c.attempt): c for c in claims}
    result_of: dict[tuple[str, int], ResultView] = {}
    for r in results:
        result_of.setdefault((r.job_id, r.attempt), r)
    live = {n.node_id for n in live_nodes if n.alive}
    actions = []
    for job in jobs:
        if not job.final:
            key = (job.job_id, job.attempt)
            actions.append(
                _reconcile_one(job, claim_of.get(key), result_of.get(key), live, live_nodes, sweep)
            )
    return actions


def _reconcile_one(
    job: JobView,
    claim: ClaimView | None,
    result: ResultView | None,
    live: set[str],
    live_nodes: Sequence[NodeView],
    sweep: Sweep,
) -> Action:
    report: NodeReport | None = None
    if job.state == QUEUED:
        return Action(ActionKind.KEEP_QUEUED, job, False, f"{job.job_id} attempt {job.attempt} stays queued")
    if result is not None:
        t = on_result(job, result, sweep.now, nodes=live_nodes, max_attempts=sweep.max_attempts)
        kind = ActionKind.REQUEUE if t.job.state == QUEUED else ActionKind.FINALIZE
        return Action(kind, t.job, t.changed, t.reason, node=t.node)
    if claim is not None and claim.node_id != job.node_id:
        claim = None  # only the assigned node is dispatched to; a foreign claim is not ours to follow
    node_alive = job.node_id in live
    if claim is not None and node_alive:
        t = on_claim(job, claim, sweep.now)
        return Action(ActionKind.REATTACH, t.job, t.changed, f"re-attached: {t.reason}")
    if not node_alive:
        cause = f"node {job.node_id} is gone" + (
            " (its claim is stale)" if claim else ", no claim, no result"
        )
    elif job.state == RUNNING:
        cause = "claim gone without a result"
    elif claim_overdue(job, sweep.now, sweep.claim_timeout_s):
        cause = f"not claimed within {sweep.claim_timeout_s:g} s"
        report = NodeReport(job.node_id, FailureKind.CLAIM_TIMEOUT, cause)
    else:
        back = take_back_unfollowed(job, sweep.epoch, fresh=sweep.fresh)
        if back.changed:
            return Action(ActionKind.TAKE_BACK, back.job, True, back.reason, expect_no_claim=True)
        return Action(
            ActionKind.AWAIT_CLAIM,
            job,
            False,
            f"{job.job_id} attempt {job.attempt} assigned to live node {job.node_id} "
            f"{sweep.now - job.assigned_at:.1f} s ago: awaiting its claim",
        )
    t = on_claim_lost(job, sweep.now, sweep.max_attempts, cause)
    kind = ActionKind.REQUEUE if t.job.state == QUEUED else ActionKind.FAIL
    return Action(kind, t.job, t.changed, t.reason, expect_no_claim=claim is None, node=report)
