"""The fencing builders: the compares and puts they make, and what they let through on the in-memory
etcd fake (a claim commits once, and only under the current leader and the assignment it was sent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from i2v_contract.fencing import absent, claim_txn, fence
from i2v_contract.keys import ClaimRecord, Keys, LeaderRecord
from i2v_contract.kv import Compare, LeaseLost, Put
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/f/")
LEADER = LeaderRecord("c1", "127.0.0.1:5000").to_json()


def test_fence_compares_the_leader_keys_create_revision_with_the_epoch() -> None:
    assert fence(KEYS, 7) == Compare("/f/coord/leader", "create", "==", 7)


def test_absent_compares_the_create_revision_with_zero() -> None:
    assert absent("/f/results/j/1") == Compare("/f/results/j/1", "create", "==", 0)


def test_a_claim_txn_is_fenced_pinned_to_the_assignment_and_create_once() -> None:
    txn = claim_txn(KEYS, "j", 2, epoch=7, assign_revision=12, node_id="n1", lease=0x99)
    assert txn.key == "/f/claims/j/2"
    assert txn.compares == [
        Compare("/f/coord/leader", "create", "==", 7),
        Compare("/f/jobs/j", "mod", "==", 12),
        Compare("/f/claims/j/2", "create", "==", 0),
    ]
    assert txn.puts == [Put("/f/claims/j/2", txn.value, 0x99)]
    assert ClaimRecord.from_json(txn.value) == ClaimRecord(node_id="n1", epoch=7)


@dataclass
class Cluster:
    """A leader key, one assigned job and a node's lease, as a dispatch finds them."""

    kv: MemoryKV
    epoch: int
    assign_revision: int
    lease: int

    async def claim(self, attempt: int = 1, *, node_id: str = "n1") -> bool:
        txn = claim_txn(
            KEYS,
            "j",
            attempt,
            epoch=self.epoch,
            assign_revision=self.assign_revision,
            node_id=node_id,
            lease=self.lease,
        )
        return (await self.kv.txn(txn.compares, txn.puts)).succeeded


@pytest.fixture
async def cluster() -> Cluster:
    kv = MemoryKV(ManualClock())
    epoch = await kv.put(KEYS.leader, LEADER)
    assign_revision = await kv.put(KEYS.job("j"), b"assigned")
    return Cluster(kv, epoch, assign_revision, await kv.grant_lease(10))


async def _nothing(c: Cluster) -> None:
    pass


async def _claimed_already(c: Cluster) -> None:
    assert await c.claim(node_id="n2")


async def _other_attempt_claimed(c: Cluster) -> None:
    assert await c.claim(attempt=2, node_id="n2")


async def _leader_rewrote_its_key(c: Cluster) -> None:
    await c.kv.put(KEYS.leader, LEADER)


async def _leader_key_re_created(c: Cluster) -> None:
    await c.kv.delete(KEYS.leader)
    await c.kv.put(KEYS.leader, LEADER)


async def _leader_key_gone(c: Cluster) -> None:
    await c.kv.delete(KEYS.leader)


async def _job_rewritten(c: Cluster) -> None:
    await c.kv.put(KEYS.job("j"), b"requeued")


async def _job_deleted(c: Cluster) -> None:
    await c.kv.delete(KEYS.job("j"))


@pytest.mark.parametrize(
    ("before", "commits"),
    [
        pytest.param(_nothing, True, id="fresh-claim-commits"),
        pytest.param(_claimed_already, False, id="second-claim-of-the-same-attempt-fails"),
        pytest.param(_other_attempt_claimed, True, id="claim-of-another-attempt-does-not-block"),
        pytest.param(_leader_rewrote_its_key, True, id="same-term-leader-rewrite-keeps-the-epoch"),
        pytest.param(_leader_key_re_created, False, id="older-epoch-after-leader-key-re-created-fails"),
        pytest.param(_leader_key_gone, False, id="no-leader-fails"),
        pytest.param(_job_rewritten, False, id="stale-assign-revision-after-job-changed-fails"),
        pytest.param(_job_deleted, False, id="job-gone-fails"),
    ],
)
async def test_a_claim_commits_only_under_its_epoch_and_assignment_and_only_once(
    cluster: Cluster, before: Callable[[Cluster], Awaitable[None]], commits: bool
) -> None:
    await before(cluster)
    was_there = await cluster.kv.get(KEYS.claim("j", 1))
    revision = cluster.kv.revision
    assert await cluster.claim() is commits
    got = await cluster.kv.get(KEYS.claim("j", 1))
    if commits:
        assert cluster.kv.revision == revision + 1
        assert got is not None and got.lease == cluster.lease
        assert ClaimRecord.from_json(got.value) == ClaimRecord(node_id="n1", epoch=cluster.epoch)
    else:
        assert cluster.kv.revision == revision  # a refused claim writes nothing
        assert got == was_there


async def test_the_claim_lives_on_the_nodes_lease(cluster: Cluster) -> None:
    assert await cluster.claim()
    assert cluster.kv.lease_keys(cluster.lease) == {KEYS.claim("j", 1)}
    await cluster.kv.revoke_lease(cluster.lease)
    assert await cluster.kv.get(KEYS.claim("j", 1)) is None


async def test_a_claim_on_a_lapsed_node_lease_is_refused(cluster: Cluster) -> None:
    await cluster.kv.revoke_lease(cluster.lease)
    with pytest.raises(LeaseLost):
        await cluster.claim()
    assert await cluster.kv.get(KEYS.claim("j", 1)) is None


async def test_a_write_fenced_on_an_old_epoch_fails_once_the_leader_key_is_re_created(
    cluster: Cluster,
) -> None:
    result = KEYS.result("j", 1)
    assert (
        await cluster.kv.txn([fence(KEYS, cluster.epoch), absent(result)], [Put(result, b"r1")])
    ).succeeded
    await _leader_key_re_created(cluster)
    again = KEYS.result("j", 2)
    assert not (
        await cluster.kv.txn([fence(KEYS, cluster.epoch), absent(again)], [Put(again, b"r2")])
    ).succeeded
    assert await cluster.kv.get(again) is None
