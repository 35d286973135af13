"""The job state machine: every transition and the reason it gives, table-driven."""

from __future__ import annotations

from dataclasses import replace

import pytest

from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2
from i2v_coordinator.jobs import (
    ASSIGNED,
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    CallFailure,
    ClaimView,
    Code,
    FailureKind,
    JobView,
    NodeReport,
    ResultView,
    assign,
    claim_overdue,
    new_job,
    on_cancel,
    on_claim,
    on_claim_lost,
    on_dispatch_failed,
    on_node_oom,
    on_result,
    requeue,
    take_back_unfollowed,
)
from i2v_coordinator.routing import NodeView

T12 = common_pb2.TIER_12_16
T16 = common_pb2.TIER_16_24
T40 = common_pb2.TIER_GE40
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


def test_happy_path() -> None:
    assert QUEUED_JOB.state == QUEUED and QUEUED_JOB.attempt == 1
    assert (ASSIGNED_JOB.state, ASSIGNED_JOB.node_id, ASSIGNED_JOB.epoch, ASSIGNED_JOB.node_tier) == (
        ASSIGNED,
        "mid",
        7,
        T12,
    )
    assert (RUNNING_JOB.state, RUNNING_JOB.started_at) == (RUNNING, 111.0)
    t = on_result(RUNNING_JOB, ok(), 150.0, nodes=NODES, max_attempts=MAX)
    assert t.changed
    assert (t.job.state, t.job.artifact_uri, t.job.result_attempt, t.job.finished_at) == (
        SUCCEEDED,
        "file:///a/j-1.mp4",
        1,
        150.0,
    )


def test_result_is_never_accepted_twice() -> None:
    first = on_result(RUNNING_JOB, ok(), 150.0, nodes=NODES, max_attempts=MAX)
    second = on_result(
        first.job, replace(ok(), artifact_uri="file:///other.mp4"), 151.0, nodes=NODES, max_attempts=MAX
    )
    assert not second.changed
    assert second.job == first.job
    assert "already SUCCEEDED" in second.reason


@pytest.mark.parametrize(
    ("job", "result"),
    [
        pytest.param(replace(RUNNING_JOB, attempt=2), ok(1), id="older attempt after requeue"),
        pytest.param(RUNNING_JOB, ok(2), id="future attempt"),
        pytest.param(QUEUED_JOB, ok(1), id="queued job (attempt not dispatched yet)"),
        pytest.param(RUNNING_JOB, ResultView("k", 1, Code.OK), id="other job's result"),
        pytest.param(on_cancel(RUNNING_JOB, 120.0).job, ok(1), id="cancelled job"),
    ],
)
def test_result_ignored(job: JobView, result: ResultView) -> None:
    t = on_result(job, result, 150.0, nodes=NODES, max_attempts=MAX)
    assert not t.changed
    assert t.job == job
    assert "ignored" in t.reason


NODE_FAULT = FailureKind.RESULT


@pytest.mark.parametrize(
    ("code", "state", "attempt", "lost", "error_code", "report"),
    [
        pytest.param(Code.OK, SUCCEEDED, 1, 0, Code.OK, NodeReport("mid", None), id="success"),
        pytest.param(Code.INVALID_ARGUMENT, FAILED, 1, 0, 3, None, id="bad input fails: the request's fault"),
        pytest.param(Code.OUT_OF_RANGE, FAILED, 1, 0, 11, None, id="out of range fails"),
        pytest.param(
            Code.DEADLINE_EXCEEDED, FAILED, 1, 0, 4, None, id="deadline fails (dispatched jobs have none)"
        ),
        pytest.param(
            Code.INTERNAL, QUEUED, 2, 1, Code.OK, NODE_FAULT, id="internal error: lost attempt, node blamed"
        ),
        pytest.param(
            Code.UNKNOWN, QUEUED, 2, 1, Code.OK, NODE_FAULT, id="unknown: lost attempt, node blamed"
        ),
        pytest.param(
            Code.FAILED_PRECONDITION, QUEUED, 2, 1, Code.OK, NODE_FAULT, id="node store misconfigured"
        ),
        pytest.param(Code.DATA_LOSS, QUEUED, 2, 1, Code.OK, NODE_FAULT, id="data loss"),
        pytest.param(Code.ABORTED, QUEUED, 2, 1, Code.OK, NODE_FAULT, id="aborted"),
        pytest.param(Code.UNAVAILABLE, QUEUED, 2, 1, Code.OK, NODE_FAULT, id="node drained: requeue"),
        pytest.param(
            Code.CANCELLED, QUEUED, 2, 1, Code.OK, None, id="node cancelled on its own: requeue, no blame"
        ),
        pytest.param(
            Code.RESOURCE_EXHAUSTED,
            QUEUED,
            2,
            0,
            Code.OK,
            None,
            id="OOM with a larger tier: requeue, not lost",
        ),
    ],
)
def test_result_codes(
    code: int,
    state: int,
    attempt: int,
    lost: int,
    error_code: int,
    report: NodeReport | FailureKind | None,
) -> None:
    t = on_result(RUNNING_JOB, ResultView("j", 1, code, "msg"), 150.0, nodes=NODES, max_attempts=MAX)
    assert (t.job.state, t.job.attempt, t.job.lost_attempts, t.job.error_code) == (
        state,
        attempt,
        lost,
        error_code,
    )
    if isinstance(report, FailureKind):
        assert t.node is not None and (t.node.node_id, t.node.failure) == ("mid", report)
        assert t.node.reason == f"{Code(code).name}: msg" and not t.node.suspect_connection
    else:
        assert t.node == report


