"""The coordinator's Prometheus metrics: one registry per process, served on --metrics-listen.

Base units, `i2v_` prefix, bounded labels (tier, state, code, reason, op, RPC method; never a job
id; node ids only in the per-node families of fleet_metrics.py, bounded by the fleet). Nodes and the
queue are read at scrape time (fleet_metrics.py). etcd calls are measured by wrapping the KV adapter
(i2v_common.kv_metrics), RPCs by a server interceptor (i2v_common.rpc_metrics). docs/operations.md
lists every metric with its labels and bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from i2v_common.kv_metrics import EtcdMetrics
from i2v_common.process_metrics import register_process_metrics
from i2v_common.rpc_metrics import RpcMetrics
from i2v_common.serving import served_services
from i2v_contract.codes import Code, code_name
from i2v_contract.states import state_name
from i2v_contract.wire import coordinator_pb2
from i2v_coordinator.fleet_metrics import NodeCollector, QueueCollector
from i2v_coordinator.jobs import FailureKind, JobView
from i2v_coordinator.routing import NodeView
from i2v_coordinator.term import Term

COORDINATOR_SERVICE = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
END_TO_END_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3.5, 5)
# Why Submit refused a job (admission.Refused.reason), and the outcomes counted from the start.
REJECTIONS = (
    "invalid",
    "conflict",
    "queue_full",
    "too_large",
    "no_leader",
    "store_unavailable",
    "etcd_unavailable",
    "client_quota",
    "submit_rate",
)
# Why a call was refused for who made it (access.AccessMetrics); never a client name or a token.
ACCESS_REFUSALS = ("unauthenticated", "permission_denied", "stream_limit")
FINISHED = (
    ("succeeded", Code.OK),
    ("cancelled", Code.CANCELLED),
    ("failed", Code.RESOURCE_EXHAUSTED),
    ("failed", Code.INVALID_ARGUMENT),
    ("failed", Code.INTERNAL),
    ("failed", Code.UNAVAILABLE),
)


class CoordinatorMetrics:
    """The metrics object the election shell, dispatcher, intake, sweeper and servicer report to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        register_process_metrics(r, "coordinator")
        self.rpc = RpcMetrics(r, served_services(COORDINATOR_SERVICE))
        self.etcd = EtcdMetrics(r)
        self.etcd_call = self.etcd.call
        self.is_leader = Gauge("i2v_coordinator_is_leader", "1 while this coordinator leads", registry=r)
        self.epoch = Gauge("i2v_coordinator_epoch", "Epoch led now (0 = not leading)", registry=r)
        self.failovers = Counter(
            "i2v_failovers", "Leaderships this coordinator took over from another coordinator", registry=r
        )
        self._terms = Counter(
            "i2v_coordinator_terms", "Terms this coordinator started leading (failovers included)", registry=r
        )
        self._queue_depth = Gauge("i2v_queue_depth", "Jobs queued, not yet assigned (leader)", registry=r)
        self._queue_limit = Gauge(
            "i2v_coordinator_queue_limit", "--max-queue: queued jobs above which Submit refuses", registry=r
        )
        self._queue_wait = Histogram(
            "i2v_queue_wait_seconds", "Submit to assignment", buckets=WAIT_BUCKETS, registry=r
        )
        self._end_to_end = Histogram(
            "i2v_job_end_to_end_seconds", "Submit to final state", buckets=END_TO_END_BUCKETS, registry=r
        )
        self._finished = Counter(
            "i2v_coordinator_jobs_finished",
            "Jobs that reached a final state (leader), by state and gRPC code (OK for succeeded)",
            ["state", "code"],
            registry=r,
        )
        self._rejected = Counter(
            "i2v_coordinator_submit_rejections",
            "Submits refused, by reason: " + ", ".join(REJECTIONS),
            ["reason"],
            registry=r,
        )
        self._access_refused = Counter(
            "i2v_coordinator_access_refusals",
            "Calls refused for their caller, by reason: " + ", ".join(ACCESS_REFUSALS),
            ["reason"],
            registry=r,
        )
        self._dispatch_retries = Counter(
            "i2v_dispatch_retries",
            "Dispatches given back to the queue (node refused, unreachable)",
            registry=r,
        )
        self._requeues = Counter("i2v_requeues", "Attempts lost to a node and requeued", registry=r)
        self._init_retention(r)
        self._init_node_health(r)
        self.loop_lag = Histogram(
            "i2v_event_loop_lag_seconds",
            "How late a 100 ms timer fired on the coordinator's event loop",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        for state, code in FINISHED:
            self._finished.labels(state, code.name)
        for reason in REJECTIONS:
            self._rejected.labels(reason)
        for reason in ACCESS_REFUSALS:
            self._access_refused.labels(reason)
        for kind in FailureKind:
            self._node_cooldowns.labels(kind.value)

    def _init_retention(self, r: CollectorRegistry) -> None:
        self._retention_removed = Counter(
            "i2v_retention_removed_jobs", "Finished jobs removed by retention (leader)", registry=r
        )
        self._oldest_finished = Gauge(
            "i2v_oldest_finished_job_age_seconds",
            "Age of the oldest finished job still kept, as of the last retention sweep (leader)",
            registry=r,
        )
        self._last_sweep = Gauge(
            "i2v_retention_last_sweep_timestamp_seconds",
            "Unix time of the last retention sweep that finished (leader; 0 = none yet)",
            registry=r,
        )
        self._max_age = Gauge(
            "i2v_retention_max_age_seconds", "--retention-max-age (0 = no age limit)", registry=r
        )
        self._max_jobs = Gauge("i2v_retention_max_jobs", "--retention-max-jobs (0 = no limit)", registry=r)

    def _init_node_health(self, r: CollectorRegistry) -> None:
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

    # ---- scrape-time views (main.py wires them) ----

    def watch_nodes(self, snapshot: Callable[[], Sequence[NodeView]]) -> None:
        self.registry.register(NodeCollector(snapshot))

    def watch_queue(
        self, queued: Callable[[], Sequence[JobView]], snapshot: Callable[[], Sequence[NodeView]]
    ) -> None:
        """`queued`: the queued jobs while this coordinator leads, nothing otherwise."""
        self.registry.register(QueueCollector(queued, snapshot))

    def queue_limit(self, max_queue: int) -> None:
        self._queue_limit.set(max_queue)

    def retention_policy(self, max_age_s: float, max_jobs: int) -> None:
        self._max_age.set(max_age_s)
        self._max_jobs.set(max_jobs)

    # ---- election shell ----

    def track_leadership(self, epoch: Callable[[], int | None]) -> None:
        """Read the epoch at scrape time: a resumed or lapsed leader never shows a stale 1."""
        self.is_leader.set_function(lambda: 0.0 if epoch() is None else 1.0)
        self.epoch.set_function(lambda: float(epoch() or 0))

    def term_started(self, term: Term) -> None:
        self._terms.inc()
        if term.took_over:
            self.failovers.inc()

    # ---- intake (admission.SubmitMetrics) ----

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason).inc()

    def access_refused(self, reason: str) -> None:
        self._access_refused.labels(reason).inc()

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

    def finished(self, state: int, code: int) -> None:
        self._finished.labels(state_name(state).lower(), code_name(code)).inc()

    # ---- retention sweeper (sweeper.RetentionMetrics) ----

    def retention_removed(self, count: int) -> None:
        self._retention_removed.inc(count)

    def oldest_finished_age(self, seconds: float) -> None:
        self._oldest_finished.set(seconds)
        self._last_sweep.set_to_current_time()
