"""Argument types for `i2v`: each refusal is one sentence with the range (argparse prefixes the
flag: "argument --fps: '0.5' is not a whole number; use 1..60, or 0 for the server's default")."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from i2v_client.text import clip, parse_states
from i2v_contract.limits import DEFAULT_LIMITS, SEED_MAX

LIMITS = DEFAULT_LIMITS


def whole(low: int, high: int | None = None, *, default: str = "", allowed: str = "") -> Callable[[str], int]:
    """A whole number in low..high (no upper bound when None); `default` names what 0 means, and
    allows it, when 0 is below `low`; `allowed` words the range when the server checks more."""
    allowed = allowed or (f"{low}..{high}" if high is not None else f"{low} or more")
    if default:
        allowed += f", or 0 for {default}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{clip(text)!r} is not a whole number; use {allowed}") from None
        in_range = low <= value and (high is None or value <= high)
        if not in_range and not (default and value == 0):
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {allowed}")
        return value

    return parse


def number(low: float, high: float | None = None, *, default: str = "") -> Callable[[str], float]:
    """A finite number in low..high; `default` as for `whole`."""
    allowed = f"{low:g}..{high:g}" if high is not None else f"more than {low:g}"
    if default:
        allowed += f", or 0 for {default}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{clip(text)!r} is not a number; use {allowed}")
        in_range = (low <= value if high is not None else low < value) and (high is None or value <= high)
        if not in_range and not (default and value == 0):
            raise argparse.ArgumentTypeError(f"{value:g} is out of range; use {allowed}")
        return value

    return parse


def states(text: str) -> list[int]:
    try:
        return parse_states(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(clip(str(exc), 200)) from None


SERVER_DEFAULT = "the server's default"
# Out of reach is refused here; the server checks the minimum and the multiple of 8 (and says so).
width = whole(
    0,
    LIMITS.max_width,
    allowed=f"{LIMITS.min_size}..{LIMITS.max_width} in steps of {LIMITS.size_multiple}",
    default=f"{SERVER_DEFAULT} ({LIMITS.default_width})",
)
height = whole(
    0,
    LIMITS.max_height,
    allowed=f"{LIMITS.min_size}..{LIMITS.max_height} in steps of {LIMITS.size_multiple}",
    default=f"{SERVER_DEFAULT} ({LIMITS.default_height})",
)
frames = whole(1, LIMITS.max_frames, default=f"{SERVER_DEFAULT} ({LIMITS.default_frames})")
fps = whole(1, LIMITS.max_fps, default=f"{SERVER_DEFAULT} ({LIMITS.default_fps})")
steps = whole(1, LIMITS.max_steps, default=f"{SERVER_DEFAULT} ({LIMITS.default_steps})")
guidance = number(
    LIMITS.min_guidance, LIMITS.max_guidance, default=f"{SERVER_DEFAULT} ({LIMITS.default_guidance:g})"
)
seed = whole(0, SEED_MAX)
limit = whole(1)
seconds = number(0.0)
