"""The node's Prometheus metrics: one registry per node, served on --metrics-listen.

Base units, `i2v_` prefix, bounded labels (resolution, frames, tier, stage, kind, outcome; never a
job id). GPU memory is read from the probe at scrape time by a custom collector.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from i2v_contract.states import stage_name
from i2v_contract.tiers import TIERS, tier_name
from i2v_contract.wire import common_pb2
from i2v_node.gpu import MemoryReading, ProbeError

log = logging.getLogger(__name__)

GIB = 1024**3
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600)
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
# 64 MiB .. 128 GiB in powers of two: tiny CPU jobs up to the largest cards.
PEAK_BUCKETS = tuple(float(2**e) for e in range(26, 38))
OUTCOMES = ("succeeded", "cancelled", "deadline_exceeded", "oom", "failed", "invalid", "busy", "unavailable")


def degradation_kind(text: str) -> str:
    """A bounded label for a degradation description ('resolution 512x512->384x384' -> 'resolution')."""
    for i, ch in enumerate(text):
        if not (ch.isalnum() or ch == "_"):
            return text[:i] or "other"
    return text or "other"


class MemoryCollector(Collector):
    """GPU memory used/free/total bytes, probed when Prometheus scrapes (nothing on a CPU node)."""

    def __init__(self, read: Callable[[], MemoryReading]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        try:
            reading = self._read()
        except ProbeError as err:
            log.warning("no GPU memory metrics this scrape: %s", err)
            return
        if not reading.accelerator:
            return
        # On a GPU, free counts what this node's own allocator holds (its next job can use it), so
        # used is what other processes hold.
        for name, value, what in (
            ("used", reading.used_bytes, "used by other processes"),
            ("free", reading.free_bytes, "free for this node's jobs (device free + its own allocator's)"),
            ("total", reading.total_bytes, "total"),
        ):
            family = GaugeMetricFamily(
                f"i2v_gpu_memory_{name}_bytes", f"Accelerator memory {what}, bytes", labels=["gpu"]
            )
            family.add_metric([reading.label], float(value))
            yield family


class NodeMetrics:
    def __init__(self, read_memory: Callable[[], MemoryReading] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if read_memory is not None:
            r.register(MemoryCollector(read_memory))
        self.job_peak_bytes = Histogram(
            "i2v_job_peak_bytes",
            "Peak accelerator (host on CPU) memory of a job",
            buckets=PEAK_BUCKETS,
            registry=r,
        )
        self.generation_seconds = Histogram(
            "i2v_generation_duration_seconds",
            "Time from request receipt to result of successful jobs",
            ["resolution", "frames", "tier"],
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
        self.set_tier(common_pb2.TIER_UNSPECIFIED)

    def set_tier(self, tier: int) -> None:
        for band in TIERS:
            self.tier.labels(band.name).set(1.0 if band.tier == tier else 0.0)

    def job_done(self, outcome: str) -> None:
        self.jobs.labels(outcome).inc()

    def job_succeeded(
        self,
        *,
        width: int,
        height: int,
        frames: int,
        tier: int,
        seconds: float,
        peak_bytes: int,
        degradations: Iterable[str],
    ) -> None:
        self.job_done("succeeded")
        self.generation_seconds.labels(f"{width}x{height}", str(frames), tier_name(tier)).observe(seconds)
        self.job_peak_bytes.observe(float(peak_bytes))
        for text in degradations:
            self.degradations.labels(degradation_kind(text)).inc()

    def oom_caught(self, stage: int, tier: int) -> None:
        self.oom.labels(stage_name(stage), tier_name(tier)).inc()

    def step(self, seconds: float, tier: int) -> None:
        self.step_seconds.labels(tier_name(tier)).observe(seconds)

    def text(self) -> str:
        return generate_latest(self.registry).decode()
