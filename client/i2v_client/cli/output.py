"""The output path: checked before any work is done, and a write that fails after the job ran says
where the video is instead (the command that fetches it again, or a file it was saved to)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from i2v_client.text import clip


def _shown(path: Path) -> str:
    return clip(str(path))


def output_problem(path: Path, flag: str = "-o") -> str:
    """Why a file could not be written at `path`, in one sentence; "" when it can (missing parent
    directories are fine: they are made when the file is written)."""
    if path.is_dir():
        return f"{flag} {_shown(path)} is a directory; give a file name, such as {_shown(path / 'out.mp4')}"
    if path.exists():
        return "" if os.access(path, os.W_OK) else f"{flag} {_shown(path)} exists and is not writable"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{flag} {_shown(path)}: {_shown(ancestor)} is a file, not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{flag} {_shown(path)}: cannot create files in {_shown(ancestor)} (not writable)"
    return ""


def save_elsewhere(data: bytes, suffix: str = ".mp4") -> Path | None:
    """`data` in a new file in the temporary directory (where a failed write's video goes when
    nothing else keeps it); None when that fails too."""
    try:
        fd, name = tempfile.mkstemp(prefix="i2v-", suffix=suffix)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError:
        return None
    return Path(name)
