"""Coordinator membership: `members/{id}` on the coordinator's lease, created if absent.

A second live process with the same id fails at start instead of fighting over one identity; a key
left by a dead previous incarnation (its address refuses connections, or it is our own address,
whose port we hold) is revoked and taken over. After a lease change the key moves to the new lease.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from i2v_contract.keys import Keys, MemberRecord
from i2v_contract.kv import KV, Compare, KVUnavailable, Put
from i2v_contract.version import package_version
from i2v_coordinator.election import ProbeOutcome
from i2v_coordinator.probe import PROBE_TIMEOUT_S, Probe

log = logging.getLogger(__name__)

VERSION = package_version()


class DuplicateMember(RuntimeError):
    """Another live coordinator registered the same id."""


async def register(
    kv: KV,
    keys: Keys,
    member_id: str,
    addr: str,
    lease: int,
    my_leases: Collection[int],
    probe: Probe,
    *,
    first: bool,
) -> None:
    """members/{member_id} at `addr` on `lease`, created if absent; a live duplicate id fails the
    start (`first`) and is only logged later (a key we held on an older lease of ours, `my_leases`, is
    moved)."""
    key = keys.member(member_id)
    value = MemberRecord(addr, VERSION).to_json()
    for _ in range(3):
        result = await kv.txn([Compare(key, "create", "==", 0)], [Put(key, value, lease)])
        if result.succeeded:
            return
        existing = await kv.get(key)
        if existing is None:
            continue
        if existing.lease in my_leases:
            replaced = await kv.txn(
                [Compare(key, "mod", "==", existing.mod_revision)], [Put(key, value, lease)]
            )
            if replaced.succeeded:
                return
            continue
        other = MemberRecord.from_json(existing.value).addr
        if not first:
            log.error("member key %s was taken by another coordinator at %s", key, other)
            return
        # The same address cannot be live twice (we hold its port): a previous incarnation.
        if other != addr and await probe(other, PROBE_TIMEOUT_S) is not ProbeOutcome.REFUSED:
            raise DuplicateMember(
                f"coordinator id {member_id!r} is already registered by a live coordinator at "
                f"{other}; give each coordinator a unique --id"
            )
        log.warning(
            "member %s was held by a dead previous incarnation at %s: revoking its lease %x",
            member_id,
            other,
            existing.lease,
        )
        await kv.revoke_lease(existing.lease)
    raise KVUnavailable(f"could not register {key}: it kept changing under three attempts")
