"""The OOM ladder: a leaner profile, then one degradation rung (back to the first profile), then
exhausted; each answer with the reason the engine logs and sends as the retry's message."""

from __future__ import annotations

import re

import pytest

from i2v_contract.memory import I2VGEN_XL
from i2v_contract.profiles import Profile, profile_by_name, usable_profiles
from i2v_contract.wire import common_pb2
from i2v_node.degrade import Size
from i2v_node.oom import Degrade, Exhausted, OomAttempt, Retry, largest_fitting, memory_facts, next_after_oom

GIB = 1024**3
CPU = usable_profiles(False)
GPU = usable_profiles(True)
FAST, CHUNKED = profile_by_name("fast"), profile_by_name("chunked")
SIZE = Size(64, 64, 8)


def attempt(
    profile: str,
    *,
    stage: int = common_pb2.STAGE_DENOISE,
    requested: Size = SIZE,
    current: Size | None = None,
    degradations: tuple[str, ...] = (),
) -> OomAttempt:
    return OomAttempt(stage, profile_by_name(profile), requested, current or requested, degradations)


@pytest.mark.parametrize(
    ("failed", "first", "ladder", "allow_degrade", "accelerator", "expected"),
    [
        pytest.param(
            attempt("fast"),
            FAST,
            CPU,
            False,
            False,
            Retry(CHUNKED, "OOM at denoise with profile fast -> retrying with profile chunked"),
            id="fast-retries-chunked",
        ),
        pytest.param(
            attempt("tiled", stage=common_pb2.STAGE_DECODE),
            FAST,
            GPU,
            False,
            True,
            Retry(
                profile_by_name("model_offload"),
                "OOM at decode with profile tiled -> retrying with profile model_offload",
            ),
            id="gpu-ladder-goes-on-to-offload",
        ),
        pytest.param(
            attempt("tiled"),
            FAST,
            CPU,
            True,
            False,
            Retry(
                profile_by_name("group_offload_block"),
                "OOM at denoise with profile tiled -> retrying with profile group_offload_block",
            ),
            id="leaner-profile-before-any-degradation",
        ),
    ],
)
def test_retry_with_a_leaner_profile(
    failed: OomAttempt,
    first: Profile,
    ladder: tuple[Profile, ...],
    allow_degrade: bool,
    accelerator: bool,
    expected: Retry,
) -> None:
    step = next_after_oom(
        failed, first=first, ladder=ladder, allow_degrade=allow_degrade, accelerator=accelerator
    )
    assert step == expected


@pytest.mark.parametrize(
    ("failed", "first", "after", "reason"),
    [
        pytest.param(
            attempt("group_offload_leaf"),
            FAST,
            Size(48, 48, 8),
            "OOM at denoise with profile group_offload_leaf (the leanest) -> degrading "
            "resolution 64x64 -> 48x48, retrying with profile fast",
            id="resolution-first",
        ),
        pytest.param(
            attempt(
                "group_offload_leaf", current=Size(32, 32, 8), degradations=("resolution 48x48 -> 32x32",)
            ),
            CHUNKED,
            Size(32, 32, 6),
            "OOM at denoise with profile group_offload_leaf (the leanest) -> degrading "
            "frames 8 -> 6, retrying with profile chunked",
            id="frames-once-resolution-is-at-half",
        ),
    ],
)
def test_below_the_leanest_degrade_and_restart_from_the_first_profile(
    failed: OomAttempt, first: Profile, after: Size, reason: str
) -> None:
    step = next_after_oom(failed, first=first, ladder=CPU, allow_degrade=True, accelerator=False)
    assert isinstance(step, Degrade)
    assert (step.rung.before, step.rung.after, step.profile, step.reason) == (
        failed.current,
        after,
        first,
        reason,
    )


@pytest.mark.parametrize(
    ("failed", "ladder", "allow_degrade", "accelerator", "reason"),
    [
        pytest.param(
            attempt("group_offload_leaf", stage=common_pb2.STAGE_DECODE),
            CPU,
            False,
            False,
            "out of host (CPU) memory at decode for 64x64, 8 frames, even with profile group_offload_leaf "
            "(the leanest on this node); set allow_degrade to let the node lower resolution and frames",
            id="not-allowed-to-degrade",
        ),
        pytest.param(
            attempt("sequential_offload", stage=common_pb2.STAGE_ENCODE_IMAGE),
            GPU,
            False,
            True,
            "out of GPU memory at encode_image for 64x64, 8 frames, even with profile sequential_offload "
            "(the leanest on this node); set allow_degrade to let the node lower resolution and frames",
            id="gpu",
        ),
        pytest.param(
            attempt(
                "group_offload_leaf",
                current=Size(32, 32, 4),
                degradations=("resolution 64x64 -> 48x48", "frames 8 -> 6"),
            ),
            CPU,
            True,
            False,
            "out of host (CPU) memory at denoise for 64x64, 8 frames, even with profile group_offload_leaf "
            "(the leanest on this node) and after degrading (resolution 64x64 -> 48x48; frames 8 -> 6; "
            "last tried 32x32, 4 frames)",
            id="every-rung-tried",
        ),
        pytest.param(
            attempt("group_offload_leaf", requested=Size(8, 8, 1)),
            CPU,
            True,
            False,
            "out of host (CPU) memory at denoise for 8x8, 1 frames, even with profile group_offload_leaf "
            "(the leanest on this node)",
            id="allowed-but-no-rung-below",
        ),
    ],
)
def test_exhausted_says_what_was_tried(
    failed: OomAttempt, ladder: tuple[Profile, ...], allow_degrade: bool, accelerator: bool, reason: str
) -> None:
    step = next_after_oom(
        failed, first=FAST, ladder=ladder, allow_degrade=allow_degrade, accelerator=accelerator
    )
    assert step == Exhausted(reason)


@pytest.mark.parametrize(
    ("free_bytes", "pattern"),
    [
        pytest.param(
            None,
            r"^\. The memory model puts this job at \d+\.\d\d GiB without offload, \d+\.\d\d GiB with the "
            r"leanest profile: retry on a node with more free memory or request a smaller video\.$",
            id="off-an-accelerator",
        ),
        pytest.param(
            80 * GIB,
            r"; 80\.0 GiB is free here; 512x512, 16 frames \(profile fast\) would fit: retry",
            id="the-request-fits",
        ),
        pytest.param(
            GIB // 4,
            r"; 0\.2 GiB is free here; nothing down to half the size would fit: retry",
            id="nothing-fits",
        ),
    ],
)
def test_memory_facts(free_bytes: int | None, pattern: str) -> None:
    text = memory_facts(Size(512, 512, 16), arch=I2VGEN_XL, ladder=GPU, dtype_bytes=2, free_bytes=free_bytes)
    assert re.search(pattern, text), text


def test_largest_fitting_walks_down_the_degradation_ladder() -> None:
    requested = Size(1024, 1024, 16)
    full = largest_fitting(requested, 80 * GIB, arch=I2VGEN_XL, ladder=GPU[:1], dtype_bytes=2)
    assert full == "1024x1024, 16 frames (profile fast)"
    tight = largest_fitting(requested, 24 * GIB, arch=I2VGEN_XL, ladder=GPU[:1], dtype_bytes=2)
    assert tight == "768x768, 16 frames (profile fast)"
    assert largest_fitting(requested, GIB, arch=I2VGEN_XL, ladder=GPU[:1], dtype_bytes=2) is None
