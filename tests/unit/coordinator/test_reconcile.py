"""Reconcile: the action for every open job from one snapshot, table-driven."""

from __future__ import annotations

from dataclasses import replace

import pytest

from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2
from i2v_coordinator.jobs import (
    ASSIGNED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ClaimView,
    Code,
    FailureKind,
    JobView,
    NodeReport,
    ResultView,
    assign,
    new_job,
    on_cancel,
    on_claim,
    on_result,
)
from i2v_coordinator.reconcile import ActionKind, Sweep, live_nodes, reconcile
from i2v_coordinator.routing import NodeView

T12 = common_pb2.TIER_12_16
T16 = common_pb2.TIER_16_24
MAX = 3
CLAIM_TIMEOUT = 10.0

MID = NodeView("mid", "10.0.0.2:7000", T12, 14 * GIB, busy=True, total_bytes=14 * GIB)
BIG = NodeView("big", "10.0.0.3:7000", T16, 23 * GIB, busy=False, total_bytes=23 * GIB)
NODES = (MID, BIG)

QUEUED_JOB = new_job("j", 10 * GIB, common_pb2.TIER_LT12, "", now=100.0)
ASSIGNED_JOB = assign(QUEUED_JOB, "mid", T12, epoch=7, now=110.0).job
RUNNING_JOB = on_claim(ASSIGNED_JOB, ClaimView("j", 1, "mid", 7), now=111.0).job


def ok(attempt: int = 1) -> ResultView:
    return ResultView("j", attempt, Code.OK, artifact_uri=f"file:///a/j-{attempt}.mp4")


def test_live_nodes_add_a_busy_stand_in_for_each_unregistered_claim_holder() -> None:
    claims = [ClaimView("j", 1, "mid", 7), ClaimView("k", 1, "ghost", 7), ClaimView("l", 2, "ghost", 7)]
    nodes = live_nodes([MID, BIG], claims)
    assert [n.node_id for n in nodes] == ["mid", "big", "ghost"]
    ghost = nodes[-1]
    assert ghost.alive and ghost.busy and (ghost.addr, ghost.free_bytes) == ("", 0)
    assert ghost.tier == common_pb2.TIER_UNSPECIFIED


CLAIM = ClaimView("j", 1, "mid", 7)
NOW = 115.0
SWEEP = Sweep(NOW, epoch=7, claim_timeout_s=CLAIM_TIMEOUT, max_attempts=MAX)
SWEEP_10 = Sweep(NOW, epoch=7, claim_timeout_s=10, max_attempts=MAX)


@pytest.mark.parametrize(
    ("job", "claims", "results", "live", "kind", "state", "attempt", "expect_no_claim"),
    [
        pytest.param(
            QUEUED_JOB, (), (), NODES, ActionKind.KEEP_QUEUED, QUEUED, 1, False, id="queued stays queued"
        ),
        pytest.param(
            ASSIGNED_JOB,
            (CLAIM,),
            (),
            NODES,
            ActionKind.REATTACH,
            RUNNING,
            1,
            False,
            id="assigned, claim + live node: re-attach",
        ),
        pytest.param(
            RUNNING_JOB,
            (CLAIM,),
            (),
            NODES,
            ActionKind.REATTACH,
            RUNNING,
            1,
            False,
            id="running, claim + live node: re-attach",
        ),
        pytest.param(
            RUNNING_JOB,
            (CLAIM,),
            (ok(),),
            NODES,
            ActionKind.FINALIZE,
            SUCCEEDED,
            1,
            False,
            id="running, result: finalize",
        ),
        pytest.param(
            RUNNING_JOB,
            (),
            (ok(),),
            (BIG,),
            ActionKind.FINALIZE,
            SUCCEEDED,
            1,
            False,
            id="result without claim (node gone): finalize",
        ),
        pytest.param(
            ASSIGNED_JOB,
            (),
            (ok(),),
            NODES,
            ActionKind.FINALIZE,
            SUCCEEDED,
            1,
            False,
            id="assigned, result before claim seen: finalize",
        ),
        pytest.param(
            RUNNING_JOB,
            (),
            (ResultView("j", 1, Code.INVALID_ARGUMENT, "bad image"),),
            NODES,
            ActionKind.FINALIZE,
            FAILED,
            1,
            False,
            id="failed result (bad input): finalize",
        ),
        pytest.param(
            RUNNING_JOB,
            (),
            (ResultView("j", 1, Code.INTERNAL, "boom"),),
            NODES,
            ActionKind.REQUEUE,
            QUEUED,
            2,
            False,
            id="failed result (node fault): requeue",
        ),
        pytest.param(
            RUNNING_JOB,
            (),
            (ResultView("j", 1, Code.RESOURCE_EXHAUSTED, "oom"),),
            NODES,
            ActionKind.REQUEUE,
            QUEUED,
            2,
            False,
            id="OOM result: re-route up",
        ),
        pytest.param(
            RUNNING_JOB,
            (),
            (),
            NODES,
            ActionKind.REQUEUE,
            QUEUED,
            2,
            True,
            id="running, claim gone, node alive: requeue",
        ),
        pytest.param(
            RUNNING_JOB, (), (), (BIG,), ActionKind.REQUEUE, QUEUED, 2, True, id="running, node dead: requeue"
        ),
        pytest.param(
            RUNNING_JOB,
            (CLAIM,),
            (),
            (BIG,),
            ActionKind.REQUEUE,
            QUEUED,
            2,
            False,
            id="running, stale claim of a dead node: requeue",
        ),
        pytest.param(
            replace(RUNNING_JOB, attempt=2),
            (CLAIM,),
            (),
            NODES,
            ActionKind.REQUEUE,
            QUEUED,
            3,
            True,
            id="running, claim of an old attempt only: requeue",
        ),
        pytest.param(
            replace(RUNNING_JOB, attempt=2),
            (),
            (ok(1),),
            NODES,
            ActionKind.REQUEUE,
            QUEUED,
            3,
            True,
            id="running, stale result of an old attempt: requeue",
        ),
        pytest.param(
            RUNNING_JOB,
            (ClaimView("j", 1, "big", 7),),
            (),
            NODES,
            ActionKind.REQUEUE,
            QUEUED,
            2,
            True,
            id="claim by another node is not followed",
        ),
        pytest.param(
            ASSIGNED_JOB,
            (),
            (),
            NODES,
            ActionKind.AWAIT_CLAIM,
            ASSIGNED,
            1,
            False,
            id="assigned, not claimed yet, within timeout: wait",
        ),
        pytest.param(
            replace(ASSIGNED_JOB, assigned_at=NOW - CLAIM_TIMEOUT - 1),
            (),
            (),
            NODES,
            ActionKind.REQUEUE,
            QUEUED,
            2,
            True,
            id="assigned, never claimed past timeout: requeue",
        ),
        pytest.param(
            ASSIGNED_JOB,
            (),
            (),
            (BIG,),
            ActionKind.REQUEUE,
            QUEUED,
            2,
            True,
            id="assigned, node dead: requeue",
        ),
        pytest.param(
            replace(RUNNING_JOB, lost_attempts=MAX - 1),
            (),
            (),
            NODES,
            ActionKind.FAIL,
            FAILED,
            1,
            True,
            id="orphan with attempts exhausted: fail",
        ),
    ],
)
def test_reconcile_table(
    job: JobView,
    claims: tuple[ClaimView, ...],
    results: tuple[ResultView, ...],
    live: tuple[NodeView, ...],
    kind: ActionKind,
    state: int,
    attempt: int,
    expect_no_claim: bool,
) -> None:
    (action,) = reconcile([job], claims, results, live, SWEEP)
    assert action.kind is kind, action.reason
    assert (action.job.state, action.job.attempt) == (state, attempt)
    assert action.expect_no_claim == expect_no_claim
    assert action.changed == (action.job != job)
    assert action.job_id == "j" and action.reason


