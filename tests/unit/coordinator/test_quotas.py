"""quotas.py: per-client submit buckets, queued quota and stream counts, on a fake clock."""

from __future__ import annotations

import pytest

from i2v_contract.auth import CLIENT, OPEN, Principal
from i2v_contract.reasons import Reason
from i2v_coordinator.quotas import ClientLimits, Quotas
from tests.fakes.clock import ManualClock

ALICE, BOB = Principal("alice", CLIENT), Principal("bob", CLIENT)


def test_each_client_has_its_own_bucket() -> None:
    clock = ManualClock()
    quotas = Quotas(ClientLimits(submit_rate=1.0, submit_burst=2), clock)
    assert quotas.submit(ALICE) is None
    assert quotas.submit(ALICE) is None
    refusal = quotas.submit(ALICE)
    assert refusal is not None and refusal.reason is Reason.SUBMIT_RATE
    assert refusal.retry_after_s == pytest.approx(1.0)
    assert "--submit-rate 1" in refusal.message
    assert quotas.submit(BOB) is None  # alice's submits cost bob nothing
    clock.advance(1.0)
    assert quotas.submit(ALICE) is None


@pytest.mark.parametrize(
    ("limits", "allowed"),
    [
        pytest.param(ClientLimits(), 50, id="no-limit"),
        pytest.param(ClientLimits(submit_rate=3.0), 3, id="burst-defaults-to-the-rate"),
        pytest.param(ClientLimits(submit_rate=0.5), 1, id="burst-at-least-one"),
    ],
)
def test_burst(limits: ClientLimits, allowed: int) -> None:
    quotas = Quotas(limits, ManualClock())
    assert sum(quotas.submit(OPEN) is None for _ in range(50)) == allowed


def test_queued_quota() -> None:
    quotas = Quotas(ClientLimits(max_queued=2))
    assert quotas.queued(ALICE, 1) is None
    refusal = quotas.queued(ALICE, 2)
    assert refusal is not None and refusal.reason is Reason.CLIENT_QUOTA and refusal.retry_after_s > 0
    assert Quotas().queued(ALICE, 10_000) is None


def test_streams_are_counted_per_client_and_released() -> None:
    quotas = Quotas(ClientLimits(max_streams=2))
    assert quotas.open_stream(ALICE) is None
    assert quotas.open_stream(ALICE) is None
    refusal = quotas.open_stream(ALICE)
    assert refusal is not None and refusal.reason is Reason.STREAM_LIMIT
    assert quotas.open_stream(BOB) is None
    quotas.close_stream(ALICE)
    assert quotas.streams("alice") == 1
    assert quotas.open_stream(ALICE) is None
    for _ in range(2):
        quotas.close_stream(ALICE)
    assert quotas.streams("alice") == 0
