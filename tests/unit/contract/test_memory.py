"""The peak-memory model: monotonic in the job's size, ordered along the profile ladder, and
consistent between choose_profile, required_bytes and required_tier."""

from __future__ import annotations

import re
import sys

import pytest

from i2v_contract.memory import (
    I2VGEN_XL,
    ArchSpec,
    ComponentSize,
    choose_profile,
    estimate_bytes,
    required_bytes,
    required_tier,
)
from i2v_contract.profiles import PROFILES, Offload, Profile, profile_by_name, usable_profiles
from i2v_contract.tiers import tier_rank
from i2v_contract.wire import common_pb2

GB = 10**9


def test_full_size_weights_match_published_parameter_counts() -> None:
    assert I2VGEN_XL.total_params * 2 == pytest.approx(4.98 * GB, rel=0.01)


def test_contract_import_does_not_pull_torch() -> None:
    assert "torch" not in sys.modules or "i2v_contract.memory" in sys.modules


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [((512, 512, 16), (768, 768, 16)), ((768, 768, 16), (1024, 1024, 16)), ((512, 512, 8), (512, 512, 16))],
)
def test_estimate_grows_with_resolution_and_frames(
    smaller: tuple[int, int, int], larger: tuple[int, int, int]
) -> None:
    for profile in PROFILES:
        assert estimate_bytes(*smaller, profile) < estimate_bytes(*larger, profile)


@pytest.mark.parametrize("size", [512, 768, 1024])
def test_ladder_never_gets_hungrier(size: int) -> None:
    estimates = [estimate_bytes(size, size, 16, p) for p in PROFILES]
    assert estimates == sorted(estimates, reverse=True)


@pytest.mark.parametrize(
    ("name", "low_gb", "high_gb"),
    [
        # weights (4.98 GB) + UNet activations traced at 2.78 GB + context: the 8 GB cards' 7.6-7.8 GB
        ("pipeline_default", 7.5, 9.5),
        ("sequential_offload", 0.5, 3.0),
    ],
)
def test_512p_estimates_sit_near_reference_figures(name: str, low_gb: float, high_gb: float) -> None:
    profile = (
        Profile(name, False, 1, False, False, Offload.NONE)
        if name == "pipeline_default"
        else profile_by_name(name)
    )
    assert low_gb * GB < estimate_bytes(512, 512, 16, profile) < high_gb * GB


def test_fp32_costs_more_than_fp16_and_cpu_ignores_offload() -> None:
    fast, leanest = PROFILES[0], PROFILES[-1]
    assert estimate_bytes(512, 512, 16, fast, dtype_bytes=4) > estimate_bytes(512, 512, 16, fast)
    cpu_fast = estimate_bytes(512, 512, 16, fast, accelerator=False)
    cpu_lean = estimate_bytes(512, 512, 16, leanest, accelerator=False)
    assert cpu_lean >= I2VGEN_XL.total_params * 2  # every weight stays in host memory
    assert cpu_lean <= cpu_fast


@pytest.mark.parametrize(
    ("free_gb", "expected"),
    [
        pytest.param(40.0, "fast", id="40GB-fast"),
        pytest.param(9.0, "chunked", id="9GB-chunked"),
        pytest.param(8.0, "sliced", id="8GB-sliced"),
        pytest.param(6.0, "model_offload", id="6GB-model-offload"),
        pytest.param(2.5, "group_offload_leaf", id="2.5GB-group-offload-leaf"),
        pytest.param(1.0, None, id="1GB-nothing"),
    ],
)
def test_choose_profile_picks_fastest_that_fits(free_gb: float, expected: str | None) -> None:
    chosen = choose_profile(512, 512, 16, int(free_gb * GB), usable_profiles(True)).profile
    assert (chosen.name if chosen else None) == expected


@pytest.mark.parametrize(
    ("free_gb", "reason"),
    [
        pytest.param(
            40.0, r"^profile fast for 512x512x16: needs \d+\.\d\d GB \(\+10%\), 40\.00 GB free$", id="fits"
        ),
        pytest.param(1.0, r"^no profile fits 512x512x16 in 1\.00 GB free$", id="nothing-fits"),
    ],
)
def test_choose_profile_says_why(free_gb: float, reason: str) -> None:
    fit = choose_profile(512, 512, 16, int(free_gb * GB), usable_profiles(True))
    assert re.match(reason, fit.reason), fit.reason


