"""The leader's memory of its nodes: dispatch health per node and the recent assignments routing
counts as load. health.py decides every step; this keeps the steps and hands routing its inputs as
NodeView fields (cooldown_s, set_aside, recent_assignments).

Health is about the node, not the leadership, so it is kept across terms.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

from i2v_coordinator import health
from i2v_coordinator.health import HealthPolicy, NodeHealth, Standing, Step
from i2v_coordinator.jobs import NodeReport
from i2v_coordinator.routing import NodeView

log = logging.getLogger(__name__)

_IN_SERVICE = health.standing(health.HEALTHY, 0.0)


class Fleet:
    def __init__(self, policy: HealthPolicy, recent_window_s: float, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._window_s = recent_window_s
        self._clock = clock
        self._health: dict[str, NodeHealth] = {}
        self._recent: deque[tuple[float, str]] = deque()

    def health_of(self, node: NodeView) -> tuple[NodeHealth, Standing]:
        """The node's dispatch health now; healthy when unknown or re-registered since it failed."""
        current = self._health.get(node.node_id, health.HEALTHY)
        if node.registration and current.registration and node.registration != current.registration:
            current = health.HEALTHY  # cleared at the next dispatch round
        return current, health.standing(current, self._clock(), self._policy)

    def report(self, report: NodeReport) -> Step:
        """Apply what an attempt said about its node; the step says what changed and why."""
        before = self._health.get(report.node_id, health.HEALTHY)
        step = health.on_report(before, report, self._clock(), self._policy)
        self._health[report.node_id] = step.health
        if step.changed:
            log.info("%s", step.reason)
        return step

    def assigned(self, node_id: str, now: float) -> None:
        self._recent.append((now, node_id))

    def routable(self, nodes: Iterable[NodeView], now: float) -> list[NodeView]:
        """`nodes` with their health and recent assignments as routing inputs (a re-registration
        clears a node's health). Most nodes pass through uncopied: a copy each per round was costly."""
        while self._recent and self._recent[0][0] < now - self._window_s:
            self._recent.popleft()
        counts: dict[str, int] = {}
        for _, node_id in self._recent:
            counts[node_id] = counts.get(node_id, 0) + 1
        out = []
        for node in nodes:
            standing = self._standing(node, now)
            recent = counts.get(node.node_id, 0)
            if (node.cooldown_s, node.set_aside, node.recent_assignments) != (
                standing.cooldown_s,
                standing.set_aside,
                recent,
            ):
                node = replace(
                    node,
                    cooldown_s=standing.cooldown_s,
                    set_aside=standing.set_aside,
                    recent_assignments=recent,
                )
            out.append(node)
        return out

    def _standing(self, node: NodeView, now: float) -> Standing:
        known = self._health.get(node.node_id)
        if known is None:
            return _IN_SERVICE  # never failed: on_registration would only note the revision
        step = health.on_registration(known, node.node_id, node.registration)
        if step.changed:
            log.info("%s", step.reason)
        self._health[node.node_id] = step.health
        return health.standing(step.health, now, self._policy)
