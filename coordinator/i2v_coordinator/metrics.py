"""The coordinator's Prometheus metrics: one registry per process, served on --metrics-listen.

Base units, `i2v_` prefix, bounded labels (tier, state, op; never a job or node id). Nodes by tier
and state are read from the node table at scrape time. etcd call latency is measured by wrapping the
KV adapter (`TimedKV`), so every etcd user in the process is counted without knowing about metrics.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from i2v_contract.kv import KV, Compare, Delete, KeyValue, Page, Put, TxnResult, WatchEvent
from i2v_contract.tiers import TIERS, tier_name
from i2v_coordinator.routing import NodeView
from i2v_coordinator.term import Term

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
END_TO_END_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600)
ETCD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 3)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3.5, 5)
NODE_STATES = ("idle", "busy")


class NodeCollector(Collector):
    """i2v_nodes{tier,state}: live nodes by reported tier and busy flag, every pair present (0 too)."""

    def __init__(self, snapshot: Callable[[], Sequence[NodeView]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        counts = {(band.tier, state): 0 for band in TIERS for state in NODE_STATES}
        for node in self._snapshot():
            key = (node.tier, "busy" if node.busy else "idle")
            counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily("i2v_nodes", "Live nodes by VRAM tier and state", labels=["tier", "state"])
        for (tier, state), count in sorted(counts.items()):
            family.add_metric([tier_name(tier), state], count)
        yield family


class CoordinatorMetrics:
    """The metrics object the election shell, dispatcher and servicer report to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.is_leader = Gauge("i2v_coordinator_is_leader", "1 while this coordinator leads", registry=r)
        self.epoch = Gauge("i2v_coordinator_epoch", "Epoch led now (0 = not leading)", registry=r)
        self.failovers = Counter(
            "i2v_failovers", "Leaderships this coordinator took over from another coordinator", registry=r
        )
        self._queue_depth = Gauge("i2v_queue_depth", "Jobs queued, not yet assigned (leader)", registry=r)
        self._queue_wait = Histogram(
            "i2v_queue_wait_seconds", "Submit to assignment", buckets=WAIT_BUCKETS, registry=r
        )
        self._end_to_end = Histogram(
            "i2v_job_end_to_end_seconds", "Submit to final state", buckets=END_TO_END_BUCKETS, registry=r
        )
        self._dispatch_retries = Counter(
            "i2v_dispatch_retries",
            "Dispatches given back to the queue (node refused, unreachable)",
            registry=r,
        )
        self._requeues = Counter("i2v_requeues", "Attempts lost to a node and requeued", registry=r)
        self._retention_removed = Counter(
            "i2v_retention_removed_jobs", "Finished jobs removed by retention (leader)", registry=r
        )
        self._oldest_finished = Gauge(
            "i2v_oldest_finished_job_age_seconds",
            "Age of the oldest finished job still kept, as of the last retention sweep (leader)",
            registry=r,
        )
        self._node_cooldowns = Counter(
            "i2v_coordinator_node_cooldowns",
            "Node failures that were not the request's fault, by where they showed "
            "(dispatch, claim_timeout, result); each cools the node down or sets it aside",
            ["reason"],
            registry=r,
        )
        self._nodes_set_aside_total = Counter(
            "i2v_coordinator_node_set_asides",
            "Times a node was set aside after repeated failures",
            registry=r,
        )
        self._nodes_cooling = Gauge(
            "i2v_coordinator_nodes_cooling", "Nodes in a dispatch cooldown (leader)", registry=r
        )
        self._nodes_set_aside = Gauge(
            "i2v_coordinator_nodes_set_aside",
            "Nodes given no work after repeated failures (leader)",
            registry=r,
        )
        self.etcd_call = Histogram(
            "i2v_etcd_call_seconds",
            "etcd call latency by operation",
            ["op"],
            buckets=ETCD_BUCKETS,
            registry=r,
        )

        self.loop_lag = Histogram(
            "i2v_event_loop_lag_seconds",
            "How late a 100 ms timer fired on the coordinator's event loop",
            buckets=LAG_BUCKETS,
            registry=r,
        )

    def watch_nodes(self, snapshot: Callable[[], Sequence[NodeView]]) -> None:
        self.registry.register(NodeCollector(snapshot))

    # ---- election shell ----

    def track_leadership(self, epoch: Callable[[], int | None]) -> None:
        """Read the epoch at scrape time: a resumed or lapsed leader never shows a stale 1."""
        self.is_leader.set_function(lambda: 0.0 if epoch() is None else 1.0)
        self.epoch.set_function(lambda: float(epoch() or 0))

    def term_started(self, term: Term) -> None:
        if term.took_over:
            self.failovers.inc()

    # ---- dispatcher (dispatcher.DispatchMetrics) ----

    def dispatch_retry(self) -> None:
        self._dispatch_retries.inc()

    def requeued(self) -> None:
        self._requeues.inc()

    def node_failure(self, kind: str, set_aside: bool) -> None:
        self._node_cooldowns.labels(kind).inc()
        if set_aside:
            self._nodes_set_aside_total.inc()

    def nodes_held_back(self, cooling: int, set_aside: int) -> None:
        self._nodes_cooling.set(cooling)
        self._nodes_set_aside.set(set_aside)

    def queue_depth(self, depth: int) -> None:
        self._queue_depth.set(depth)

    def queue_wait(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)

    def end_to_end(self, seconds: float) -> None:
        self._end_to_end.observe(seconds)

    # ---- retention sweeper (sweeper.RetentionMetrics) ----

    def retention_removed(self, count: int) -> None:
        self._retention_removed.inc(count)

    def oldest_finished_age(self, seconds: float) -> None:
        self._oldest_finished.set(seconds)


class TimedKV:
    """A KV that records each call's latency in i2v_etcd_call_seconds{op} (watch streams excluded)."""

    def __init__(self, inner: KV, histogram: Histogram) -> None:
        self._inner = inner
        self._ops = {op: histogram.labels(op) for op in ("get", "range", "txn", "put", "delete", "lease")}

    def _timer(self, op: str) -> _Timer:
        return _Timer(self._ops[op])

    async def get(self, key: str) -> KeyValue | None:
        with self._timer("get"):
            return await self._inner.get(key)

    async def range_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        with self._timer("range"):
            return await self._inner.range_prefix(prefix)

    async def range_page(self, start: str, end: str, limit: int) -> Page:
        with self._timer("range"):
            return await self._inner.range_page(start, end, limit)

    async def count_range(self, start: str, end: str) -> int:
        with self._timer("range"):
            return await self._inner.count_range(start, end)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        with self._timer("txn"):
            return await self._inner.txn(compares, success, failure)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        with self._timer("put"):
            return await self._inner.put(key, value, lease)

    async def delete(self, key: str) -> int:
        with self._timer("delete"):
            return await self._inner.delete(key)

    async def grant_lease(self, ttl: int) -> int:
        with self._timer("lease"):
            return await self._inner.grant_lease(ttl)

    async def keepalive_once(self, lease_id: int) -> int:
        with self._timer("lease"):
            return await self._inner.keepalive_once(lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        with self._timer("lease"):
            await self._inner.revoke_lease(lease_id)

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        return self._inner.watch_prefix(prefix, start_revision)

    async def close(self) -> None:
        await self._inner.close()


class _Timer:
    """Observes the elapsed time on exit, also when the call raised (a timeout is a latency too)."""

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._child.observe(time.perf_counter() - self._start)
