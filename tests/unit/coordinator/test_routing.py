"""Routing by VRAM tier, admission and OOM escalation, table-driven."""

from __future__ import annotations

import random

import pytest

from i2v_contract.tiers import GIB, tier_for_free_bytes
from i2v_contract.wire import common_pb2
from i2v_coordinator.routing import (
    AdmissionKind,
    JobNeed,
    NodeView,
    RoutingDecision,
    admit,
    choose_node,
    count_unavailable,
    escalate_after_oom,
    unavailable,
)

CPU = common_pb2.TIER_CPU
LT12 = common_pb2.TIER_LT12
T12 = common_pb2.TIER_12_16
T16 = common_pb2.TIER_16_24
T24 = common_pb2.TIER_24_40
T40 = common_pb2.TIER_GE40


def node(
    node_id: str,
    free_gib: float,
    *,
    total_gib: float | None = None,
    busy: bool = False,
    alive: bool = True,
    model: str = "i2vgen-xl",
    recent: int = 0,
    tier: int | None = None,
    cooldown_s: float = 0.0,
    set_aside: bool = False,
) -> NodeView:
    free = int(free_gib * GIB)
    return NodeView(
        node_id,
        f"10.0.0.1:{7000 + len(node_id)}",
        tier if tier is not None else tier_for_free_bytes(free),
        free,
        busy,
        alive,
        model,
        int((total_gib if total_gib is not None else free_gib) * GIB),
        recent,
        cooldown_s=cooldown_s,
        set_aside=set_aside,
    )


def need(gib: float, tier: int, *, min_tier: int = common_pb2.TIER_UNSPECIFIED, model: str = "") -> JobNeed:
    return JobNeed("job-1", int(gib * GIB), tier, min_tier, model)


FLEET = (node("small", 11), node("mid", 14), node("big", 23), node("huge", 79))


@pytest.mark.parametrize(
    ("name", "job", "nodes", "expected"),
    [
        ("small job goes to the smallest GPU", need(7, LT12), FLEET, "small"),
        ("768p job skips the 11 GiB card", need(13, T12), FLEET, "mid"),
        ("big job takes the 24 GB card, not the 80", need(20, T16), FLEET, "big"),
        ("smallest busy: next size up", need(7, LT12), (node("small", 11, busy=True), *FLEET[1:]), "mid"),
        ("smallest dead: next size up", need(7, LT12), (node("small", 11, alive=False), *FLEET[1:]), "mid"),
        (
            "smallest cooling down: next size up",
            need(7, LT12),
            (node("small", 11, cooldown_s=3.0), *FLEET[1:]),
            "mid",
        ),
        (
            "smallest set aside: next size up",
            need(7, LT12),
            (node("small", 11, set_aside=True), *FLEET[1:]),
            "mid",
        ),
        ("only fit cooling down: none", need(70, T40), (*FLEET[:3], node("huge", 79, cooldown_s=1.0)), None),
        ("too little free on the right tier", need(15.5, T12), (node("mid", 15), node("big", 23)), "big"),
        ("min tier after OOM skips lower tiers", need(7, LT12, min_tier=T16), FLEET, "big"),
        ("model filter", need(7, LT12, model="svd"), (*FLEET, node("svd-node", 30, model="svd")), "svd-node"),
        (
            "fewest recent assignments wins",
            need(7, LT12),
            (node("a", 11, recent=3), node("b", 10, recent=1)),
            "b",
        ),
        ("then most free bytes", need(7, LT12), (node("a", 10, recent=1), node("b", 11, recent=1)), "b"),
        ("CPU node takes CPU-tier jobs", need(0.5, CPU), (node("cpu", 2, tier=CPU), node("gpu", 11)), "cpu"),
        ("GPU job never goes to a CPU node", need(0.5, LT12), (node("cpu", 64, tier=CPU),), None),
        ("nothing free", need(7, LT12), tuple(node(n.node_id, 40, busy=True) for n in FLEET), None),
    ],
)
def test_choose_node(name: str, job: JobNeed, nodes: tuple[NodeView, ...], expected: str | None) -> None:
    d = choose_node(job, nodes, random.Random(1))
    assert _picked(d) == expected, name
    assert d.reason


def test_never_below_required_tier_when_free_memory_drops() -> None:
    # 'big' reports 23 GiB total but other work left 13 GiB free: it now reports tier 12-16.
    dropped = node("big", 13, total_gib=23)
    d = choose_node(need(13, T16), (dropped, node("small", 11)), random.Random(0))
    assert d.node is None
    assert "2 below tier" in d.reason and "16-24" in d.reason
    # The drop is not permanent: admission still accepts the job, which waits in the queue.
    assert admit(need(13, T16), (dropped,), 0, 10).kind is AdmissionKind.ACCEPT


def _picked(d: RoutingDecision) -> str | None:
    return d.node.node_id if d.node else None


def test_exact_ties_are_broken_by_the_rng_and_reproducibly() -> None:
    twins = tuple(node(f"n{i}", 11) for i in range(4))
    picks = {_picked(choose_node(need(7, LT12), twins, random.Random(seed))) for seed in range(40)}
    assert picks == {"n0", "n1", "n2", "n3"}
    again = [choose_node(need(7, LT12), twins, random.Random(5)).node for _ in range(3)]
    assert again[0] == again[1] == again[2]