def test_node_faults_on_every_attempt_fail_the_job_naming_the_node_not_the_request() -> None:
    job = RUNNING_JOB
    for attempt in range(1, MAX + 1):
        job = replace(job, state=RUNNING, node_id="mid", attempt=attempt)
        result = ResultView("j", attempt, Code.FAILED_PRECONDITION, "output_uri outside this node's store")
        job = on_result(job, result, 150.0, nodes=NODES, max_attempts=MAX).job
    assert (job.state, job.lost_attempts, job.error_code) == (FAILED, MAX, Code.ABORTED)
    assert "node mid" in job.error and "outside this node's store" in job.error
    assert f"gave up after {MAX} lost attempts" in job.error


ASSIGNED_3 = replace(ASSIGNED_JOB, attempt=3, lost_attempts=1)
DISPATCH = FailureKind.DISPATCH


@pytest.mark.parametrize(
    ("job", "code", "changed", "state", "attempt", "failure"),
    [
        pytest.param(
            ASSIGNED_3,
            Code.FAILED_PRECONDITION,
            False,
            ASSIGNED,
            3,
            None,
            id="stale dispatch refused: nothing to do",
        ),
        pytest.param(
            ASSIGNED_3,
            Code.UNAVAILABLE,
            True,
            QUEUED,
            4,
            DISPATCH,
            id="node unreachable or silent: taken back",
        ),
        pytest.param(
            ASSIGNED_3, Code.RESOURCE_EXHAUSTED, True, QUEUED, 4, FailureKind.BUSY, id="node busy: taken back"
        ),
        pytest.param(
            ASSIGNED_3, Code.DEADLINE_EXCEEDED, True, QUEUED, 4, DISPATCH, id="deadline: taken back"
        ),
        pytest.param(
            ASSIGNED_3, Code.INTERNAL, True, QUEUED, 4, DISPATCH, id="node crashed in the call: taken back"
        ),
        pytest.param(ASSIGNED_3, Code.UNKNOWN, True, QUEUED, 4, DISPATCH, id="unknown: taken back"),
        pytest.param(
            ASSIGNED_3,
            Code.INVALID_ARGUMENT,
            True,
            FAILED,
            3,
            None,
            id="bad input: fails, the request's fault",
        ),
        pytest.param(
            replace(ASSIGNED_3, state=RUNNING),
            14,
            False,
            RUNNING,
            3,
            None,
            id="already claimed: the claim decides",
        ),
    ],
)
def test_dispatch_failed_before_the_claim(
    job: JobView, code: int, changed: bool, state: int, attempt: int, failure: FailureKind | None
) -> None:
    t = on_dispatch_failed(job, CallFailure("j", 3, "mid", code, "why"), 150.0)
    assert (t.changed, t.job.state, t.job.attempt) == (changed, state, attempt)
    assert t.job.lost_attempts == 1, "a dispatch failure before the claim is not a lost attempt"
    assert (t.node.failure if t.node else None) is failure
    if failure is not None:
        assert t.node is not None and t.node.node_id == "mid"
        assert t.node.suspect_connection == (failure is DISPATCH), "a node that answered busy is reachable"
    if state == FAILED:
        assert t.job.error == "node mid refused the job: why" and t.job.error_code == code


