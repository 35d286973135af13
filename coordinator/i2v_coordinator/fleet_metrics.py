"""The coordinator's scrape-time views of the node table and the queue, as Prometheus collectors.

Read when Prometheus scrapes, so a standby never shows a stale figure: the queue views are empty
unless this coordinator leads (the `queued` callable returns nothing then).

Labels: tier and required tier are the tier names (7 values with "unspecified"); the per-node
families carry the node id, bounded by the fleet's size (docs/operations.md argues it): a node that
leaves drops out of the next scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from i2v_contract.tiers import TIERS, tier_name
from i2v_coordinator.jobs import JobView
from i2v_coordinator.routing import NodeView, could_ever_fit, floor_tier

NODE_STATES = ("idle", "busy")
TIER_NAMES = tuple(band.name for band in TIERS)


class NodeCollector(Collector):
    """i2v_nodes{tier,state}: live nodes by reported tier and busy flag, every pair present (0 too);
    i2v_coordinator_node_{free,total}_bytes{node,tier}: what each live node published."""

    def __init__(self, snapshot: Callable[[], Sequence[NodeView]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        nodes = self._snapshot()
        counts = {(band.tier, state): 0 for band in TIERS for state in NODE_STATES}
        for node in nodes:
            key = (node.tier, "busy" if node.busy else "idle")
            counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily("i2v_nodes", "Live nodes by VRAM tier and state", labels=["tier", "state"])
        for (tier, state), count in sorted(counts.items()):
            family.add_metric([tier_name(tier), state], count)
        yield family
        free = GaugeMetricFamily(
            "i2v_coordinator_node_free_bytes",
            "Memory each live node can give a job now, as it published it (what routing decides on)",
            labels=["node", "tier"],
        )
        total = GaugeMetricFamily(
            "i2v_coordinator_node_total_bytes",
            "Total memory of each live node's device, as it published it",
            labels=["node", "tier"],
        )
        for node in nodes:
            free.add_metric([node.node_id, tier_name(node.tier)], node.free_bytes)
            total.add_metric([node.node_id, tier_name(node.tier)], node.total_bytes)
        yield free
        yield total


class QueueCollector(Collector):
    """Queued jobs by the tier they need, those no live node could ever run, and the oldest's age."""

    def __init__(
        self,
        queued: Callable[[], Sequence[JobView]],
        snapshot: Callable[[], Sequence[NodeView]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queued = queued
        self._snapshot = snapshot
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        views = self._queued()
        nodes = self._snapshot()
        waiting = dict.fromkeys(TIER_NAMES, 0)
        unservable = dict.fromkeys(TIER_NAMES, 0)
        fits: dict[tuple[int, int, str], bool] = {}  # one check per distinct need, not per job
        for view in views:
            need = view.need
            tier = tier_name(floor_tier(need))
            waiting[tier] = waiting.get(tier, 0) + 1
            key = (floor_tier(need), need.required_bytes, need.model)
            if key not in fits:
                fits[key] = any(could_ever_fit(n, need) for n in nodes)
            if not fits[key]:
                unservable[tier] = unservable.get(tier, 0) + 1
        yield _by_tier(
            "i2v_coordinator_queued_jobs", "Queued jobs by the tier they need (leader; 0 elsewhere)", waiting
        )
        yield _by_tier(
            "i2v_coordinator_queued_unservable_jobs",
            "Queued jobs that no live node could run even when idle: their tier (or model) has no node",
            unservable,
        )
        oldest = min((v.created_at for v in views), default=None)
        age = GaugeMetricFamily(
            "i2v_coordinator_oldest_queued_seconds",
            "How long the oldest queued job has waited (leader; 0 with nothing queued)",
        )
        age.add_metric([], 0.0 if oldest is None else max(0.0, self._clock() - oldest))
        yield age


def _by_tier(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["required_tier"])
    for tier, count in counts.items():
        family.add_metric([tier], count)
    return family
