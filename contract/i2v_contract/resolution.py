"""Resolution classes: the bounded label that durations are broken down by, never the raw size.

A job's class is the smallest square whose pixel count its frame fits in: memory and time grow with
the pixel count, so 512x512, 384x640 and 64x64 (a test job) are all "512p". Above 1024x1024 pixels
(up to the limits' 1280x1280) is "other".
"""

from __future__ import annotations

# (name, most pixels per frame), smallest first; anything larger is OTHER.
CLASSES: tuple[tuple[str, int], ...] = (
    ("512p", 512 * 512),
    ("768p", 768 * 768),
    ("1024p", 1024 * 1024),
)
OTHER = "other"
NAMES: tuple[str, ...] = (*(name for name, _ in CLASSES), OTHER)


def resolution_class(width: int, height: int) -> str:
    """'512p', '768p', '1024p' or 'other' for a frame of width x height pixels."""
    pixels = max(0, width) * max(0, height)
    for name, most in CLASSES:
        if pixels <= most:
            return name
    return OTHER