def test_no_fit_reason_counts_every_cause() -> None:
    nodes = (
        node("a", 30, busy=True),
        node("b", 30, alive=False),
        node("c", 30, model="svd"),
        node("d", 11),
        node("e", 12.5, tier=T16),
        node("f", 30, cooldown_s=4.0),
        node("g", 30, set_aside=True, cooldown_s=4.0),
    )
    d = choose_node(need(13, T16, model="i2vgen-xl"), nodes, random.Random(0))
    assert d.node is None
    causes = ("1 busy", "1 dead", "1 other model", "1 below tier", "1 too little free memory")
    for part in (*causes, "1 cooling down", "1 set aside"):
        assert part in d.reason


def test_nodes_filtered_out_beforehand_still_count_in_the_reason() -> None:
    nodes = (
        node("a", 30, busy=True),
        node("b", 30, alive=False),
        node("c", 11),
        node("f", 30, cooldown_s=4.0),
    )
    job = need(13, T16)
    whole = choose_node(job, nodes, random.Random(0))
    free = [n for n in nodes if not unavailable(n)]
    assert [n.node_id for n in free] == ["c"]
    assert choose_node(job, free, random.Random(0), count_unavailable(nodes)) == whole


def test_held_back_nodes_still_count_for_admission() -> None:
    # A cooling or set-aside node comes back (cooldown end, trial, re-registration): jobs wait for it.
    held = (node("huge", 79, cooldown_s=5.0), node("big", 23, set_aside=True))
    assert admit(need(70, T40), held, 0, 10).kind is AdmissionKind.ACCEPT
    assert admit(need(20, T16), held[1:], 0, 10).kind is AdmissionKind.ACCEPT
    assert not any(n.available for n in held) and node("x", 1).available


@pytest.mark.parametrize(
    ("name", "job", "nodes", "depth", "kind"),
    [
        ("fits, room in queue", need(13, T12), FLEET, 0, AdmissionKind.ACCEPT),
        (
            "fits a busy node: wait",
            need(20, T16),
            (node("big", 2, total_gib=23, busy=True),),
            0,
            AdmissionKind.ACCEPT,
        ),
        ("queue full", need(7, LT12), FLEET, 10, AdmissionKind.REJECT_QUEUE_FULL),
        ("queue one below full", need(7, LT12), FLEET, 9, AdmissionKind.ACCEPT),
        ("bigger than every node", need(90, T40), FLEET, 0, AdmissionKind.REJECT_NEVER_FITS),
        ("never fits beats queue full", need(90, T40), FLEET, 10, AdmissionKind.REJECT_NEVER_FITS),
        (
            "only a dead node is big enough",
            need(60, T40),
            (*FLEET[:3], node("huge", 79, alive=False)),
            0,
            AdmissionKind.REJECT_NEVER_FITS,
        ),
        ("no model match", need(7, LT12, model="svd"), FLEET, 0, AdmissionKind.REJECT_NEVER_FITS),
        ("no live nodes yet: accept and wait", need(90, T40), (), 0, AdmissionKind.ACCEPT),
    ],
)
def test_admit(name: str, job: JobNeed, nodes: tuple[NodeView, ...], depth: int, kind: AdmissionKind) -> None:
    a = admit(job, nodes, depth, 10)
    assert a.kind is kind, name
    assert a.accepted == (kind is AdmissionKind.ACCEPT)


def test_never_fits_message_names_need_tier_and_largest_node() -> None:
    a = admit(need(90, T40), FLEET, 0, 10)
    assert "90.0 GiB" in a.message
    assert "tier ge40" in a.message
    assert "huge" in a.message and "79.0 GiB free of 79.0 GiB" in a.message
    assert "lower width, height or frames" in a.message


def test_queue_full_message_says_what_to_do() -> None:
    a = admit(need(7, LT12), FLEET, 10, 10)
    assert "10 jobs waiting, limit 10" in a.message and "retry" in a.message


@pytest.mark.parametrize(
    ("name", "failed_tier", "nodes", "expected_min"),
    [
        ("OOM on 12-16 goes to 16-24", T12, FLEET, T16),
        ("skips tiers the cluster lacks", T12, (node("mid", 14), node("huge", 79)), T40),
        (
            "busy larger node still counts",
            T16,
            (node("big", 23), node("huge", 2, total_gib=79, busy=True)),
            T40,
        ),
        ("no larger tier", T40, FLEET, None),
        ("larger tier only dead", T24, (node("big", 23), node("huge", 79, alive=False)), None),
        ("larger tier only for another model", T16, (node("big", 23), node("huge", 79, model="svd")), None),
    ],
)
def test_escalate_after_oom(
    name: str, failed_tier: int, nodes: tuple[NodeView, ...], expected_min: int | None
) -> None:
    escalated = escalate_after_oom(need(10, LT12, model="i2vgen-xl"), failed_tier, nodes)
    assert (escalated.min_tier if escalated else None) == expected_min, name


def test_escalated_job_routes_strictly_above_the_failed_tier() -> None:
    escalated = escalate_after_oom(need(10, LT12), T12, FLEET)
    assert escalated is not None
    d = choose_node(escalated, FLEET, random.Random(0))
    assert d.node is not None and d.node.node_id == "big"


def test_escalation_never_lowers_an_existing_floor() -> None:
    escalated = escalate_after_oom(need(10, LT12, min_tier=T40), T12, FLEET)
    assert escalated is not None and escalated.min_tier == T40