def test_take_back_is_a_fresh_attempt_not_a_lost_one() -> None:
    back = requeue(ASSIGNED_3)
    assert (back.state, back.attempt, back.node_id, back.lost_attempts, back.assigned_at) == (
        QUEUED,
        4,
        "",
        1,
        0.0,
    )


RUNNING_3 = replace(RUNNING_JOB, attempt=3, lost_attempts=1)


@pytest.mark.parametrize(
    ("lost", "min_tier", "lost_attempts", "floor"),
    [
        pytest.param(False, None, 1, common_pb2.TIER_UNSPECIFIED, id="take-back: not counted"),
        pytest.param(True, None, 2, common_pb2.TIER_UNSPECIFIED, id="lost attempt: counted"),
        pytest.param(False, T40, 1, T40, id="after an OOM: floor raised, not counted"),
    ],
)
def test_requeue_is_the_next_attempt_off_its_node(
    lost: bool, min_tier: int | None, lost_attempts: int, floor: int
) -> None:
    back = requeue(RUNNING_3, lost=lost, min_tier=min_tier)
    assert (back.state, back.attempt, back.node_id, back.node_tier) == (
        QUEUED,
        4,
        "",
        common_pb2.TIER_UNSPECIFIED,
    )
    assert (back.assigned_at, back.started_at, back.lost_attempts, back.min_tier) == (
        0.0,
        0.0,
        lost_attempts,
        floor,
    )


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        pytest.param(
            CallFailure("j", 2, "mid", Code.UNAVAILABLE, "x"), "is at attempt 3", id="older attempt"
        ),
        pytest.param(CallFailure("j", 3, "big", Code.UNAVAILABLE, "x"), "on mid", id="another node"),
    ],
)
def test_a_failed_call_of_another_attempt_or_node_changes_nothing(failure: CallFailure, words: str) -> None:
    t = on_dispatch_failed(ASSIGNED_3, failure, 150.0)
    assert not t.changed and t.job == ASSIGNED_3 and t.node is None
    assert words in t.reason and "nothing to do" in t.reason


@pytest.mark.parametrize(
    ("job", "epoch", "fresh", "taken_back", "words"),
    [
        pytest.param(
            ASSIGNED_JOB, 7, False, False, "assigned in this epoch", id="own epoch: its call goes on"
        ),
        pytest.param(ASSIGNED_JOB, 9, False, True, "assigned in epoch 7", id="older epoch: taken back"),
        pytest.param(ASSIGNED_JOB, 9, True, True, "assigned in epoch 7", id="older epoch, fresh loop"),
        pytest.param(ASSIGNED_JOB, 7, True, True, "before this lead loop", id="own epoch, fresh loop"),
        pytest.param(RUNNING_JOB, 9, True, False, "nothing to take back", id="claimed: the claim decides"),
        pytest.param(QUEUED_JOB, 9, True, False, "nothing to take back", id="queued"),
    ],
)
def test_take_back_unfollowed(job: JobView, epoch: int, fresh: bool, taken_back: bool, words: str) -> None:
    t = take_back_unfollowed(job, epoch, fresh=fresh)
    assert t.changed is taken_back and words in t.reason
    if taken_back:
        assert t.job == requeue(job) and t.node is None
    else:
        assert t.job == job


def test_oom_escalates_to_a_strictly_larger_tier() -> None:
    t = on_node_oom(RUNNING_JOB, 1, "decode at 1024x1024", 150.0, NODES)
    assert t.changed
    assert (t.job.state, t.job.attempt, t.job.min_tier, t.job.node_id) == (QUEUED, 2, T16, "")
    assert t.job.lost_attempts == 0  # re-routing is bounded by tiers, not by lost attempts
    # OOM again on the 16-24 node: nothing larger left.
    on_big = on_claim(assign(t.job, "big", T16, 7, 160.0).job, ClaimView("j", 2, "big", 7), 161.0).job
    again = on_node_oom(on_big, 2, "decode at 1024x1024", 170.0, NODES)
    assert (again.job.state, again.job.error_code, again.job.result_attempt) == (
        FAILED,
        Code.RESOURCE_EXHAUSTED,
        2,
    )
    assert "no node of a larger tier" in again.job.error and "decode at 1024x1024" in again.job.error


