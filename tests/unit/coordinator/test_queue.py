"""Queue policy: oldest first, no head-of-line blocking, bounded starvation."""

from __future__ import annotations

import random

import pytest

from i2v_contract.tiers import GIB, tier_for_free_bytes
from i2v_contract.wire import common_pb2
from i2v_coordinator.queue import QueuedJob, QueuePolicy, next_dispatches
from i2v_coordinator.routing import JobNeed, NodeView

LT12 = common_pb2.TIER_LT12
T16 = common_pb2.TIER_16_24
POLICY = QueuePolicy(max_skips=3, max_wait_s=60.0)
NOW = 1000.0


def node(node_id: str, free_gib: float, *, total_gib: float | None = None, busy: bool = False) -> NodeView:
    free = int(free_gib * GIB)
    total = int((total_gib if total_gib is not None else free_gib) * GIB)
    return NodeView(node_id, f"{node_id}:7000", tier_for_free_bytes(free), free, busy, total_bytes=total)


def job(job_id: str, gib: float, tier: int, submitted_at: float, skips: int = 0) -> QueuedJob:
    return QueuedJob(JobNeed(job_id, int(gib * GIB), tier), submitted_at, skips)


SMALL = 7.0
BIG = 20.0


def plan_for(
    jobs: list[QueuedJob], nodes: list[NodeView], occupied: frozenset[str] = frozenset()
) -> dict[str, str]:
    plan = next_dispatches(jobs, nodes, random.Random(0), NOW, occupied=occupied, policy=POLICY)
    return {d.job_id: d.node_id for d in plan.dispatches}


@pytest.mark.parametrize(
    ("name", "jobs", "nodes", "expected"),
    [
        ("empty queue", [], [node("a", 11)], {}),
        ("no nodes", [job("j1", SMALL, LT12, 990)], [], {}),
        (
            "oldest first when only one node is free",
            [job("young", SMALL, LT12, 995), job("old", SMALL, LT12, 990)],
            [node("a", 11)],
            {"old": "a"},
        ),
        (
            "as many pairs as free nodes",
            [job(f"j{i}", SMALL, LT12, 990 + i) for i in range(3)],
            [node("a", 11), node("b", 11), node("c", 11, busy=True)],
            {"j0": "a", "j1": "b"},
        ),
        (
            "a job that fits nothing free does not block a smaller later job",
            [job("big", BIG, T16, 990), job("small", SMALL, LT12, 995)],
            [node("gpu24", 23, busy=True), node("gpu11", 11)],
            {"small": "gpu11"},
        ),
        (
            "smaller jobs keep big GPUs free for big ones",
            [job("small", SMALL, LT12, 990), job("big", BIG, T16, 995)],
            [node("gpu24", 23), node("gpu11", 11)],
            {"small": "gpu11", "big": "gpu24"},
        ),
        (
            "submit-time ties broken by job id",
            [job("b", SMALL, LT12, 990), job("a", SMALL, LT12, 990)],
            [node("n", 11)],
            {"a": "n"},
        ),
    ],
)
def test_pairing(name: str, jobs: list[QueuedJob], nodes: list[NodeView], expected: dict[str, str]) -> None:
    assert plan_for(jobs, nodes) == expected, name


def test_nodes_occupied_in_the_job_table_count_as_busy() -> None:
    # The node has not re-published busy=true yet, but the job table already holds a job on it.
    assert plan_for([job("j", SMALL, LT12, 990)], [node("a", 11)], occupied=frozenset({"a"})) == {}


def test_overtaking_on_a_node_the_job_could_use_later_is_counted() -> None:
    # gpu24 is idle but its free memory has not recovered: the big job cannot use it yet, the small one can.
    recovering = node("gpu24", 10, total_gib=23)
    plan = next_dispatches(
        [job("big", BIG, T16, 990), job("small", SMALL, LT12, 995)],
        [recovering],
        random.Random(0),
        NOW,
        policy=POLICY,
    )
    assert [(d.job_id, d.node_id) for d in plan.dispatches] == [("small", "gpu24")]
    assert plan.passed_over == ("big",)
    assert [w.job_id for w in plan.waiting] == ["big"]
    assert plan.reserved_for == ""


def test_overtaking_on_a_node_the_job_could_never_use_is_not_a_skip() -> None:
    plan = next_dispatches(
        [job("big", BIG, T16, 990), job("small", SMALL, LT12, 995)],
        [node("gpu24", 23, busy=True), node("gpu11", 11)],
        random.Random(0),
        NOW,
        policy=POLICY,
    )
    assert plan.passed_over == ()


@pytest.mark.parametrize(
    ("name", "big_job"),
    [
        ("skipped max_skips times", job("big", BIG, T16, NOW - 5, skips=3)),
        ("waited max_wait_s", job("big", BIG, T16, NOW - 60)),
    ],
)
def test_starving_job_reserves_the_nodes_it_could_fit(name: str, big_job: QueuedJob) -> None:
    recovering = node("gpu24", 10, total_gib=23)
    plan = next_dispatches(
        [big_job, job("small", SMALL, LT12, NOW - 1)],
        [recovering, node("gpu11", 11)],
        random.Random(0),
        NOW,
        policy=POLICY,
    )
    assert plan.reserved_for == "big", name
    assert plan.reserved_nodes == ("gpu24",)
    # The small job still runs, on a node the big one could never use.
    assert [(d.job_id, d.node_id) for d in plan.dispatches] == [("small", "gpu11")]
    assert "starving" in plan.waiting[0].reason and "reserving gpu24" in plan.waiting[0].reason


def test_reservation_blocks_later_jobs_from_the_reserved_node() -> None:
    recovering = node("gpu24", 10, total_gib=23)
    plan = next_dispatches(
        [job("big", BIG, T16, NOW - 5, skips=3), job("small", SMALL, LT12, NOW - 1)],
        [recovering],
        random.Random(0),
        NOW,
        policy=POLICY,
    )
    assert plan.dispatches == ()
    assert [w.job_id for w in plan.waiting] == ["big", "small"]
    # Once gpu24's memory has recovered, the big job (oldest) gets it.
    recovered = next_dispatches(
        [job("big", BIG, T16, NOW - 5, skips=3), job("small", SMALL, LT12, NOW - 1)],
        [node("gpu24", 23)],
        random.Random(0),
        NOW,
        policy=POLICY,
    )
    assert [(d.job_id, d.node_id) for d in recovered.dispatches] == [("big", "gpu24")]


def test_only_the_oldest_starving_job_holds_a_reservation() -> None:
    plan = next_dispatches(
        [
            job("big1", BIG, T16, NOW - 100),
            job("big2", 30, common_pb2.TIER_24_40, NOW - 90),
            job("small", SMALL, LT12, NOW - 1),
        ],
        [node("gpu24", 10, total_gib=23), node("gpu40", 10, total_gib=40)],
        random.Random(0),
        NOW,
        policy=POLICY,
    )
    assert plan.reserved_for == "big1"
    assert plan.reserved_nodes == ("gpu24", "gpu40")
    assert plan.dispatches == ()
