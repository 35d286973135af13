"""The node's Prometheus metrics: one registry per node, served on --metrics-listen.

Base units, `i2v_` prefix, bounded labels (resolution class, tier, stage, kind, outcome, RPC method;
never a job id or a raw size). Memory is read from the probe at scrape time (MemoryCollector); etcd
calls and RPCs are measured by i2v_common's KV wrapper and server interceptor. docs/operations.md
lists every metric with its labels and bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from i2v_common.kv_metrics import EtcdMetrics
from i2v_common.process_metrics import register_process_metrics
from i2v_common.rpc_metrics import RpcMetrics
from i2v_common.serving import served_services
from i2v_contract.kv import KV
from i2v_contract.resolution import resolution_class
from i2v_contract.states import stage_name
from i2v_contract.tiers import TIERS, tier_name
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.gpu import MemoryReading, ProbeError

log = logging.getLogger(__name__)

NODE_SERVICE = node_pb2.DESCRIPTOR.services_by_name["Node"].full_name
GIB = 1024**3
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600)
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
# 64 MiB .. 128 GiB in powers of two: tiny CPU jobs up to the largest cards.
PEAK_BUCKETS = tuple(float(2**e) for e in range(26, 38))
# Where an OOM can be caught, and what a degradation changes: counted from the start (0), so rates
# and alerts have a series before the first one.
OOM_STAGES = ("encode_prompt", "encode_image", "denoise", "decode")
DEGRADATION_KINDS = ("resolution", "frames")
OUTCOMES = ("succeeded", "cancelled", "deadline_exceeded", "oom", "failed", "invalid", "busy", "unavailable")


def degradation_kind(text: str) -> str:
    """A bounded label for a degradation description ('resolution 512x512->384x384' -> 'resolution')."""
    for i, ch in enumerate(text):
        if not (ch.isalnum() or ch == "_"):
            return text[:i] or "other"
    return text or "other"


def memory_figures(reading: MemoryReading, running_bytes: int) -> tuple[int, int, int]:
    """(used, free, total) of the device as an operator reads them: used counts every process, this
    node's weights, cache and running job included. A simulated card holds only the running job
    (the memory model's estimate of it: `running_bytes`)."""
    total = reading.total_bytes
    if reading.source == "simulated":
        used = min(total, max(0, running_bytes))
    else:
        used = total - min(total, max(0, reading.free_bytes - reading.own_bytes))
    return used, total - used, total


class MemoryCollector(Collector):
    """Memory probed when Prometheus scrapes: the accelerator's (i2v_gpu_memory_*, a simulated card
    labelled gpu="simulated") or, on a CPU node, the host's (i2v_host_memory_*); and on every node
    what its next job can use (i2v_node_memory_available_bytes, the figure its tier comes from)."""

    def __init__(self, read: Callable[[], MemoryReading], running_bytes: Callable[[], int]) -> None:
        self._read = read
        self._running = running_bytes

    def collect(self) -> Iterator[Metric]:
        try:
            reading = self._read()
        except ProbeError as err:
            log.warning("no memory metrics this scrape: %s", err)
            return
        used, free, total = memory_figures(reading, self._running())
        if reading.accelerator:
            prefix, what, labels, values = "i2v_gpu_memory", "Accelerator memory", ["gpu"], [reading.label]
        else:
            prefix, what, labels, values = "i2v_host_memory", "Host memory (a CPU node)", [], []
        for name, value, detail in (
            ("used", used, "in use by every process, this node's weights, cache and job included"),
            ("free", free, "free on the device"),
            ("total", total, "total"),
        ):
            family = GaugeMetricFamily(f"{prefix}_{name}_bytes", f"{what} {detail}, bytes", labels=labels)
            family.add_metric(values, float(value))
            yield family
        kind = (
            "simulated" if reading.source == "simulated" else "accelerator" if reading.accelerator else "host"
        )
        available = GaugeMetricFamily(
            "i2v_node_memory_available_bytes",
            "Memory this node's next job can use (free plus its own allocator's cache): its tier's basis",
            labels=["device", "kind"],
        )
        available.add_metric([reading.label, kind], float(reading.free_bytes))
        yield available


class NodeMetrics:
    def __init__(self, read_memory: Callable[[], MemoryReading] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        register_process_metrics(r, "node")
        self.rpc = RpcMetrics(r, served_services(NODE_SERVICE))
        self._running_bytes = 0
        self._etcd: EtcdMetrics | None = None
        if read_memory is not None:
            r.register(MemoryCollector(read_memory, lambda: self._running_bytes))
        self.running_estimate = Gauge(
            "i2v_node_running_job_estimated_bytes",
            "The memory model's peak estimate for the running job at its first profile (0 when idle)",
            registry=r,
        )
        self.job_peak_bytes = Histogram(
            "i2v_job_peak_bytes",
            "Peak accelerator (host on CPU) memory of a job",
            buckets=PEAK_BUCKETS,
            registry=r,
        )
        self.generation_seconds = Histogram(
            "i2v_generation_duration_seconds",
            "Time from request receipt to result of successful jobs, by resolution class "
            "(512p, 768p, 1024p, other: i2v_contract.resolution) and tier",
            ["resolution", "tier"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.step_seconds = Histogram(
            "i2v_step_duration_seconds",
            "Duration of one denoising step",
            ["tier"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.oom = Counter(
            "i2v_oom_total", "Out-of-memory errors caught, by stage", ["stage", "tier"], registry=r
        )
        self.degradations = Counter(
            "i2v_degradations_total", "Quality-reducing changes applied to jobs", ["kind"], registry=r
        )
        self.jobs = Counter("i2v_jobs_total", "Generate calls by outcome", ["outcome"], registry=r)
        self.tier = Gauge(
            "i2v_node_tier", "1 for the node's current VRAM tier, 0 for the others", ["tier"], registry=r
        )
        self.model_load_seconds = Gauge("i2v_model_load_seconds", "Time the model took to load", registry=r)
        self.busy = Gauge("i2v_node_busy", "1 while a job runs", registry=r)
        for outcome in OUTCOMES:
            self.jobs.labels(outcome)
        for kind in DEGRADATION_KINDS:
            self.degradations.labels(kind)
        self.set_tier(common_pb2.TIER_UNSPECIFIED)

    def etcd_kv(self, kv: KV) -> KV:
        """`kv` measured (i2v_etcd_*); a node without --etcd exports none of them, so no alert fires
        for an etcd it never uses."""
        if self._etcd is None:
            self._etcd = EtcdMetrics(self.registry)
        return self._etcd.wrap(kv)

    def set_tier(self, tier: int) -> None:
        for band in TIERS:
            self.tier.labels(band.name).set(1.0 if band.tier == tier else 0.0)
        if tier != common_pb2.TIER_UNSPECIFIED:
            for stage in OOM_STAGES:
                self.oom.labels(stage, tier_name(tier))

    def job_running(self, estimated_bytes: int) -> None:
        """A job started in the engine with this estimated peak (a simulated card's used memory)."""
        self._running_bytes = estimated_bytes
        self.running_estimate.set(estimated_bytes)

    def job_released(self) -> None:
        self.job_running(0)

    def job_done(self, outcome: str) -> None:
        self.jobs.labels(outcome).inc()

    def job_succeeded(
        self,
        *,
        width: int,
        height: int,
        tier: int,
        seconds: float,
        peak_bytes: int,
        degradations: Iterable[str],
    ) -> None:
        self.job_done("succeeded")
        self.generation_seconds.labels(resolution_class(width, height), tier_name(tier)).observe(seconds)
        self.job_peak_bytes.observe(float(peak_bytes))
        for text in degradations:
            self.degradations.labels(degradation_kind(text)).inc()

    def oom_caught(self, stage: int, tier: int) -> None:
        self.oom.labels(stage_name(stage), tier_name(tier)).inc()

    def step(self, seconds: float, tier: int) -> None:
        self.step_seconds.labels(tier_name(tier)).observe(seconds)

    def text(self) -> str:
        return generate_latest(self.registry).decode()
