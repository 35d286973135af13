"""etcd reachability from the coordinator's own calls (manual clock), and ClusterStatus naming an
etcd outage at once from memory instead of failing after the client's deadline (in-memory KV)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from i2v_common.etcd_kv import EtcdKV
from i2v_common.kv_metrics import EtcdMetrics
from i2v_contract.kv import KVUnavailable
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.etcdhealth import EtcdHealth
from i2v_coordinator.health import NodeHealth, Standing
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.routing import NodeView
from i2v_coordinator.servicer import CoordinatorServicer
from i2v_coordinator.statusview import Roster
from tests.fakes.clock import ManualClock
from tests.fakes.coordinator import KEYS, FakeRegistry
from tests.fakes.memory_kv import MemoryKV


def test_unreachable_while_the_latest_call_failed_and_for_how_long() -> None:
    clock = ManualClock()
    health = EtcdHealth(["e1:2379", "e2:2379"], clock)
    assert health.error == ""
    health.observe("get x: no etcd endpoint answered within 1.5s (e1:2379 UNAVAILABLE refused)")
    clock.advance(2.0)
    health.observe("get y: no etcd endpoint answered within 1.5s")  # the outage started at the first
    assert health.error == (
        "etcd unreachable at e1:2379,e2:2379 for 2.0 s (get y: no etcd endpoint answered within 1.5s); "
        "the coordinator cannot read or write jobs"
    )
    health.observe(None)
    assert health.error == ""


def test_a_long_etcd_error_is_cut() -> None:
    health = EtcdHealth(["e:1"], ManualClock())
    health.observe("x" * 5000)
    assert 300 < len(health.error) < 450 and "… (5000 characters))" in health.error


async def test_the_etcd_client_reports_each_calls_outcome() -> None:
    seen: list[str | None] = []
    # Nothing listens on port 1.
    kv = EtcdMetrics(CollectorRegistry()).wrap(EtcdKV(["127.0.0.1:1"], timeout=0.3), observe=seen.append)
    try:
        with pytest.raises(KVUnavailable):
            await kv.get("/k")
    finally:
        await kv.close()
    assert len(seen) == 1 and seen[0] is not None and "no etcd endpoint answered" in seen[0]


class CutOff:
    """A standby that last saw c1 lead; its roster read finds etcd gone."""

    member_id = "c2"
    addr = "127.0.0.1:2"
    epoch = None
    term = None
    leader = ("c1", "127.0.0.1:1")

    async def roster(self) -> Roster:
        raise KVUnavailable("get /d/coord/leader: no etcd endpoint answered within 1.5s")


class Dispatching:
    @staticmethod
    def node_health(view: NodeView) -> tuple[NodeHealth, Standing]:
        return NodeHealth(), Standing(0.0, False)


NODE = NodeView(node_id="n1", addr="a:1", tier=common_pb2.TIER_CPU, free_bytes=1, busy=False)


async def test_cluster_status_names_the_outage_and_shows_the_last_view() -> None:
    kv = MemoryKV(ManualClock())
    kv.available = False
    health = EtcdHealth(["e:2379"], ManualClock())
    unused = cast(Any, None)  # ClusterStatus touches neither the hub nor the artifacts
    servicer = CoordinatorServicer(
        CutOff(), cast(Any, FakeRegistry([NODE])), JobStore(kv, KEYS), cast(Any, Dispatching()), unused,
        unused, etcd=health,
    )  # fmt: skip
    status = await servicer.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), cast(Any, None))
    assert status.etcd_error.startswith("etcd unreachable at e:2379 for 0.0 s (get /d/coord/leader")
    assert status.etcd_error.endswith("the coordinator cannot read or write jobs")
    assert (status.leader_id, status.leader_addr, status.answered_by) == ("c1", "127.0.0.1:1", "c2")
    assert [(t.tier, t.nodes) for t in status.tiers] == [(common_pb2.TIER_CPU, 1)] and not status.members
    again = await servicer.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), cast(Any, None))
    assert again.etcd_error == status.etcd_error  # known down: answered from memory, no etcd read
