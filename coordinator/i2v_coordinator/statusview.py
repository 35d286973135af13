"""What ListNodes and ClusterStatus show, built from what the parts know; pure.

The roster (who leads, with which epoch, and which coordinators are members) is decoded from the
leader key and members/ as etcd has them, which Leadership reads (`Leadership.roster`); node health
comes from the dispatcher (healthy everywhere on a standby, which has no dispatch history).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from i2v_contract.keys import Keys, LeaderRecord, MemberRecord, NodeRecord
from i2v_contract.kv import KeyValue
from i2v_contract.states import ACTIVE_STATES, QUEUED
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.health import NodeHealth, Standing
from i2v_coordinator.routing import NodeView

HealthOf = Callable[[NodeView], tuple[NodeHealth, Standing]]


@dataclass(frozen=True)
class Member:
    member_id: str
    addr: str  # "" when its record cannot be read


@dataclass(frozen=True)
class Roster:
    """The control plane as etcd shows it: the leader ("" when none or unreadable) and the members."""

    leader_id: str
    leader_addr: str
    epoch: int  # the leader key's create revision; 0 when no leader
    members: tuple[Member, ...]


def roster_of(keys: Keys, leader: KeyValue | None, members: Iterable[KeyValue]) -> Roster:
    leader_id, leader_addr, epoch = "", "", 0
    if leader is not None:
        with contextlib.suppress(ValueError):
            record = LeaderRecord.from_json(leader.value)
            leader_id, leader_addr = record.id, record.addr
        epoch = leader.create_revision
    listed = []
    for kv in members:
        try:
            addr = MemberRecord.from_json(kv.value).addr
        except ValueError:
            addr = ""
        listed.append(Member(keys.id_of(kv.key, keys.members), addr))
    return Roster(leader_id, leader_addr, epoch, tuple(listed))


def node_infos(
    nodes: Iterable[NodeView],
    running: Mapping[str, str],
    health_of: HealthOf,
    records: Mapping[str, NodeRecord],
) -> list[coordinator_pb2.NodeInfo]:
    """ListNodes: live nodes by id, with the job each runs (`running`: node id -> job id), health, and
    the device name and version from what each published (`records`, the registry's)."""
    infos = []
    for n in sorted(nodes, key=lambda n: n.node_id):
        if not n.alive:
            continue
        health, standing = health_of(n)
        record = records.get(n.node_id)
        infos.append(
            coordinator_pb2.NodeInfo(
                node_id=n.node_id,
                addr=n.addr,
                tier=common_pb2.Tier.ValueType(n.tier),
                gpu=record.gpu if record else "",
                version=record.version if record else "",
                total_bytes=n.total_bytes,
                free_bytes=n.free_bytes,
                busy=n.busy,
                job_id=running.get(n.node_id, ""),
                model=n.model,
                cooldown_s=standing.cooldown_s,
                consecutive_failures=health.failures,
                set_aside=health.set_aside,
                health_reason=health.reason if health.failures else "",
            )
        )
    return infos


def cluster_status(
    roster: Roster,
    job_states: Sequence[int],
    nodes: Iterable[NodeView],
    health_of: HealthOf,
    answered_by: str,
    *,
    etcd_error: str = "",
) -> coordinator_pb2.ClusterStatusResponse:
    """ClusterStatus: the roster, live nodes by tier (and busy), open jobs by phase, held-back nodes,
    and why etcd is out of reach ("" when it is not)."""
    tiers: dict[int, list[int]] = {}
    cooling = set_aside = 0
    for node in nodes:
        if node.alive:
            count = tiers.setdefault(node.tier, [0, 0])
            count[0] += 1
            count[1] += int(node.busy)
            health, standing = health_of(node)
            set_aside += int(health.set_aside)
            cooling += int(not health.set_aside and standing.cooldown_s > 0)
    return coordinator_pb2.ClusterStatusResponse(
        leader_id=roster.leader_id,
        leader_addr=roster.leader_addr,
        epoch=roster.epoch,
        members=[
            coordinator_pb2.Member(id=m.member_id, addr=m.addr, leader=m.member_id == roster.leader_id)
            for m in roster.members
        ],
        tiers=[
            coordinator_pb2.TierCount(tier=common_pb2.Tier.ValueType(t), nodes=c[0], busy=c[1])
            for t, c in sorted(tiers.items())
        ],
        queued=sum(1 for s in job_states if s == QUEUED),
        running=sum(1 for s in job_states if s in ACTIVE_STATES),
        answered_by=answered_by,
        nodes_cooling=cooling,
        nodes_set_aside=set_aside,
        etcd_error=etcd_error,
    )
