"""Routing by VRAM tier: which node runs a job, whether a job is admitted, where an OOM'd job goes next.

A node fits a job when it is alive, in service (not cooling down or set aside after dispatch failures:
health.py, passed in as NodeView fields), idle, serves the job's model, reports a tier at or above the
job's floor tier and has at least the job's required bytes free. Among fitting nodes the rule is:
1. smallest tier first, so big GPUs stay free for the jobs only they can run;
2. then least loaded: fewest recent assignments (the shell counts dispatches per node over a recent
   window). Nodes run one job at a time, so among idle nodes "load" is recent use: this spreads work,
   and it steers away from a node whose busy flag has not caught up with a dispatch yet;
3. then most free bytes (headroom against OOM from other tenants of the GPU);
4. then the seeded random generator, so exact ties do not always land on the same node.

Required bytes and tiers come in as inputs (from the memory model), so this module has no opinion on
how big a job is.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from i2v_contract.tiers import GIB, tier_for_free_bytes, tier_name, tier_rank
from i2v_contract.wire import common_pb2


@dataclass(frozen=True)
class NodeView:
    node_id: str
    addr: str
    tier: int  # common_pb2.Tier the node reports (from its free memory when idle)
    free_bytes: int  # memory the node can give a job now
    busy: bool
    alive: bool = True
    model: str = ""
    total_bytes: int = 0  # the device's total memory: what the node could offer with nothing else on it
    recent_assignments: int = 0
    registration: int = 0  # the node key's create revision: a new one means the node re-registered
    cooldown_s: float = 0.0  # dispatch cooldown left after a failure (health.py)
    set_aside: bool = False  # given no work after repeated failures (health.py)

    @property
    def available(self) -> bool:
        """Alive, in service and idle: could take a job now if it fits."""
        return self.alive and not self.set_aside and self.cooldown_s <= 0 and not self.busy


@dataclass(frozen=True)
class JobNeed:
    job_id: str
    required_bytes: int
    required_tier: int
    # Raised after an OOM at the leanest profile: the job must go to this tier or above.
    min_tier: int = common_pb2.TIER_UNSPECIFIED
    model: str = ""  # "" = any model


@dataclass(frozen=True)
class RoutingDecision:
    node: NodeView | None
    reason: str


class AdmissionKind(enum.Enum):
    ACCEPT = "accept"
    REJECT_NEVER_FITS = "reject_never_fits"
    REJECT_QUEUE_FULL = "reject_queue_full"


@dataclass(frozen=True)
class Admission:
    kind: AdmissionKind
    message: str  # for the client on rejection (RESOURCE_EXHAUSTED), for the log otherwise

    @property
    def accepted(self) -> bool:
        return self.kind is AdmissionKind.ACCEPT


def _rank(tier: int) -> int:
    # An unspecified tier sets no floor.
    return -1 if tier == common_pb2.TIER_UNSPECIFIED else tier_rank(tier)


def floor_tier(need: JobNeed) -> int:
    """The lowest tier a node may have to run `need`: the larger of required and minimum tier."""
    return max(need.required_tier, need.min_tier, key=_rank)


def serves_model(node: NodeView, need: JobNeed) -> bool:
    return not need.model or node.model == need.model


def potential_tier(node: NodeView) -> int:
    """The tier the node would report with all its memory free (CPU nodes stay CPU)."""
    if node.tier == common_pb2.TIER_CPU or node.total_bytes <= 0:
        return node.tier
    return max(node.tier, tier_for_free_bytes(node.total_bytes), key=_rank)


def could_ever_fit(node: NodeView, need: JobNeed) -> bool:
    """Whether `node` could run `need` once it is idle and its memory free (for admission)."""
    return (
        node.alive
        and serves_model(node, need)
        and _rank(potential_tier(node)) >= _rank(floor_tier(need))
        and max(node.free_bytes, node.total_bytes) >= need.required_bytes
    )


def unavailable(node: NodeView) -> str:
    """Why `node` can take no job now, whatever the job, as a short category; "" when it is available."""
    if not node.alive:
        return "dead"
    if node.set_aside:
        return "set aside"
    if node.cooldown_s > 0:
        return "cooling down"
    if node.busy:
        return "busy"
    return ""


def count_unavailable(nodes: Iterable[NodeView]) -> dict[str, int]:
    """How many of `nodes` are unavailable, by category (choose_node's `held` input)."""
    counts: dict[str, int] = {}
    for node in nodes:
        why = unavailable(node)
        if why:
            counts[why] = counts.get(why, 0) + 1
    return counts


def _misfit(node: NodeView, need: JobNeed, floor_rank: int) -> str:
    """Why `node` cannot take `need` now, as a short category; "" when it can."""
    why = unavailable(node)
    if why:
        return why
    if not serves_model(node, need):
        return "other model"
    if _rank(node.tier) < floor_rank:
        return "below tier"
    if node.free_bytes < need.required_bytes:
        return "too little free memory"
    return ""


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def describe_need(need: JobNeed) -> str:
    return f"{_gib(need.required_bytes)} free on tier {tier_name(floor_tier(need))} or above"


def choose_node(
    need: JobNeed, nodes: Sequence[NodeView], rng: random.Random, held: Mapping[str, int] | None = None
) -> RoutingDecision:
    """The node for `need` among `nodes`.

    `held`: count_unavailable of nodes the caller left out of `nodes` because they can take no job
    now; they only count in the reason, as if they had been passed (a plan over many jobs filters
    them once instead of once per job).
    """
    floor_rank = _rank(floor_tier(need))
    fitting: list[NodeView] = []
    misfits: dict[str, int] = dict(held or {})
    for node in nodes:
        why = _misfit(node, need, floor_rank)
        if why:
            misfits[why] = misfits.get(why, 0) + 1
        else:
            fitting.append(node)
    if not fitting:
        counts = ", ".join(f"{n} {why}" for why, n in sorted(misfits.items())) or "no nodes known"
        return RoutingDecision(None, f"no free node has {describe_need(need)} ({counts})")
    rng.shuffle(fitting)  # min keeps the first of equals: the shuffle only orders exact ties
    best = min(fitting, key=lambda n: (_rank(n.tier), n.recent_assignments, -n.free_bytes))
    return RoutingDecision(
        best,
        f"{best.node_id} (tier {tier_name(best.tier)}, {_gib(best.free_bytes)} free, "
        f"{best.recent_assignments} recent assignments) is the smallest, least loaded of "
        f"{len(fitting)} fitting nodes for {describe_need(need)}",
    )


def _largest(nodes: Iterable[NodeView]) -> NodeView | None:
    alive = [n for n in nodes if n.alive]
    if not alive:
        return None
    return max(alive, key=lambda n: (_rank(potential_tier(n)), max(n.free_bytes, n.total_bytes)))


def admit(need: JobNeed, all_known_nodes: Sequence[NodeView], queue_depth: int, max_queue: int) -> Admission:
    """Whether to accept a submitted job.

    With no live node known the job is accepted (nodes may still be starting); the bounded queue
    caps what that can cost.
    """
    if any(n.alive for n in all_known_nodes) and not any(could_ever_fit(n, need) for n in all_known_nodes):
        largest = _largest(all_known_nodes)
        assert largest is not None
        model = f" serving model {need.model!r}" if need.model else ""
        return Admission(
            AdmissionKind.REJECT_NEVER_FITS,
            f"job needs {describe_need(need)}{model}; no node in the cluster can ever provide it: "
            f"the largest is {largest.node_id} (tier {tier_name(potential_tier(largest))}, "
            f"{_gib(largest.free_bytes)} free of {_gib(largest.total_bytes)}, model {largest.model!r}); "
            "lower width, height or frames, or add a larger GPU node",
        )
    if queue_depth >= max_queue:
        return Admission(
            AdmissionKind.REJECT_QUEUE_FULL,
            f"queue full: {queue_depth} jobs waiting, limit {max_queue}; retry later",
        )
    return Admission(
        AdmissionKind.ACCEPT, f"accepted: needs {describe_need(need)}, queue {queue_depth}/{max_queue}"
    )


def escalate_after_oom(need: JobNeed, failed_node_tier: int, nodes: Sequence[NodeView]) -> JobNeed | None:
    """`need` raised to the smallest tier in the cluster strictly above `failed_node_tier`.

    A job that ran out of memory at the leanest profile on a node of tier T cannot run on tier T;
    None when the cluster has no larger tier for the job's model (fail it: RESOURCE_EXHAUSTED).
    """
    failed_rank = _rank(failed_node_tier)
    larger = [
        potential_tier(n)
        for n in nodes
        if n.alive and serves_model(n, need) and _rank(potential_tier(n)) > failed_rank
    ]
    if not larger:
        return None
    return replace(need, min_tier=max(min(larger, key=_rank), need.min_tier, key=_rank))