def test_choose_profile_without_accelerator_skips_accelerator_only_profiles() -> None:
    ladder = usable_profiles(False)
    chosen = choose_profile(512, 512, 16, 20 * GB, ladder, accelerator=False, dtype_bytes=4).profile
    assert chosen is not None and not chosen.requires_accelerator


@pytest.mark.parametrize("size", [256, 512, 768, 1024, 1280])
def test_required_bytes_is_enough_for_choose_profile(size: int) -> None:
    need = required_bytes(size, size, 16)
    chosen = choose_profile(size, size, 16, need, usable_profiles(True)).profile
    assert chosen is not None and chosen.offload is Offload.NONE
    assert choose_profile(size, size, 16, need - 2**30, PROFILES[:4]).profile is None


@pytest.mark.parametrize(
    ("size", "frames", "tier"),
    [
        (512, 16, common_pb2.TIER_LT12),
        (1024, 16, common_pb2.TIER_LT12),
        (1024, 32, common_pb2.TIER_16_24),
        (1280, 64, common_pb2.TIER_GE40),
    ],
)
def test_required_tier(size: int, frames: int, tier: int) -> None:
    assert required_tier(size, size, frames) == tier


def test_required_tier_never_decreases_with_size() -> None:
    ranks = [tier_rank(required_tier(s, s, 32)) for s in (256, 512, 768, 1024, 1280)]
    assert ranks == sorted(ranks)


def _fake_module(params: int, children: list[object] | None = None, list_type: bool = False) -> object:
    class Param:
        def numel(self) -> int:
            return params

    kids = children or []
    cls = type("ModuleList" if list_type else "Module", (), {"__iter__": lambda self: iter(kids)})
    module = cls()
    module.parameters = lambda: [Param()] + [p for k in kids for p in k.parameters()]  # type: ignore[attr-defined]
    module.children = lambda: list(kids)
    module.modules = lambda: [module] + [m for k in kids for m in k.modules()]  # type: ignore[attr-defined]
    return module


def test_from_pipeline_reads_sizes_and_widths() -> None:
    blocks = _fake_module(0, [_fake_module(30), _fake_module(50)], list_type=True)
    unet = _fake_module(0, [blocks, _fake_module(10)])
    unet.config = {"block_out_channels": (16, 32)}  # type: ignore[attr-defined]
    vae = _fake_module(7)
    vae.config = {"block_out_channels": (8, 8, 16, 16), "layers_per_block": 1, "sample_size": 64}  # type: ignore[attr-defined]
    vae.tile_sample_min_size = 64  # type: ignore[attr-defined]
    pipe = type("Pipe", (), {})()
    pipe.unet, pipe.vae = unet, vae
    pipe.text_encoder, pipe.image_encoder = _fake_module(5), _fake_module(6)
    arch = ArchSpec.from_pipeline(pipe, "tiny")
    assert arch.unet == ComponentSize(params=90, block_params=50, leaf_params=50)
    assert (arch.unet_channels, arch.vae_channels, arch.vae_scale_factor, arch.vae_tile) == (
        16,
        (8, 8),
        8,
        64,
    )
    assert arch.total_params == 90 + 5 + 6 + 7
    assert 0 < estimate_bytes(64, 64, 2, PROFILES[0], arch=arch, accelerator=False) < 10**8


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"vae": {"params": 1}}, "vae.block_params", id="component-missing-a-size"),
        pytest.param({"unet_channels": "320"}, "unet_channels", id="count-as-string"),
        pytest.param({"unet_channels": True}, "unet_channels", id="count-as-bool"),
        pytest.param({"vae_channels": [128]}, "vae_channels", id="one-vae-width"),
        pytest.param({"vae_channels": [128, -1]}, "vae_channels[1]", id="negative-vae-width"),
        pytest.param({"name": None}, "name", id="no-name"),
    ],
)
def test_arch_summary_rejects_malformed_fields(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        ArchSpec.from_dict({**I2VGEN_XL.to_dict(), **change})
