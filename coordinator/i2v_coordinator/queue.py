"""Queue policy: which queued jobs go to which free nodes in one dispatch round.

Oldest first (submit time, then job id). A job that fits no free node now does not block later jobs:
they may take nodes it cannot use at the moment (no head-of-line blocking).

The trade-off is starvation. With one job per node and every round scanning oldest first, a job is
never overtaken on a node it can use now; it can only be overtaken on a node it could use later,
e.g. one whose free memory is still recovering or is taken by another tenant, which a smaller job
then keeps busy. That is bounded: once a job has been overtaken `max_skips` times on nodes it could
ever fit, or has waited `max_wait_s`, it is starving, and the oldest starving job that is still
blocked reserves every node it could ever fit: later jobs may not take those nodes until it has been
dispatched. Only one job holds a reservation at a time, so the throughput cost is one job's worth of
nodes. The skip count lives in the caller (in memory; a new leader starts from zero, and the age
bound still holds because the submit time is durable).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from i2v_coordinator.routing import (
    JobNeed,
    NodeView,
    choose_node,
    could_ever_fit,
    count_unavailable,
    unavailable,
)


@dataclass(frozen=True)
class QueuePolicy:
    max_skips: int = 8
    max_wait_s: float = 300.0


DEFAULT_POLICY = QueuePolicy()


@dataclass(frozen=True)
class QueuedJob:
    need: JobNeed
    submitted_at: float  # wall-clock seconds
    skips: int = 0  # times a later job took a node this one could ever fit


@dataclass(frozen=True)
class Dispatch:
    job_id: str
    node_id: str
    reason: str


@dataclass(frozen=True)
class Waiting:
    job_id: str
    reason: str


@dataclass(frozen=True)
class DispatchPlan:
    dispatches: tuple[Dispatch, ...]
    waiting: tuple[Waiting, ...]  # queued jobs not dispatched this round, with why
    passed_over: tuple[str, ...]  # jobs overtaken this round on a node they could ever fit: skips += 1
    reserved_for: str = ""  # the starving job holding the reservation, if any
    reserved_nodes: tuple[str, ...] = ()


def starving(job: QueuedJob, now: float, policy: QueuePolicy) -> bool:
    return job.skips >= policy.max_skips or now - job.submitted_at >= policy.max_wait_s


def next_dispatches(
    queued: Sequence[QueuedJob],
    nodes: Sequence[NodeView],
    rng: random.Random,
    now: float,
    *,
    occupied: frozenset[str] = frozenset(),
    policy: QueuePolicy = DEFAULT_POLICY,
) -> DispatchPlan:
    """Pair as many queued jobs with free nodes as possible.

    `occupied`: nodes the job table shows with an ASSIGNED or RUNNING job; they count as busy even
    before their own busy flag says so.
    """
    available = [replace(n, busy=True) if n.node_id in occupied else n for n in nodes]
    # Nodes that can take no job this round are counted once, not scanned again for every job.
    free = [n for n in available if not unavailable(n)]
    held = count_unavailable(available)
    dispatches: list[Dispatch] = []
    waiting: list[Waiting] = []
    blocked: list[QueuedJob] = []
    passed_over: dict[str, None] = {}  # insertion-ordered set
    reserved_for = ""
    reserved: set[str] = set()
    taken: set[str] = set()  # dispatched this round: out of the plan altogether
    for job in sorted(queued, key=lambda j: (j.submitted_at, j.need.job_id)):
        pool = [n for n in free if n.node_id not in reserved] if reserved else free
        decision = choose_node(job.need, pool, rng, held)
        node = decision.node
        if node is None:
            hold = ""
            if not reserved_for and starving(job, now, policy):
                reserved_for = job.need.job_id
                rest = [n for n in available if n.node_id not in taken]
                reserved = {n.node_id for n in rest if could_ever_fit(n, job.need)}
                held = count_unavailable(n for n in rest if n.node_id not in reserved)
                hold = f"; starving (waited {now - job.submitted_at:.0f} s, skipped {job.skips} times): " + (
                    f"reserving {', '.join(sorted(reserved))}" if reserved else "no node to reserve"
                )
            waiting.append(Waiting(job.need.job_id, decision.reason + hold))
            blocked.append(job)
            continue
        free = [n for n in free if n.node_id != node.node_id]
        taken.add(node.node_id)
        for earlier in blocked:
            if could_ever_fit(node, earlier.need):
                passed_over[earlier.need.job_id] = None
        dispatches.append(Dispatch(job.need.job_id, node.node_id, decision.reason))
    return DispatchPlan(
        tuple(dispatches), tuple(waiting), tuple(passed_over), reserved_for, tuple(sorted(reserved))
    )