def test_oom_without_recorded_node_tier_uses_the_node_s_current_tier() -> None:
    t = on_node_oom(replace(RUNNING_JOB, node_tier=common_pb2.TIER_UNSPECIFIED), 1, "x", 150.0, NODES)
    assert (t.job.state, t.job.min_tier) == (QUEUED, T16)


def test_oom_report_for_a_stale_attempt_is_ignored() -> None:
    t = on_node_oom(replace(RUNNING_JOB, attempt=2), 1, "x", 150.0, NODES)
    assert not t.changed


@pytest.mark.parametrize(
    ("lost_before", "state", "attempt"),
    [
        pytest.param(0, QUEUED, 2, id="first loss requeues"),
        pytest.param(1, QUEUED, 2, id="second loss requeues"),
        pytest.param(2, FAILED, 1, id="third loss exhausts"),
    ],
)
def test_claim_lost(lost_before: int, state: int, attempt: int) -> None:
    t = on_claim_lost(replace(RUNNING_JOB, lost_attempts=lost_before), 150.0, MAX, "node mid is gone")
    assert t.changed
    assert (t.job.state, t.job.attempt, t.job.lost_attempts) == (state, attempt, lost_before + 1)
    if state == QUEUED:
        assert (t.job.node_id, t.job.assigned_at, t.job.started_at) == ("", 0.0, 0.0)
    else:
        assert t.job.error_code == Code.ABORTED and "node mid is gone" in t.job.error


def test_claim_lost_ignored_unless_active() -> None:
    for job in (QUEUED_JOB, on_result(RUNNING_JOB, ok(), 150.0, nodes=NODES, max_attempts=MAX).job):
        assert not on_claim_lost(job, 160.0, MAX).changed


@pytest.mark.parametrize(
    ("job", "claim", "changed"),
    [
        pytest.param(ASSIGNED_JOB, ClaimView("j", 1, "mid", 7), True, id="matching claim"),
        pytest.param(ASSIGNED_JOB, ClaimView("j", 1, "mid", 9), True, id="claim by a new epoch still counts"),
        pytest.param(RUNNING_JOB, ClaimView("j", 1, "mid", 7), False, id="duplicate claim"),
        pytest.param(ASSIGNED_JOB, ClaimView("j", 2, "mid", 7), False, id="wrong attempt"),
        pytest.param(ASSIGNED_JOB, ClaimView("j", 1, "big", 7), False, id="wrong node"),
        pytest.param(QUEUED_JOB, ClaimView("j", 1, "", 7), False, id="queued job"),
    ],
)
def test_on_claim(job: JobView, claim: ClaimView, changed: bool) -> None:
    t = on_claim(job, claim, 120.0)
    assert t.changed == changed
    assert t.job.state == (RUNNING if changed else job.state)


def test_assign_only_from_queued() -> None:
    assert not assign(ASSIGNED_JOB, "big", T16, 7, 120.0).changed
    assert not assign(RUNNING_JOB, "big", T16, 7, 120.0).changed


@pytest.mark.parametrize(
    ("job", "stop_node", "changed"),
    [
        pytest.param(QUEUED_JOB, "", True, id="queued"),
        pytest.param(ASSIGNED_JOB, "mid", True, id="assigned"),
        pytest.param(RUNNING_JOB, "mid", True, id="running"),
        pytest.param(on_cancel(QUEUED_JOB, 101.0).job, "", False, id="already final"),
    ],
)
def test_cancel(job: JobView, stop_node: str, changed: bool) -> None:
    t = on_cancel(job, 130.0)
    assert (t.changed, t.stop_node, t.job.state) == (changed, stop_node, CANCELLED)
    if changed:
        assert t.job.error_code == Code.CANCELLED


def test_claim_overdue_edge() -> None:
    assert not claim_overdue(ASSIGNED_JOB, 110.0 + CLAIM_TIMEOUT, CLAIM_TIMEOUT)
    assert claim_overdue(ASSIGNED_JOB, 110.0 + CLAIM_TIMEOUT + 0.001, CLAIM_TIMEOUT)
    assert not claim_overdue(RUNNING_JOB, 1e9, CLAIM_TIMEOUT)
