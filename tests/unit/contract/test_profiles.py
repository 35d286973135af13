"""The profile ladder: its order, lookup by name, and the ladder a device without an accelerator gets."""

from __future__ import annotations

import pytest

from i2v_contract.profiles import PROFILES, Offload, leaner_than, profile_by_name, usable_profiles


def test_ladder_order_and_lookup() -> None:
    assert PROFILES[0].offload is Offload.NONE and PROFILES[-1].offload is Offload.SEQUENTIAL
    assert profile_by_name("tiled").vae_tiling
    with pytest.raises(ValueError, match="known: fast"):
        profile_by_name("turbo")


@pytest.mark.parametrize(
    "accelerator",
    [
        pytest.param(True, id="accelerator-gets-every-profile"),
        pytest.param(False, id="cpu-skips-accelerator-only-profiles"),
    ],
)
def test_leaner_than_walks_the_usable_ladder_in_order(accelerator: bool) -> None:
    ladder = usable_profiles(accelerator)
    assert all(accelerator or not p.requires_accelerator for p in ladder)
    walked = [ladder[0]]
    while (nxt := leaner_than(walked[-1], ladder)) is not None:
        walked.append(nxt)
    assert tuple(walked) == ladder
    assert (len(ladder) == len(PROFILES)) is accelerator