@pytest.mark.parametrize(
    ("sweep", "kind", "attempt"),
    [
        pytest.param(SWEEP, ActionKind.AWAIT_CLAIM, 1, id="same epoch: await the claim"),
        pytest.param(replace(SWEEP, epoch=9), ActionKind.TAKE_BACK, 2, id="older epoch: take back"),
        pytest.param(replace(SWEEP, fresh=True), ActionKind.TAKE_BACK, 2, id="fresh lead loop: take back"),
    ],
)
def test_reconcile_takes_back_an_unclaimed_assignment_no_call_follows(
    sweep: Sweep, kind: ActionKind, attempt: int
) -> None:
    (action,) = reconcile([ASSIGNED_JOB], [], [], NODES, sweep)
    assert (action.kind, action.job.attempt, action.job.lost_attempts) == (kind, attempt, 0)
    assert action.expect_no_claim is (kind is ActionKind.TAKE_BACK)
    assert action.changed is (kind is ActionKind.TAKE_BACK) and action.node is None


def test_reconcile_reports_a_claim_timeout_against_the_node() -> None:
    late = NOW - CLAIM_TIMEOUT - 1
    (action,) = reconcile([replace(ASSIGNED_JOB, assigned_at=late)], [], [], NODES, SWEEP_10)
    assert action.kind is ActionKind.REQUEUE
    assert action.node == NodeReport("mid", FailureKind.CLAIM_TIMEOUT, "not claimed within 10 s")
    assert action.node.suspect_connection
    (waiting,) = reconcile([ASSIGNED_JOB], [], [], NODES, SWEEP_10)
    assert waiting.kind is ActionKind.AWAIT_CLAIM and waiting.node is None


def test_reconcile_passes_on_a_result_s_node_report() -> None:
    failed = ResultView("j", 1, Code.INTERNAL, "boom")
    (action,) = reconcile([RUNNING_JOB], [CLAIM], [failed], NODES, SWEEP_10)
    assert action.kind is ActionKind.REQUEUE and action.node is not None
    assert action.node.failure is FailureKind.RESULT
    (gone,) = reconcile([RUNNING_JOB], [CLAIM], [], (BIG,), SWEEP_10)
    assert gone.kind is ActionKind.REQUEUE and gone.node is None  # a dead node is not cooled, it is gone


def test_reconcile_skips_final_jobs_and_ignores_their_duplicate_results() -> None:
    done = on_result(RUNNING_JOB, ok(), 150.0, nodes=NODES, max_attempts=MAX).job
    cancelled = replace(on_cancel(QUEUED_JOB, 101.0).job, job_id="c")
    assert reconcile([done, cancelled], [CLAIM], [ok(), ok()], NODES, SWEEP_10) == []


def test_reconcile_uses_the_first_of_duplicate_results() -> None:
    dup = (ok(), ResultView("j", 1, 13, "second copy"))
    (action,) = reconcile([RUNNING_JOB], [], dup, NODES, SWEEP_10)
    assert action.job.state == SUCCEEDED
