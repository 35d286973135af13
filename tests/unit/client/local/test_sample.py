"""The bundled sample image is the one scripts/make_sample.py draws, and ships in the package."""

from __future__ import annotations

import importlib.resources
import runpy
from pathlib import Path

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[4] / "scripts" / "make_sample.py"


def test_the_committed_sample_matches_its_script() -> None:
    drawn = runpy.run_path(str(SCRIPT))["draw"]()
    with importlib.resources.as_file(importlib.resources.files("i2v_client.local") / "sample.png") as path:
        assert path.stat().st_size < 4096
        with Image.open(path) as committed:
            assert committed.format == "PNG" and committed.size == (128, 128)
            assert committed.convert("RGB").tobytes() == drawn.tobytes()
