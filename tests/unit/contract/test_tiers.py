"""The tier table: which band a node's free memory puts it in, tier names and ranks."""

from __future__ import annotations

import pytest

from i2v_contract.tiers import (
    GIB,
    TIERS,
    floor_bytes,
    tier_for_free_bytes,
    tier_from_name,
    tier_name,
    tier_rank,
)
from i2v_contract.wire import common_pb2 as pb


@pytest.mark.parametrize(
    ("free", "tier"),
    [
        pytest.param(None, pb.TIER_CPU, id="no-accelerator-is-cpu"),
        pytest.param(0, pb.TIER_LT12, id="no-free-memory-is-lt12"),
        pytest.param(12 * GIB - 1, pb.TIER_LT12, id="just-under-12-gib"),
        pytest.param(12 * GIB, pb.TIER_12_16, id="exactly-12-gib"),
        pytest.param(16 * GIB, pb.TIER_16_24, id="exactly-16-gib"),
        pytest.param(23 * GIB, pb.TIER_16_24, id="inside-16-24"),
        pytest.param(24 * GIB, pb.TIER_24_40, id="exactly-24-gib"),
        pytest.param(80 * GIB, pb.TIER_GE40, id="far-above-40-gib"),
    ],
)
def test_free_memory_puts_a_node_in_the_band_whose_floor_it_reaches(free: int | None, tier: int) -> None:
    assert tier_for_free_bytes(free) == tier


def test_tier_names_and_ranks_round_trip() -> None:
    for band in TIERS:
        assert tier_from_name(tier_name(band.tier)) == band.tier
        assert floor_bytes(band.tier) == band.floor_bytes
    assert [tier_rank(b.tier) for b in TIERS] == list(range(len(TIERS)))
    assert tier_name(pb.TIER_UNSPECIFIED) == "unspecified"
    with pytest.raises(ValueError, match="known: cpu"):
        tier_from_name("huge")
    with pytest.raises(ValueError):
        tier_rank(pb.TIER_UNSPECIFIED)


def test_floors_increase_with_rank() -> None:
    floors = [b.floor_bytes for b in TIERS]
    assert floors == sorted(floors)
