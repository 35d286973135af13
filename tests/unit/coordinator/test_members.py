"""Coordinator membership on MemoryKV: created on our lease, moved between our leases, never stolen
from a live coordinator after the start."""

from __future__ import annotations

import pytest

from i2v_contract.keys import Keys, MemberRecord
from i2v_coordinator.election import ProbeOutcome
from i2v_coordinator.members import DuplicateMember, register
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/m/")


async def alive(addr: str, wait_s: float) -> ProbeOutcome:
    return ProbeOutcome.OK


async def test_the_key_moves_to_a_new_lease_of_ours() -> None:
    kv = MemoryKV(ManualClock())
    old, new = await kv.grant_lease(5), await kv.grant_lease(5)
    await register(kv, KEYS, "c1", "10.0.0.1:1", old, {old}, alive, first=True)
    await register(kv, KEYS, "c1", "10.0.0.1:1", new, {old, new}, alive, first=False)
    stored = await kv.get(KEYS.member("c1"))
    assert stored is not None and stored.lease == new
    assert MemberRecord.from_json(stored.value).addr == "10.0.0.1:1"


@pytest.mark.parametrize(
    ("first", "raises"),
    [
        pytest.param(True, True, id="at start: a live duplicate fails the start"),
        pytest.param(False, False, id="later: logged, the other keeps its key"),
    ],
)
async def test_a_live_coordinator_s_key_is_never_taken(first: bool, raises: bool) -> None:
    kv = MemoryKV(ManualClock())
    theirs, mine = await kv.grant_lease(5), await kv.grant_lease(5)
    await register(kv, KEYS, "c1", "10.0.0.9:1", theirs, {theirs}, alive, first=True)
    if raises:
        with pytest.raises(DuplicateMember, match="unique --id"):
            await register(kv, KEYS, "c1", "10.0.0.1:1", mine, {mine}, alive, first=first)
    else:
        await register(kv, KEYS, "c1", "10.0.0.1:1", mine, {mine}, alive, first=first)
    stored = await kv.get(KEYS.member("c1"))
    assert stored is not None and stored.lease == theirs
