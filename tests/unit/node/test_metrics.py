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
    key = {"resolution": "512p", "tier": "16-24"}
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
            width=64, height=64, tier=common_pb2.TIER_CPU, seconds=1, peak_bytes=1, degradations=[]
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


def test_a_gpu_s_used_memory_counts_this_node_s_own_allocator() -> None:
    # 24 GiB card: 4 GiB free on the device plus 8 GiB cached by this node's torch = 12 GiB for its jobs
    reading = MemoryReading("cuda:0", "card", True, 24 * GIB, 12 * GIB, "nvml", own_bytes=8 * GIB)
    metrics = NodeMetrics(lambda: reading)
    assert value(metrics, "i2v_gpu_memory_used_bytes", gpu="cuda:0") == 20 * GIB
    assert value(metrics, "i2v_gpu_memory_free_bytes", gpu="cuda:0") == 4 * GIB
    assert value(metrics, "i2v_node_memory_available_bytes", device="cuda:0", kind="accelerator") == 12 * GIB


def test_a_simulated_card_s_used_memory_moves_with_the_running_job() -> None:
    metrics = NodeMetrics(lambda: MemoryReading("simulated", "sim", True, 14 * GIB, 14 * GIB, "simulated"))
    assert value(metrics, "i2v_gpu_memory_used_bytes", gpu="simulated") == 0
    metrics.job_running(9 * GIB)
    assert value(metrics, "i2v_gpu_memory_used_bytes", gpu="simulated") == 9 * GIB
    assert value(metrics, "i2v_gpu_memory_free_bytes", gpu="simulated") == 5 * GIB
    assert value(metrics, "i2v_node_running_job_estimated_bytes") == 9 * GIB
    # what the node's next job and its tier go by is the simulated figure itself
    assert value(metrics, "i2v_node_memory_available_bytes", device="simulated", kind="simulated") == 14 * GIB
    metrics.job_running(40 * GIB)  # an estimate above the card never shows more than the card
    assert value(metrics, "i2v_gpu_memory_used_bytes", gpu="simulated") == 14 * GIB
    metrics.job_released()
    assert value(metrics, "i2v_gpu_memory_used_bytes", gpu="simulated") == 0
    assert value(metrics, "i2v_node_running_job_estimated_bytes") == 0


def test_a_cpu_node_exports_the_host_s_memory() -> None:
    metrics = NodeMetrics(lambda: MemoryReading("cpu", "cpu", False, 8 * GIB, 3 * GIB, "host"))
    assert value(metrics, "i2v_host_memory_total_bytes") == 8 * GIB
    assert value(metrics, "i2v_host_memory_free_bytes") == 3 * GIB
    assert value(metrics, "i2v_host_memory_used_bytes") == 5 * GIB
    assert value(metrics, "i2v_node_memory_available_bytes", device="cpu", kind="host") == 3 * GIB


def test_every_node_exports_its_build_and_process() -> None:
    names = {name for name, _ in samples(NodeMetrics())}
    assert {"i2v_build_info", "process_resident_memory_bytes", "python_info"} <= names
    [(labels, build)] = [
        (dict(k), v) for (n, k), v in samples(NodeMetrics()).items() if n == "i2v_build_info"
    ]
    assert build == 1 and labels["component"] == "node" and labels["version"]


def test_generation_durations_are_labelled_by_resolution_class_and_tier_only() -> None:
    metrics = NodeMetrics()
    sizes = [(w, h) for w in range(64, 1281, 64) for h in (64, 512, 720, 1024, 1280)]
    for w, h in sizes:
        metrics.job_succeeded(
            width=w, height=h, tier=common_pb2.TIER_16_24, seconds=1, peak_bytes=1, degradations=[]
        )
    series = {labels for name, labels in samples(metrics) if name == "i2v_generation_duration_seconds_count"}
    assert {dict(s)["resolution"] for s in series} == {"512p", "768p", "1024p", "other"}
    assert all(set(dict(s)) == {"resolution", "tier"} for s in series)


async def test_etcd_metrics_appear_only_once_the_node_uses_etcd() -> None:
    from tests.fakes.clock import ManualClock
    from tests.fakes.memory_kv import MemoryKV

    metrics = NodeMetrics()
    assert not any(name.startswith("i2v_etcd") for name, _ in samples(metrics))
    kv = metrics.etcd_kv(MemoryKV(ManualClock()))
    await kv.put("/k", b"v")
    assert value(metrics, "i2v_etcd_up") == 1
    assert value(metrics, "i2v_etcd_call_seconds_count", op="put") == 1


def test_oom_and_degradation_counters_exist_at_zero_before_the_first() -> None:
    metrics = NodeMetrics()
    assert not any(name == "i2v_oom_total" for name, _ in samples(metrics))  # no tier yet
    metrics.set_tier(common_pb2.TIER_24_40)
    for stage in ("encode_prompt", "encode_image", "denoise", "decode"):
        assert value(metrics, "i2v_oom_total", stage=stage, tier="24-40") == 0
    assert value(metrics, "i2v_degradations_total", kind="resolution") == 0
    assert value(metrics, "i2v_degradations_total", kind="frames") == 0
