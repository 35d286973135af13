"""Quality degradations, tried only when the request allows them and even the leanest profile ran
out of memory. Pure: sizes in, the next smaller size out.

Order follows the knobs' memory effect (docs/decisions.md, steps): resolution >> frames. Each rung multiplies
one dimension by 3/4 and never goes below half of what was requested (below that the result is
no longer the video that was asked for). Width and height shrink together, stay multiples of 8
(the pipeline's requirement) and keep their aspect ratio up to that rounding. Steps are not a
rung: the denoising loop reuses the same buffers every step, so fewer steps cost quality and
save time but not one byte of peak memory; retrying an OOM with fewer steps would fail the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

RESOLUTION, FRAMES = "resolution", "frames"
_FACTOR_NUM, _FACTOR_DEN = 3, 4
_MIN_FRAMES = 2  # I2VGen-XL's frame-position conditioning divides by frames - 1


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class Degradation:
    kind: str  # RESOLUTION | FRAMES
    before: Size
    after: Size

    @property
    def description(self) -> str:
        b, a = self.before, self.after
        if self.kind == RESOLUTION:
            return f"resolution {b.width}x{b.height} -> {a.width}x{a.height}"
        return f"frames {b.frames} -> {a.frames}"


def _half_up(value: int, multiple: int = 1) -> int:
    half = -(-value // 2)
    return -(-half // multiple) * multiple


def _shrink(value: int, floor: int, multiple: int = 1) -> int:
    smaller = (value * _FACTOR_NUM // _FACTOR_DEN) // multiple * multiple
    return max(floor, smaller)


def next_degradation(requested: Size, current: Size) -> Degradation | None:
    """The next rung below `current` for a request of `requested`, or None when none is left."""
    width = _shrink(current.width, _half_up(requested.width, 8), 8)
    height = _shrink(current.height, _half_up(requested.height, 8), 8)
    if width < current.width and height < current.height:
        return Degradation(RESOLUTION, current, Size(width, height, current.frames))
    frames = _shrink(current.frames, max(_MIN_FRAMES, _half_up(requested.frames)))
    if frames < current.frames:
        return Degradation(FRAMES, current, Size(current.width, current.height, frames))
    return None


def ladder(requested: Size) -> tuple[Degradation, ...]:
    """Every rung from `requested` down, in the order they are tried."""
    rungs: list[Degradation] = []
    current = requested
    while (step := next_degradation(requested, current)) is not None:
        rungs.append(step)
        current = step.after
    return tuple(rungs)
