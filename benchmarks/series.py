"""How many series one node and one coordinator export: after 100 jobs of 20 different sizes, and at
the worst case (every label value the code can produce), so the bound is a number, not a hope.

    .venv/bin/python benchmarks/series.py

Drives the real metrics objects (NodeMetrics, CoordinatorMetrics: the registries the servers serve
on /metrics) the way the servers do: every job observed as the node's result path and the leader's
dispatcher report it, RPCs as the interceptor records them, etcd calls through the KV wrapper. A
series is one sample line of the exposition (Prometheus adds up and 4 scrape_* series per target).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from i2v_contract.codes import Code
from i2v_contract.kv import KV
from i2v_contract.resolution import NAMES as CLASSES
from i2v_contract.states import CANCELLED, FAILED, QUEUED, SUCCEEDED
from i2v_contract.tiers import GIB, TIERS
from i2v_contract.wire import common_pb2
from i2v_coordinator.jobs import FailureKind, JobView
from i2v_coordinator.metrics import REJECTIONS, CoordinatorMetrics
from i2v_coordinator.routing import NodeView
from i2v_node.gpu import MemoryReading
from i2v_node.metrics import DEGRADATION_KINDS, DURATION_BUCKETS, OOM_STAGES, OUTCOMES, NodeMetrics
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

JOBS = 100
# 20 sizes across the limits (64..1280, multiples of 8) and the frame range.
SIZES = [(64 + 64 * i, 64 + 56 * ((i * 7) % 20), 2 + (i * 3) % 63) for i in range(20)]
NODES = 4
STAGES = [getattr(common_pb2, f"STAGE_{s.upper()}") for s in OOM_STAGES]


def series(registry: CollectorRegistry) -> int:
    text = generate_latest(registry).decode()
    return sum(len(family.samples) for family in text_string_to_metric_families(text))


def drive_rpcs(metrics: NodeMetrics | CoordinatorMetrics, calls: Iterable[tuple[str, str, str]]) -> None:
    for service, method, code in calls:
        metrics.rpc.finished(metrics.rpc.labels(f"/{service}/{method}"), code, 0.01)


async def drive_etcd(kv: KV) -> None:
    """One call of every operation the KV wrapper labels."""
    await kv.put("/k", b"v")
    await kv.get("/k")
    await kv.range_prefix("/")
    await kv.txn([], [])
    lease = await kv.grant_lease(10)
    await kv.keepalive_once(lease)
    await kv.delete("/k")


def node_after_jobs(rng: random.Random) -> NodeMetrics:
    reading = MemoryReading("cuda:0", "card", True, 24 * GIB, 20 * GIB, "nvml", own_bytes=6 * GIB)
    metrics = NodeMetrics(lambda: reading)
    metrics.set_tier(common_pb2.TIER_16_24)
    asyncio.run(drive_etcd(metrics.etcd_kv(MemoryKV(ManualClock()))))
    for i in range(JOBS):
        width, height, _ = SIZES[i % len(SIZES)]
        for _ in range(8):
            metrics.step(rng.uniform(0.05, 2.0), common_pb2.TIER_16_24)
        if i % 10 == 3:
            metrics.oom_caught(rng.choice(STAGES), common_pb2.TIER_16_24)
        degradations = [f"resolution {width}x{height} -> {width // 2}x{height // 2}"] if i % 10 == 3 else []
        metrics.job_succeeded(
            width=width,
            height=height,
            tier=common_pb2.TIER_16_24,
            seconds=rng.uniform(5, 600),
            peak_bytes=rng.randrange(4 * GIB, 20 * GIB),
            degradations=degradations,
        )
    node = "i2v.v1.Node"
    drive_rpcs(
        metrics, [(node, "Generate", "OK"), (node, "Generate", "RESOURCE_EXHAUSTED"), (node, "Status", "OK")]
    )
    drive_rpcs(metrics, [("grpc.health.v1.Health", "Check", "OK"), (node, "Cancel", "OK")])
    return metrics


def node_worst_case() -> NodeMetrics:
    reading = MemoryReading("cuda:0", "card", True, 24 * GIB, 20 * GIB, "nvml")
    metrics = NodeMetrics(lambda: reading)
    asyncio.run(drive_etcd(metrics.etcd_kv(MemoryKV(ManualClock()))))
    for band in TIERS:  # a node whose free memory wandered through every tier
        metrics.set_tier(band.tier)
        metrics.step(0.1, band.tier)
        for stage in STAGES:
            metrics.oom_caught(stage, band.tier)
        for width in (512, 768, 1024, 1280):
            metrics.job_succeeded(
                width=width,
                height=width,
                tier=band.tier,
                seconds=1,
                peak_bytes=GIB,
                degradations=["frames 8 -> 4"],
            )
    for outcome in OUTCOMES:
        metrics.job_done(outcome)
    for kind in DEGRADATION_KINDS:
        metrics.degradations.labels(kind).inc()
    every_code = [c.name for c in Code]
    calls = [(s, m, c) for (s, m) in sorted(metrics.rpc.known) for c in every_code]
    drive_rpcs(metrics, [*calls, ("other", "other", "UNIMPLEMENTED")])
    return metrics


def fleet(count: int) -> tuple[NodeView, ...]:
    tiers = [common_pb2.TIER_12_16, common_pb2.TIER_16_24, common_pb2.TIER_24_40, common_pb2.TIER_GE40]
    return tuple(
        NodeView(f"node-{i}", f"10.0.0.{i}:50051", tiers[i % 4], 16 * GIB, i % 2 == 0, total_bytes=24 * GIB)
        for i in range(count)
    )


def coordinator_after_jobs(rng: random.Random) -> CoordinatorMetrics:
    metrics = CoordinatorMetrics()
    nodes = fleet(NODES)
    queued = [
        JobView(f"q{i}", QUEUED, required_bytes=20 * GIB, required_tier=common_pb2.TIER_16_24)
        for i in range(5)
    ]
    metrics.watch_nodes(lambda: nodes)
    metrics.watch_queue(lambda: queued, lambda: nodes)
    metrics.queue_limit(1000)
    metrics.retention_policy(7 * 86400, 100_000)
    asyncio.run(drive_etcd(metrics.etcd.wrap(MemoryKV(ManualClock()))))
    for i in range(JOBS):
        metrics.queue_wait(rng.uniform(0, 60))
        metrics.end_to_end(rng.uniform(5, 900))
        state, code = (FAILED, Code.RESOURCE_EXHAUSTED) if i % 10 == 3 else (SUCCEEDED, Code.OK)
        metrics.finished(CANCELLED if i % 25 == 7 else state, Code.CANCELLED if i % 25 == 7 else code)
        metrics.loop_lag.observe(rng.uniform(0, 0.01))
    metrics.rejected("queue_full")
    metrics.node_failure(FailureKind.DISPATCH.value, False)
    metrics.nodes_held_back(1, 0)
    metrics.oldest_finished_age(3600)
    coord = "i2v.v1.Coordinator"
    drive_rpcs(
        metrics,
        [
            (coord, "Generate", "OK"),
            (coord, "Submit", "OK"),
            (coord, "Submit", "RESOURCE_EXHAUSTED"),
            (coord, "Watch", "OK"),
            (coord, "Get", "NOT_FOUND"),
            (coord, "ListJobs", "OK"),
            (coord, "ClusterStatus", "OK"),
            ("grpc.health.v1.Health", "Check", "OK"),
        ],
    )
    return metrics


def coordinator_worst_case(nodes: int) -> CoordinatorMetrics:
    metrics = CoordinatorMetrics()
    fleet_now = fleet(nodes)
    metrics.watch_nodes(lambda: fleet_now)
    metrics.watch_queue(lambda: [], lambda: fleet_now)
    asyncio.run(drive_etcd(metrics.etcd.wrap(MemoryKV(ManualClock()))))
    for state, code in itertools.product((SUCCEEDED, FAILED, CANCELLED), Code):
        metrics.finished(state, code)
    for reason in REJECTIONS:
        metrics.rejected(reason)
    for kind in FailureKind:
        metrics.node_failure(kind.value, True)
    every_code = [c.name for c in Code]
    calls = [(s, m, c) for (s, m) in sorted(metrics.rpc.known) for c in every_code]
    drive_rpcs(metrics, [*calls, ("other", "other", "UNIMPLEMENTED")])
    return metrics


def raw_size_series() -> int:
    """What the generation histogram alone exported with the old labels (raw WxH x frames x tier)."""
    registry = CollectorRegistry()
    old = Histogram("old", "", ["resolution", "frames", "tier"], buckets=DURATION_BUCKETS, registry=registry)
    for i in range(JOBS):
        width, height, frames = SIZES[i % len(SIZES)]
        old.labels(f"{width}x{height}", str(frames), "16-24").observe(1)
    return series(registry)


def generation_series(metrics: NodeMetrics) -> int:
    text = generate_latest(metrics.registry).decode()
    return sum(
        len(f.samples)
        for f in text_string_to_metric_families(text)
        if f.name == "i2v_generation_duration_seconds"
    )


def main() -> None:
    rng = random.Random(7)
    node = node_after_jobs(rng)
    coordinator = coordinator_after_jobs(rng)
    worst_node = node_worst_case()
    worst_small, worst_large = coordinator_worst_case(NODES), coordinator_worst_case(NODES * 25)
    per_node = (series(worst_large.registry) - series(worst_small.registry)) / (NODES * 24)
    fixed = series(worst_small.registry) - per_node * NODES
    print(f"series exported (one per sample line); {JOBS} jobs of {len(SIZES)} sizes, {NODES} nodes known")
    print(f"  node after the jobs:          {series(node.registry):5d}")
    print(
        f"  node, worst case:             {series(worst_node.registry):5d}  (every tier, class, stage, code)"
    )
    print(f"  coordinator after the jobs:   {series(coordinator.registry):5d}")
    worst = f"{fixed:5.0f} + {per_node:.0f} per live node"
    print(f"  coordinator, worst case:      {worst}  (every state, code, reason)")
    print(
        f"  generation durations: {generation_series(node)} series by resolution class and tier; "
        f"{raw_size_series()} with the old raw-size labels for the same jobs (grows with every new size); "
        f"classes {', '.join(CLASSES)}"
    )


if __name__ == "__main__":
    main()
