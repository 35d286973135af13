"""Optimisation profiles: frozen bundles of memory knobs, ordered from fastest to leanest.

Every knob here is quality-neutral for I2VGen-XL, except VAE tiling, which blends overlapping tiles
and changes pixels slightly (never the content); it is only reached when the untiled decode does
not fit. Quality-reducing changes (resolution, frames, steps) are not profiles: they are
degradations, applied only when the request allows them (see degrade.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Offload(enum.Enum):
    NONE = "none"
    MODEL = "model"  # accelerate model CPU offload: one component on the accelerator at a time
    GROUP_BLOCK = "group_block"  # diffusers group offload, block level
    GROUP_LEAF = "group_leaf"  # diffusers group offload, leaf level
    SEQUENTIAL = "sequential"  # accelerate sequential offload: one layer at a time


@dataclass(frozen=True)
class Profile:
    name: str
    forward_chunking: bool  # unet.enable_forward_chunking(1, 1): feed-forward in chunks
    decode_chunk_size: int  # frames per VAE decode call; 0 = all frames at once
    vae_slicing: bool  # vae.enable_slicing(): one batch item per decode
    vae_tiling: bool  # vae.enable_tiling(): decode in overlapping spatial tiles
    offload: Offload
    # Model and sequential offload raise without an accelerator; group offload runs on CPU too.
    requires_accelerator: bool = False


PROFILES: tuple[Profile, ...] = (
    Profile("fast", False, 0, False, False, Offload.NONE),
    Profile("chunked", True, 4, False, False, Offload.NONE),
    Profile("sliced", True, 1, True, False, Offload.NONE),
    Profile("tiled", True, 1, True, True, Offload.NONE),
    Profile("model_offload", True, 1, True, True, Offload.MODEL, requires_accelerator=True),
    Profile("group_offload_block", True, 1, True, True, Offload.GROUP_BLOCK),
    Profile("group_offload_leaf", True, 1, True, True, Offload.GROUP_LEAF),
    Profile("sequential_offload", True, 1, True, True, Offload.SEQUENTIAL, requires_accelerator=True),
)

_BY_NAME = {p.name: p for p in PROFILES}


def profile_by_name(name: str) -> Profile:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise ValueError(f"unknown profile {name!r}; known: {known}") from None


def usable_profiles(has_accelerator: bool) -> tuple[Profile, ...]:
    """The ladder a device can use, fastest first."""
    return tuple(p for p in PROFILES if has_accelerator or not p.requires_accelerator)


def leaner_than(profile: Profile, ladder: tuple[Profile, ...]) -> Profile | None:
    """The next profile down the ladder, or None when `profile` is the leanest."""
    names = [p.name for p in ladder]
    i = names.index(profile.name)
    return ladder[i + 1] if i + 1 < len(ladder) else None
