#!/usr/bin/env python3
"""Draws the sample image `i2v up` makes its first video from (client/i2v_client/local/sample.png):
a sky gradient, a sun and two hills, 128x128, deterministic. Run from the repository root to
rewrite it; tests/unit/client/local/test_sample.py checks the committed file still matches."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 128
TARGET = Path(__file__).resolve().parents[1] / "client" / "i2v_client" / "local" / "sample.png"


def draw() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE))
    pen = ImageDraw.Draw(image)
    for y in range(SIZE):  # dawn sky: deep blue at the top to warm orange at the horizon
        t = y / (SIZE - 1)
        pen.line([(0, y), (SIZE, y)], fill=(int(40 + 200 * t), int(60 + 110 * t), int(160 - 90 * t)))
    pen.ellipse([76, 22, 106, 52], fill=(255, 226, 120))
    pen.ellipse([-40, 78, 90, 170], fill=(54, 120, 64))
    pen.ellipse([50, 88, 180, 180], fill=(34, 92, 50))
    return image


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    draw().save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
