"""The coordinator's metrics: jobs by outcome, Submit rejections by reason, terms, retention
settings, build and process; the scrape-time node and queue views (fleet_metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from i2v_contract.codes import Code
from i2v_contract.states import CANCELLED, FAILED, QUEUED, SUCCEEDED
from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2
from i2v_coordinator.fleet_metrics import QueueCollector
from i2v_coordinator.jobs import JobView
from i2v_coordinator.metrics import ACCESS_REFUSALS, REJECTIONS, CoordinatorMetrics
from i2v_coordinator.routing import NodeView


def names(metrics: CoordinatorMetrics) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_finished_jobs_are_counted_by_state_and_code() -> None:
    metrics = CoordinatorMetrics()
    metrics.finished(SUCCEEDED, Code.OK)
    metrics.finished(FAILED, Code.RESOURCE_EXHAUSTED)
    metrics.finished(FAILED, Code.RESOURCE_EXHAUSTED)
    metrics.finished(CANCELLED, Code.CANCELLED)
    sample = metrics.registry.get_sample_value
    name = "i2v_coordinator_jobs_finished_total"
    assert sample(name, {"state": "succeeded", "code": "OK"}) == 1
    assert sample(name, {"state": "failed", "code": "RESOURCE_EXHAUSTED"}) == 2
    assert sample(name, {"state": "cancelled", "code": "CANCELLED"}) == 1
    assert sample(name, {"state": "failed", "code": "INTERNAL"}) == 0  # present before it happens


@pytest.mark.parametrize("reason", REJECTIONS)
def test_rejections_are_counted_by_reason_and_present_from_the_start(reason: str) -> None:
    metrics = CoordinatorMetrics()
    sample = metrics.registry.get_sample_value
    assert sample("i2v_coordinator_submit_rejections_total", {"reason": reason}) == 0
    metrics.rejected(reason)
    assert sample("i2v_coordinator_submit_rejections_total", {"reason": reason}) == 1


@pytest.mark.parametrize("reason", ACCESS_REFUSALS)
def test_access_refusals_are_counted_by_reason_and_present_from_the_start(reason: str) -> None:
    metrics = CoordinatorMetrics()
    sample = metrics.registry.get_sample_value
    assert sample("i2v_coordinator_access_refusals_total", {"reason": reason}) == 0
    metrics.access_refused(reason)
    assert sample("i2v_coordinator_access_refusals_total", {"reason": reason}) == 1


def test_retention_settings_and_the_last_sweep() -> None:
    metrics = CoordinatorMetrics()
    metrics.retention_policy(7 * 86400, 100_000)
    metrics.queue_limit(1000)
    sample = metrics.registry.get_sample_value
    assert sample("i2v_retention_max_age_seconds") == 7 * 86400
    assert sample("i2v_retention_max_jobs") == 100_000
    assert sample("i2v_coordinator_queue_limit") == 1000
    assert sample("i2v_retention_last_sweep_timestamp_seconds") == 0
    metrics.oldest_finished_age(120.0)
    assert sample("i2v_oldest_finished_job_age_seconds") == 120
    assert (sample("i2v_retention_last_sweep_timestamp_seconds") or 0) > 1e9


def test_build_process_rpc_and_etcd_families_are_there_before_any_traffic() -> None:
    found = names(CoordinatorMetrics())
    assert {
        "i2v_build_info",
        "process_cpu_seconds_total",
        "python_info",
        "i2v_rpc_handled_total",
        "i2v_rpc_duration_seconds_count",
        "i2v_etcd_up",
        "i2v_etcd_errors_total",
        "i2v_coordinator_terms_total",
    } <= found


def node(node_id: str, tier: int, free: int, total: int, **kw: object) -> NodeView:
    return NodeView(node_id, f"addr-{node_id}", tier, free, False, total_bytes=total, **kw)  # type: ignore[arg-type]


def test_free_and_total_bytes_per_node_by_tier() -> None:
    metrics = CoordinatorMetrics()
    fleet = (
        node("a", common_pb2.TIER_16_24, 17 * GIB, 24 * GIB),
        node("b", common_pb2.TIER_GE40, 70 * GIB, 80 * GIB),
    )
    metrics.watch_nodes(lambda: fleet)
    sample = metrics.registry.get_sample_value
    assert sample("i2v_coordinator_node_free_bytes", {"node": "a", "tier": "16-24"}) == 17 * GIB
    assert sample("i2v_coordinator_node_total_bytes", {"node": "b", "tier": "ge40"}) == 80 * GIB
    fleet = fleet[1:]  # a node that left is gone from the next scrape
    assert sample("i2v_coordinator_node_free_bytes", {"node": "a", "tier": "16-24"}) is None


def queued(job_id: str, required: int, tier: int, created: float, model: str = "") -> JobView:
    return JobView(
        job_id, QUEUED, required_bytes=required, required_tier=tier, created_at=created, model=model
    )


def test_queued_jobs_by_required_tier_those_no_node_can_serve_and_the_oldest_wait() -> None:
    fleet = [node("a", common_pb2.TIER_16_24, 17 * GIB, 24 * GIB)]
    jobs = [
        queued("small", 10 * GIB, common_pb2.TIER_12_16, 100.0),
        queued("medium", 20 * GIB, common_pb2.TIER_16_24, 130.0),  # fits once the node is idle: 24 GiB
        queued("huge", 60 * GIB, common_pb2.TIER_GE40, 160.0),
        queued("huge2", 60 * GIB, common_pb2.TIER_GE40, 170.0),
        queued("other-model", 10 * GIB, common_pb2.TIER_12_16, 190.0, model="m2"),
    ]
    collector = QueueCollector(lambda: jobs, lambda: fleet, clock=lambda: 400.0)
    values = {(m.name, tuple(s.labels.values())): s.value for m in collector.collect() for s in m.samples}
    assert values[("i2v_coordinator_queued_jobs", ("12-16",))] == 2
    assert values[("i2v_coordinator_queued_jobs", ("ge40",))] == 2
    assert values[("i2v_coordinator_queued_jobs", ("cpu",))] == 0
    assert values[("i2v_coordinator_queued_unservable_jobs", ("ge40",))] == 2
    assert values[("i2v_coordinator_queued_unservable_jobs", ("12-16",))] == 1  # the other model
    assert values[("i2v_coordinator_queued_unservable_jobs", ("16-24",))] == 0
    assert values[("i2v_coordinator_oldest_queued_seconds", ())] == 300


def test_a_coordinator_that_does_not_lead_shows_an_empty_queue() -> None:
    collector = QueueCollector(lambda: [], lambda: [], clock=lambda: 400.0)
    values = [s.value for m in collector.collect() for s in m.samples]
    assert values and not any(values)
