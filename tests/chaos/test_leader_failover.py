"""Coordinator failover with real processes on a real etcd: crash, planned stop, pause, etcd leader loss.

Leader state comes from each coordinator's /metrics (read at scrape time from the lease's validity
window, so a paused-then-resumed leader cannot show a stale "leading"). Lease TTL is the default 5 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from i2v_common.etcd_kv import EtcdKV
from i2v_contract.fencing import fence
from i2v_contract.keys import Keys
from i2v_contract.kv import Put
from tests.chaos.coordinator_procs import CoordinatorGroup
from tests.etcd_cluster import EtcdCluster

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(60)]

TTL_S = 5.0


def group_on(etcd: EtcdCluster, tmp_path: Path, count: int) -> Iterator[CoordinatorGroup]:
    group = CoordinatorGroup(etcd.endpoints, tmp_path, count, prefix=f"/ch-{uuid.uuid4().hex[:8]}/")
    try:
        group.wait_started()
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def coordinators(etcd: EtcdCluster, tmp_path: Path) -> Iterator[CoordinatorGroup]:
    yield from group_on(etcd, tmp_path, 3)


def fenced_write_commits(etcd: EtcdCluster, prefix: str, epoch: int) -> bool:
    """Whether a write fenced on `epoch` (as the leader's job writes are) would commit now."""

    async def attempt() -> bool:
        kv = EtcdKV(etcd.endpoints)
        try:
            keys = Keys(prefix)
            result = await kv.txn([fence(keys, epoch)], [Put(keys.jobs + "fence-probe", b"x")])
            return result.succeeded
        finally:
            await kv.close()

    return asyncio.run(attempt())


def test_kill_9_leader_standby_leads_within_a_second(coordinators: CoordinatorGroup) -> None:
    epochs = []
    for _ in range(2):
        leader, state, _ = coordinators.wait_leader(10)
        epochs.append(state.epoch)
        killed_at = time.monotonic()
        leader.kill()
        _, new_state, seen_at = coordinators.wait_leader(TTL_S + 1.5, exclude=leader)
        took = seen_at - killed_at
        assert took < 1.0, f"takeover after kill -9 took {took:.3f}s (crash should be seen as refused)"
        assert new_state.epoch > state.epoch
        standbys = [p for p in coordinators.procs if p is not leader]
        assert any("refused" in p.log() for p in standbys), "expected a crash verdict from a probe"
        coordinators.procs.remove(leader)
        coordinators.add().wait_started()
    epochs.append(coordinators.wait_leader(5)[1].epoch)
    assert epochs == sorted(set(epochs)), f"epochs must strictly increase: {epochs}"


def test_sigterm_hands_over_well_under_a_second(coordinators: CoordinatorGroup) -> None:
    leader, state, _ = coordinators.wait_leader(10)
    stopped_at = time.monotonic()
    leader.terminate()
    _, new_state, seen_at = coordinators.wait_leader(2, exclude=leader)
    took = seen_at - stopped_at
    assert took < 0.5, f"planned handover took {took:.3f}s"
    assert new_state.epoch > state.epoch
    assert leader.proc.wait(10) == 0
    assert "resigned: lease revoked" in leader.log()


def test_paused_leader_is_replaced_and_steps_down_on_resume(
    etcd: EtcdCluster, coordinators: CoordinatorGroup
) -> None:
    leader, state, _ = coordinators.wait_leader(10)
    paused_at = time.monotonic()
    leader.pause()
    try:
        # A paused process still completes TCP handshakes: no crash verdict, lease expiry decides.
        successor, new_state, seen_at = coordinators.wait_leader(TTL_S + 1.5, exclude=leader)
        assert new_state.epoch > state.epoch
        assert seen_at - paused_at > TTL_S - 1.5, "a paused leader must not be revoked on timeouts"
        assert not fenced_write_commits(etcd, coordinators._prefix, state.epoch)
        time.sleep(max(0.0, paused_at + 2 * TTL_S - time.monotonic()))
    finally:
        leader.resume()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        resumed = leader.state()
        assert resumed is None or not resumed.is_leader, f"resumed leader still leads: {resumed}"
        if resumed is not None and "stepped down" in leader.log():
            break
        time.sleep(0.05)
    assert "stepped down from epoch" in leader.log()
    current, current_state, _ = coordinators.wait_leader(2)
    assert current is successor and current_state.epoch == new_state.epoch


@pytest.fixture
def coordinators_on_etcd3(etcd3: EtcdCluster, tmp_path: Path) -> Iterator[CoordinatorGroup]:
    yield from group_on(etcd3, tmp_path, 2)


def test_kill_9_etcd_leader_no_split_brain(
    etcd3: EtcdCluster, coordinators_on_etcd3: CoordinatorGroup
) -> None:
    group = coordinators_on_etcd3
    leader, state, _ = group.wait_leader(10)
    etcd3.kill(etcd3.leader_index())
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        leaders = group.leaders()
        assert len(leaders) <= 1, f"split brain: {[(p.member_id, s.epoch) for p, s in leaders]}"
        time.sleep(0.02)
    current, current_state, _ = group.wait_leader(TTL_S + 1.5)
    if current is leader:
        assert current_state.epoch == state.epoch, "same leader, same epoch: no failover was needed"
    else:
        assert current_state.epoch > state.epoch
