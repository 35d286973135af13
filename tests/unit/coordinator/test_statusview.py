"""What ListNodes and ClusterStatus show: the roster decoded from the leader key and members/, nodes
by tier, open jobs by phase, and held-back nodes."""

from __future__ import annotations

import pytest

from i2v_contract import states
from i2v_contract.keys import Keys, LeaderRecord, MemberRecord, NodeRecord
from i2v_contract.kv import KeyValue
from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2
from i2v_coordinator import health
from i2v_coordinator.health import NodeHealth, Standing
from i2v_coordinator.routing import NodeView
from i2v_coordinator.statusview import Member, Roster, cluster_status, node_infos, roster_of

KEYS = Keys("/sv/")


def kv(key: str, value: bytes, create_revision: int = 5) -> KeyValue:
    return KeyValue(key, value, create_revision, create_revision, 1, 0)


MEMBERS = [
    kv(KEYS.member("c1"), MemberRecord("10.0.0.1:7000", "1").to_json()),
    kv(KEYS.member("c2"), b"not json"),
]


@pytest.mark.parametrize(
    ("leader", "expected"),
    [
        pytest.param(None, ("", "", 0), id="no leader key"),
        pytest.param(
            kv(KEYS.leader, LeaderRecord("c1", "10.0.0.1:7000").to_json(), 42),
            ("c1", "10.0.0.1:7000", 42),
            id="a readable leader",
        ),
        pytest.param(kv(KEYS.leader, b"garbage", 43), ("", "", 43), id="unreadable: still an epoch"),
    ],
)
def test_roster_of(leader: KeyValue | None, expected: tuple[str, str, int]) -> None:
    roster = roster_of(KEYS, leader, MEMBERS)
    assert (roster.leader_id, roster.leader_addr, roster.epoch) == expected
    assert roster.members == (Member("c1", "10.0.0.1:7000"), Member("c2", ""))


def node(node_id: str, tier: int, busy: bool = False, alive: bool = True) -> NodeView:
    return NodeView(node_id, f"a-{node_id}", tier, GIB, busy=busy, alive=alive, total_bytes=2 * GIB)


NODES = [
    node("b", common_pb2.TIER_GE40, busy=True),
    node("a", common_pb2.TIER_CPU),
    node("c", common_pb2.TIER_CPU),
    node("d", common_pb2.TIER_CPU, alive=False),
]
SICK = {
    "a": (NodeHealth(failures=1, cooldown_until=10.0, reason="late"), Standing(4.0, False)),
    "c": (NodeHealth(failures=3, set_aside_since=1.0, reason="x"), Standing(0.0, True)),
}


def health_of(n: NodeView) -> tuple[NodeHealth, Standing]:
    return SICK.get(n.node_id, (health.HEALTHY, Standing(0.0, False)))


def record(gpu: str, version: str) -> NodeRecord:
    return NodeRecord("addr", gpu, 2 * GIB, GIB, common_pb2.TIER_CPU, False, ("tiny",), version)


RECORDS = {"a": record("", "0.1.0"), "b": record("NVIDIA H100 80GB HBM3", "0.2.0")}


def test_node_infos_list_live_nodes_by_id_with_their_job_and_health() -> None:
    infos = node_infos(NODES, {"b": "job7"}, health_of, RECORDS)
    assert [(i.node_id, i.job_id, i.busy) for i in infos] == [
        ("a", "", False),
        ("b", "job7", True),
        ("c", "", False),
    ]
    a, b, c = infos
    assert (a.cooldown_s, a.consecutive_failures, a.health_reason, a.set_aside) == (4.0, 1, "late", False)
    assert (b.consecutive_failures, b.health_reason) == (0, "")
    assert c.set_aside and c.tier == common_pb2.TIER_CPU and c.total_bytes == 2 * GIB


def test_node_infos_show_the_device_and_version_each_node_published() -> None:
    infos = node_infos(NODES, {}, health_of, RECORDS)
    assert [(i.node_id, i.gpu, i.version) for i in infos] == [
        ("a", "", "0.1.0"),  # a CPU node publishes no device name
        ("b", "NVIDIA H100 80GB HBM3", "0.2.0"),
        ("c", "", ""),  # no record to read them from
    ]


def test_cluster_status_counts_nodes_jobs_and_held_back_nodes() -> None:
    roster = Roster("c1", "10.0.0.1:7000", 42, (Member("c1", "x"), Member("c2", "y")))
    job_states = [states.QUEUED, states.QUEUED, states.ASSIGNED, states.RUNNING, states.SUCCEEDED]
    status = cluster_status(roster, job_states, NODES, health_of, "c2")
    assert (status.leader_id, status.leader_addr, status.epoch, status.answered_by) == (
        "c1",
        "10.0.0.1:7000",
        42,
        "c2",
    )
    assert [(m.id, m.addr, m.leader) for m in status.members] == [("c1", "x", True), ("c2", "y", False)]
    assert [(t.tier, t.nodes, t.busy) for t in status.tiers] == [
        (common_pb2.TIER_CPU, 2, 0),
        (common_pb2.TIER_GE40, 1, 1),
    ]
    assert (status.queued, status.running, status.nodes_cooling, status.nodes_set_aside) == (2, 2, 1, 1)
