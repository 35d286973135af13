"""VRAM tiers: bands of free accelerator memory a node can offer a job.

The bands follow the cards people run I2VGen-XL on (practitioners' published figures; see
benchmarks/memory_model.py): 8 GB cards (RTX 2070/3050) run 512p only with offload, 12 GB
(RTX 3060) runs 512p, 16 GB runs 768p in fp16, 24 GB (RTX 3090/4090) runs 1024p, 40/48/80 GB
data-centre cards run anything. The band a node is in comes from its free (not total) memory,
probed at start and before each job.
"""

from __future__ import annotations

from dataclasses import dataclass

from i2v_contract.wire import common_pb2

GIB = 1024**3


@dataclass(frozen=True)
class TierBand:
    tier: int  # common_pb2.Tier value
    name: str
    floor_bytes: int  # least free memory a node in this tier has


# Ordered smallest first. The CPU tier has no floor: a node without an accelerator.
TIERS: tuple[TierBand, ...] = (
    TierBand(common_pb2.TIER_CPU, "cpu", 0),
    TierBand(common_pb2.TIER_LT12, "lt12", 0),
    TierBand(common_pb2.TIER_12_16, "12-16", 12 * GIB),
    TierBand(common_pb2.TIER_16_24, "16-24", 16 * GIB),
    TierBand(common_pb2.TIER_24_40, "24-40", 24 * GIB),
    TierBand(common_pb2.TIER_GE40, "ge40", 40 * GIB),
)

_BY_TIER = {band.tier: band for band in TIERS}


def tier_for_free_bytes(free_bytes: int | None) -> int:
    """The tier of a node with `free_bytes` of free accelerator memory; None means no accelerator."""
    if free_bytes is None:
        return common_pb2.TIER_CPU
    chosen: int = common_pb2.TIER_LT12
    for band in TIERS[2:]:
        if free_bytes >= band.floor_bytes:
            chosen = band.tier
    return chosen


def tier_name(tier: int) -> str:
    band = _BY_TIER.get(tier)
    return band.name if band else "unspecified"


def tier_from_name(name: str) -> int:
    for band in TIERS:
        if band.name == name:
            return band.tier
    raise ValueError(f"unknown tier {name!r}; known: {', '.join(b.name for b in TIERS)}")


def tier_rank(tier: int) -> int:
    """Position in the ordering (CPU lowest): a node of rank r fits jobs that need rank <= r."""
    for i, band in enumerate(TIERS):
        if band.tier == tier:
            return i
    raise ValueError(f"unknown tier value {tier}")


def floor_bytes(tier: int) -> int:
    return _BY_TIER[tier].floor_bytes
