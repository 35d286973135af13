"""LeaseKeeper on MemoryKV with a manual clock: validity window, loss detection, planned stop."""

from __future__ import annotations

import asyncio

import pytest

from i2v_common.lease import LeaseKeeper
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV


class SteppingSleep:
    """A sleep that moves the manual clock instead of waiting, and records what was asked."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


async def never_wakes(seconds: float) -> None:
    await asyncio.Event().wait()  # tests drive keeper.tick() themselves


async def started(
    ttl: float = 5, interval: float = 1
) -> tuple[LeaseKeeper, MemoryKV, ManualClock, list[str]]:
    clock = ManualClock()
    kv = MemoryKV(clock)
    keeper = LeaseKeeper(kv, ttl=ttl, interval=interval, clock=clock, sleep=never_wakes)
    lost: list[str] = []
    keeper.on_lost(lost.append)
    await keeper.start()
    return keeper, kv, clock, lost


@pytest.mark.parametrize(
    ("elapsed", "valid"),
    # ttl 5 - margin 1.5 = 3.5 s window
    [
        pytest.param(0.0, True, id="just-granted"),
        pytest.param(3.49, True, id="just-inside-window"),
        pytest.param(3.5, False, id="window-closed-at-ttl-minus-margin"),
        pytest.param(4.9, False, id="before-server-expiry-but-invalid"),
    ],
)
async def test_a_lease_is_valid_only_for_ttl_minus_margin_after_grant(elapsed: float, valid: bool) -> None:
    keeper, _, clock, _ = await started()
    clock.advance(elapsed)
    assert keeper.valid() is valid
    await keeper.stop(revoke=False)


async def test_successful_keepalive_extends_from_send_time() -> None:
    keeper, _, clock, lost = await started()
    clock.advance(3.0)
    await keeper.tick()
    clock.advance(3.0)  # 6 s after grant, 3 s after the keepalive
    assert keeper.valid()
    assert keeper.deadline() == pytest.approx(clock() - 3.0 + 3.5)
    assert lost == []
    await keeper.stop(revoke=False)


async def test_unavailable_store_lapses_validity_once() -> None:
    keeper, kv, clock, lost = await started()
    kv.available = False
    for _ in range(5):
        clock.advance(1.0)
        await keeper.tick()
    assert not keeper.valid()
    assert len(lost) == 1 and "no successful keepalive" in lost[0]
    assert keeper.lost_reason == lost[0]


async def test_etcd_reporting_lease_gone_is_lost_at_once() -> None:
    keeper, kv, clock, lost = await started()
    await kv.revoke_lease(keeper.lease_id)
    await keeper.tick()
    assert not keeper.valid()
    assert len(lost) == 1 and "expired or revoked" in lost[0]
    clock.advance(1)
    await keeper.tick()
    assert len(lost) == 1


async def test_stop_with_revoke_deletes_keys_without_lost_callback() -> None:
    keeper, kv, _, lost = await started()
    await kv.put("/k", b"v", lease=keeper.lease_id)
    await keeper.stop(revoke=True)
    assert await kv.get("/k") is None
    assert not keeper.valid() and lost == []


async def test_stop_without_revoke_leaves_keys_to_expire() -> None:
    keeper, kv, clock, _ = await started()
    await kv.put("/k", b"v", lease=keeper.lease_id)
    await keeper.stop(revoke=False)
    assert not keeper.valid()
    assert await kv.get("/k") is not None
    clock.advance(5)
    assert await kv.get("/k") is None


async def test_loop_keeps_lease_alive_then_reports_outage() -> None:
    clock = ManualClock()
    kv = MemoryKV(clock)
    sleep = SteppingSleep(clock)
    keeper = LeaseKeeper(kv, ttl=5, interval=1, clock=clock, sleep=sleep)
    lost = asyncio.Event()
    keeper.on_lost(lambda reason: lost.set())
    await keeper.start()
    await kv.put("/k", b"v", lease=keeper.lease_id)
    for _ in range(50):  # the loop runs only while we yield; 20 simulated seconds
        await asyncio.sleep(0)
        if clock() >= 1020:
            break
    assert keeper.valid() and await kv.get("/k") is not None
    kv.available = False
    down_at = clock()
    async with asyncio.timeout(1):
        await lost.wait()
    # Lost exactly when the window closed: last ok keepalive + 3.5 s, not a full interval later.
    assert clock() - down_at <= 3.5
    assert max(sleep.asked) <= 1.0
    await keeper.stop(revoke=False)


@pytest.mark.parametrize(
    ("ttl", "interval"),
    [
        pytest.param(5, 0, id="zero-interval"),
        pytest.param(5, 3.5, id="interval-equals-validity-window"),
        pytest.param(2, 1, id="interval-longer-than-validity-window"),
    ],
)
def test_rejects_interval_that_cannot_keep_up(ttl: float, interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        LeaseKeeper(MemoryKV(ManualClock()), ttl=ttl, interval=interval)


async def test_start_twice_is_an_error() -> None:
    keeper, _, _, _ = await started()
    with pytest.raises(RuntimeError):
        await keeper.start()
    await keeper.stop(revoke=True)
