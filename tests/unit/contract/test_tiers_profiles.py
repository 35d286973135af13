"""The tier table and the profile ladder."""

from __future__ import annotations

import pytest

from i2v_contract.profiles import PROFILES, Offload, leaner_than, profile_by_name, usable_profiles
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
        (None, pb.TIER_CPU),
        (0, pb.TIER_LT12),
        (12 * GIB - 1, pb.TIER_LT12),
        (12 * GIB, pb.TIER_12_16),
        (16 * GIB, pb.TIER_16_24),
        (23 * GIB, pb.TIER_16_24),
        (24 * GIB, pb.TIER_24_40),
        (80 * GIB, pb.TIER_GE40),
    ],
)
def test_tier_for_free_bytes(free: int | None, tier: int) -> None:
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


def test_ladder_order_and_lookup() -> None:
    assert PROFILES[0].offload is Offload.NONE and PROFILES[-1].offload is Offload.SEQUENTIAL
    assert profile_by_name("tiled").vae_tiling
    with pytest.raises(ValueError, match="known: fast"):
        profile_by_name("turbo")


@pytest.mark.parametrize("accelerator", [True, False])
def test_usable_profiles_and_leaner_than(accelerator: bool) -> None:
    ladder = usable_profiles(accelerator)
    assert all(accelerator or not p.requires_accelerator for p in ladder)
    walked = [ladder[0]]
    while (nxt := leaner_than(walked[-1], ladder)) is not None:
        walked.append(nxt)
    assert tuple(walked) == ladder
    assert (len(ladder) == len(PROFILES)) is accelerator
