"""The fencing protocol's etcd operations, built in one place for the leader, the nodes and the fakes.

A write fenced on epoch E commits only while the leader key is the one created at revision E, so a
paused or partitioned ex-leader can never change anything. A node claims a dispatched attempt only
under the same fence, only while the job is still at the revision the leader assigned it, and only
once (docs/architecture.md, "Fencing").
"""

from __future__ import annotations

from dataclasses import dataclass

from i2v_contract.keys import ClaimRecord, Keys
from i2v_contract.kv import Compare, Put


def fence(keys: Keys, epoch: int) -> Compare:
    """True only while the leader of term `epoch` still holds the leader key."""
    return Compare(keys.leader, "create", "==", epoch)


def absent(key: str) -> Compare:
    """True only while `key` does not exist: create-once writes (results, claims, the store id)."""
    return Compare(key, "create", "==", 0)


@dataclass(frozen=True)
class ClaimTxn:
    key: str
    value: bytes
    lease: int
    compares: list[Compare]

    @property
    def puts(self) -> list[Put]:
        return [Put(self.key, self.value, self.lease)]


def claim_txn(
    keys: Keys, job_id: str, attempt: int, *, epoch: int, assign_revision: int, node_id: str, lease: int
) -> ClaimTxn:
    """The node's claim of attempt `attempt` of `job_id`, dispatched by the leader of `epoch` after it
    wrote the assignment at `assign_revision`; the claim lives on the node's own lease."""
    key = keys.claim(job_id, attempt)
    return ClaimTxn(
        key,
        ClaimRecord(node_id=node_id, epoch=epoch).to_json(),
        lease,
        [fence(keys, epoch), Compare(keys.job(job_id), "mod", "==", assign_revision), absent(key)],
    )
