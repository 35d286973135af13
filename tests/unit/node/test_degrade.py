"""The quality-degradation ladder: resolution first, then frames, never below half the request."""

import itertools

import pytest

from i2v_node.degrade import FRAMES, RESOLUTION, Degradation, Size, ladder, next_degradation


@pytest.mark.parametrize(
    ("requested", "current", "kind", "after"),
    [
        (Size(512, 512, 16), Size(512, 512, 16), RESOLUTION, Size(384, 384, 16)),
        (Size(512, 512, 16), Size(384, 384, 16), RESOLUTION, Size(288, 288, 16)),
        (Size(512, 512, 16), Size(288, 288, 16), RESOLUTION, Size(256, 256, 16)),  # clamped to half
        (Size(512, 512, 16), Size(256, 256, 16), FRAMES, Size(256, 256, 12)),
        (Size(512, 512, 16), Size(256, 256, 12), FRAMES, Size(256, 256, 9)),
        (Size(512, 512, 16), Size(256, 256, 9), FRAMES, Size(256, 256, 8)),
        (Size(1280, 704, 16), Size(1280, 704, 16), RESOLUTION, Size(960, 528, 16)),
        (Size(1280, 704, 16), Size(720, 392, 16), RESOLUTION, Size(640, 352, 16)),
        (Size(64, 64, 8), Size(64, 64, 8), RESOLUTION, Size(48, 48, 8)),
        (Size(64, 64, 3), Size(32, 32, 3), FRAMES, Size(32, 32, 2)),
    ],
)
def test_next_rung(requested, current, kind, after):
    rung = next_degradation(requested, current)
    assert rung is not None
    assert (rung.kind, rung.before, rung.after) == (kind, current, after)
    assert rung.after.width % 8 == 0 and rung.after.height % 8 == 0


@pytest.mark.parametrize(
    ("requested", "current"),
    [
        (Size(512, 512, 16), Size(256, 256, 8)),
        (Size(64, 64, 2), Size(32, 32, 2)),
        (Size(8, 8, 1), Size(8, 8, 1)),
    ],
)
def test_bottom_of_ladder(requested, current):
    assert next_degradation(requested, current) is None


def test_ladder_is_ordered_and_bounded():
    rungs = ladder(Size(768, 512, 24))
    kinds = [r.kind for r in rungs]
    assert kinds == sorted(kinds, key=[RESOLUTION, FRAMES].index)  # every resolution rung first
    assert rungs[-1].after == Size(384, 256, 12)
    for prev, nxt in itertools.pairwise(rungs):
        assert nxt.before == prev.after


@pytest.mark.parametrize(
    ("kind", "after", "text"),
    [
        (RESOLUTION, Size(48, 40, 8), "resolution 64x56 -> 48x40"),
        (FRAMES, Size(64, 56, 6), "frames 8 -> 6"),
    ],
)
def test_description(kind, after, text):
    assert Degradation(kind, Size(64, 56, 8), after).description == text
