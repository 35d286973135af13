"""The publishing policy: which state changes are worth a write, and when; lease timing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from i2v_common.lease import LeaseKeeper
from i2v_contract.memory import I2VGEN_XL
from i2v_contract.wire import common_pb2
from i2v_node.publishing import NodeState, lease_timing, publish_delay
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV
from tests.fakes.node import GIB, IDLE, POLICY


@pytest.mark.parametrize(
    ("published", "wanted", "last_put_at", "now", "expected"),
    [
        pytest.param(None, IDLE, 0.0, 0.0, 0.0, id="never-written-now"),
        pytest.param(IDLE, IDLE, 0.0, 0.0, None, id="unchanged"),
        pytest.param(
            IDLE, replace(IDLE, busy=True), 10.0, 10.1, 0.0, id="busy-flip-at-once-even-right-after-a-put"
        ),
        pytest.param(
            IDLE, replace(IDLE, free_bytes=IDLE.free_bytes - GIB // 2), 0.0, 9.0, None, id="jitter-below-step"
        ),
        pytest.param(
            IDLE,
            replace(IDLE, free_bytes=IDLE.free_bytes - GIB),
            10.0,
            10.1,
            pytest.approx(0.4),
            id="free-memory-move-coalesced",
        ),
        pytest.param(
            IDLE, replace(IDLE, free_bytes=IDLE.free_bytes - GIB), 10.0, 10.5, 0.0, id="interval-passed"
        ),
        pytest.param(
            IDLE,
            replace(IDLE, tier=common_pb2.TIER_12_16),
            10.0,
            10.2,
            pytest.approx(0.3),
            id="tier-coalesced",
        ),
        pytest.param(IDLE, replace(IDLE, total_bytes=48 * GIB), 0.0, 5.0, 0.0, id="total-changed"),
        pytest.param(IDLE, replace(IDLE, serving=False), 10.0, 10.1, 0.0, id="draining-at-once"),
        pytest.param(
            replace(IDLE, arch=None),
            replace(IDLE, arch=I2VGEN_XL),
            10.0,
            10.1,
            0.0,
            id="model-loaded-at-once",
        ),
    ],
)
def test_publish_delay(
    published: NodeState | None, wanted: NodeState, last_put_at: float, now: float, expected: object
) -> None:
    assert publish_delay(published, wanted, last_put_at, now, POLICY) == expected


@pytest.mark.parametrize("ttl", [pytest.param(t, id=f"ttl-{t:g}s") for t in (2.0, 5.0, 10.0, 30.0)])
def test_lease_timing_is_accepted_by_lease_keeper(ttl: float) -> None:
    interval, margin = lease_timing(ttl)
    keeper = LeaseKeeper(MemoryKV(ManualClock()), ttl, interval, margin=margin)
    assert keeper.interval == pytest.approx(ttl / 3)
    assert margin <= 1.5
