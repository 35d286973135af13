"""etcd as the process sees it: latency by op, failed calls, and i2v_etcd_up, on MemoryKV."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from i2v_common.kv_metrics import EtcdMetrics
from i2v_contract.kv import KVUnavailable, LeaseLost
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_etcd_up_follows_the_last_call_and_errors_are_counted_by_op() -> None:
    registry = CollectorRegistry()
    inner = MemoryKV(ManualClock())
    kv = EtcdMetrics(registry).wrap(inner)
    assert sample(registry, "i2v_etcd_up") == 0  # not reached yet
    await kv.put("/k", b"v")
    assert sample(registry, "i2v_etcd_up") == 1
    inner.available = False
    with pytest.raises(KVUnavailable):
        await kv.get("/k")
    with pytest.raises(KVUnavailable):
        await kv.txn([], [])
    assert sample(registry, "i2v_etcd_up") == 0
    assert sample(registry, "i2v_etcd_errors_total", op="get") == 1
    assert sample(registry, "i2v_etcd_errors_total", op="txn") == 1
    assert sample(registry, "i2v_etcd_errors_total", op="put") == 0
    assert sample(registry, "i2v_etcd_call_seconds_count", op="get") == 1  # a failure is a latency too
    inner.available = True
    with pytest.raises(LeaseLost):  # an answer, even a refusal, means etcd is up
        await kv.keepalive_once(0x999)
    assert sample(registry, "i2v_etcd_up") == 1
    assert sample(registry, "i2v_etcd_errors_total", op="lease") == 0
