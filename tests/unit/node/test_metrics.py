from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from i2v_common.serving import MetricsHttp
from i2v_contract.wire import common_pb2
from i2v_node.gpu import MemoryReading, ProbeError
from i2v_node.metrics import NodeMetrics, degradation_kind

GIB = 1024**3


def samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: NodeMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_gpu_memory_read_at_scrape_time() -> None:
    free = [20 * GIB]
    metrics = NodeMetrics(lambda: MemoryReading("cuda:0", "card", True, 24 * GIB, free[0], "nvml"))
    assert value(metrics, "i2v_gpu_memory_free_bytes", gpu="cuda:0") == 20 * GIB
    assert value(metrics, "i2v_gpu_memory_used_bytes", gpu="cuda:0") == 4 * GIB
    free[0] = 3 * GIB
    assert value(metrics, "i2v_gpu_memory_free_bytes", gpu="cuda:0") == 3 * GIB
    assert value(metrics, "i2v_gpu_memory_total_bytes", gpu="cuda:0") == 24 * GIB


def test_cpu_node_has_no_gpu_series() -> None:
    metrics = NodeMetrics(lambda: MemoryReading("cpu", "cpu", False, 8 * GIB, 4 * GIB, "host"))
    assert not any(name.startswith("i2v_gpu_memory") for name, _ in samples(metrics))


def test_probe_error_skips_gpu_series_only() -> None:
    def broken() -> MemoryReading:
        raise ProbeError("driver gone")

    metrics = NodeMetrics(broken)
    names = {name for name, _ in samples(metrics)}
    assert "i2v_node_busy" in names
    assert not any(n.startswith("i2v_gpu_memory") for n in names)


def test_job_metrics_move() -> None:
    metrics = NodeMetrics()
    metrics.set_tier(common_pb2.TIER_16_24)
    metrics.job_succeeded(
        width=512,
        height=320,
        frames=16,
        tier=common_pb2.TIER_16_24,
        seconds=42.0,
        peak_bytes=9 * GIB,
        degradations=["resolution 768x768->512x320", "steps 50->30"],
    )
    metrics.oom_caught(common_pb2.STAGE_DECODE, common_pb2.TIER_16_24)
    metrics.step(0.3, common_pb2.TIER_16_24)
    metrics.job_done("cancelled")
    assert value(metrics, "i2v_jobs_total", outcome="succeeded") == 1
    assert value(metrics, "i2v_jobs_total", outcome="cancelled") == 1
    assert value(metrics, "i2v_jobs_total", outcome="oom") == 0
    assert value(metrics, "i2v_oom_total", stage="decode", tier="16-24") == 1
    assert value(metrics, "i2v_degradations_total", kind="resolution") == 1
    assert value(metrics, "i2v_degradations_total", kind="steps") == 1
    assert value(metrics, "i2v_node_tier", tier="16-24") == 1
    assert value(metrics, "i2v_node_tier", tier="cpu") == 0
    key = {"resolution": "512x320", "frames": "16", "tier": "16-24"}
    assert value(metrics, "i2v_generation_duration_seconds_count", **key) == 1
    assert value(metrics, "i2v_generation_duration_seconds_bucket", le="60.0", **key) == 1
    assert value(metrics, "i2v_generation_duration_seconds_bucket", le="30.0", **key) == 0
    assert value(metrics, "i2v_generation_duration_seconds_bucket", le="3600.0", **key) == 1
    assert value(metrics, "i2v_job_peak_bytes_sum") == 9 * GIB
    assert value(metrics, "i2v_step_duration_seconds_count", tier="16-24") == 1


def test_labels_stay_bounded() -> None:
    metrics = NodeMetrics()
    for _ in range(3):
        metrics.job_succeeded(
            width=64, height=64, frames=8, tier=common_pb2.TIER_CPU, seconds=1, peak_bytes=1, degradations=[]
        )
    text = metrics.text()
    assert "job_id" not in text
    assert value(metrics, "i2v_jobs_total", outcome="succeeded") == 3


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("resolution 768x768->512x512", "resolution"),
        ("frames:24->16", "frames"),
        ("steps", "steps"),
        ("", "other"),
    ],
)
def test_degradation_kind(text: str, kind: str) -> None:
    assert degradation_kind(text) == kind


def test_metrics_http_endpoint() -> None:
    metrics = NodeMetrics()
    metrics.model_load_seconds.set(2.5)
    server = MetricsHttp(metrics.registry, "127.0.0.1:0")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert "i2v_model_load_seconds 2.5" in body
    finally:
        server.close()
