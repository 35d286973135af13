"""What the engine does after an attempt ran out of memory: the OOM ladder as a pure decision.

A leaner profile first. Below the leanest, if the request allows it, one degradation rung
(degrade.py), restarting from the caller's first profile: a smaller job usually fits a faster
profile again. Otherwise the job is exhausted. Every answer carries its reason in words: the engine
logs it, and a retry's reason is also the progress message the caller sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from i2v_contract import memory
from i2v_contract.memory import ArchSpec
from i2v_contract.profiles import Profile, leaner_than
from i2v_contract.states import stage_name
from i2v_node import degrade
from i2v_node.degrade import Degradation, Size

_GIB = 1024**3


@dataclass(frozen=True)
class Retry:
    """Run the same size again with a leaner profile."""

    profile: Profile
    reason: str


@dataclass(frozen=True)
class Degrade:
    """Run a smaller job (one rung down), starting again from the caller's first profile."""

    rung: Degradation
    profile: Profile
    reason: str


@dataclass(frozen=True)
class Exhausted:
    """Nothing is left to try: no leaner profile and no allowed degradation."""

    reason: str


@dataclass(frozen=True)
class OomAttempt:
    """The attempt that ran out of memory, and what led to it."""

    stage: int  # common_pb2.Stage value that was running
    profile: Profile
    requested: Size
    current: Size  # the size that was tried (smaller than requested after degradations)
    degradations: tuple[str, ...] = ()  # descriptions of the rungs already taken


def next_after_oom(
    attempt: OomAttempt,
    *,
    first: Profile,
    ladder: Sequence[Profile],
    allow_degrade: bool,
    accelerator: bool,
) -> Retry | Degrade | Exhausted:
    """The next step after `attempt` ran out of memory with the profile `ladder` of this node."""
    stage = stage_name(attempt.stage)
    profile = attempt.profile
    leaner = leaner_than(profile, tuple(ladder))
    if leaner is not None:
        return Retry(
            leaner, f"OOM at {stage} with profile {profile.name} -> retrying with profile {leaner.name}"
        )
    rung = degrade.next_degradation(attempt.requested, attempt.current) if allow_degrade else None
    if rung is not None:
        return Degrade(
            rung,
            first,
            f"OOM at {stage} with profile {profile.name} (the leanest) -> degrading "
            f"{rung.description}, retrying with profile {first.name}",
        )
    return Exhausted(_exhausted(attempt, allow_degrade=allow_degrade, accelerator=accelerator))


def _exhausted(attempt: OomAttempt, *, allow_degrade: bool, accelerator: bool) -> str:
    where = "GPU" if accelerator else "host (CPU)"
    asked, tried = attempt.requested, attempt.current
    text = (
        f"out of {where} memory at {stage_name(attempt.stage)} for {asked.width}x{asked.height}, "
        f"{asked.frames} frames, even with profile {attempt.profile.name} (the leanest on this node)"
    )
    if attempt.degradations:
        last = f"{tried.width}x{tried.height}, {tried.frames} frames"
        text += f" and after degrading ({'; '.join(attempt.degradations)}; last tried {last})"
    elif not allow_degrade:
        text += "; set allow_degrade to let the node lower resolution and frames"
    return text


def memory_facts(
    requested: Size,
    *,
    arch: ArchSpec,
    ladder: Sequence[Profile],
    dtype_bytes: int,
    free_bytes: int | None,
) -> str:
    """What the memory model says about an exhausted job, to end its message; `free_bytes` is the
    accelerator's free memory (None off an accelerator: nothing there to compare with)."""
    size = (requested.width, requested.height, requested.frames)
    need = memory.required_bytes(*size, arch=arch)
    least = memory.minimum_bytes(*size, arch=arch)
    text = (
        f". The memory model puts this job at {need / _GIB:.2f} GiB without offload, "
        f"{least / _GIB:.2f} GiB with the leanest profile"
    )
    if free_bytes is not None:
        fit = largest_fitting(requested, free_bytes, arch=arch, ladder=ladder, dtype_bytes=dtype_bytes)
        text += f"; {free_bytes / _GIB:.1f} GiB is free here"
        text += f"; {fit} would fit" if fit else "; nothing down to half the size would fit"
    return text + ": retry on a node with more free memory or request a smaller video."


def largest_fitting(
    requested: Size, free_bytes: int, *, arch: ArchSpec, ladder: Sequence[Profile], dtype_bytes: int
) -> str | None:
    """The requested size or the first rung below it that some accelerator profile fits, in words."""
    for size in (requested, *(rung.after for rung in degrade.ladder(requested))):
        fit = memory.choose_profile(
            size.width,
            size.height,
            size.frames,
            free_bytes,
            tuple(ladder),
            arch=arch,
            dtype_bytes=dtype_bytes,
            accelerator=True,
        )
        if fit.profile is not None:
            return f"{size.width}x{size.height}, {size.frames} frames (profile {fit.profile.name})"
    return None
