"""Byte sizes as operators write them ('24GiB', '1.5 GB', '4096'): flags and simulated-VRAM files."""

from __future__ import annotations

import re

UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str) -> int:
    """'24GiB', '1.5 GB', '4096' -> bytes. Raises ValueError naming the accepted forms."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in UNITS:
        raise ValueError(
            f"{text!r} is not a size; use bytes or a number with a unit like 24GiB, 512MiB, 16GB"
        )
    return int(float(match.group(1)) * UNITS[unit])
