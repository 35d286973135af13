"""Terminal progress for a Generate stream: a redrawn bar on a TTY, plain lines otherwise."""

from __future__ import annotations

import enum
from typing import TextIO

from i2v_contract.states import stage_name
from i2v_contract.wire import common_pb2


def render(progress: common_pb2.Progress, width: int = 24) -> str:
    """One status line: stage, a bar and step i/n while denoising, elapsed time, profile."""
    parts = [f"{stage_name(progress.stage):<13}"]
    if progress.total_steps and progress.stage == common_pb2.STAGE_DENOISE:
        done = min(progress.step, progress.total_steps)
        filled = round(width * done / progress.total_steps)
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {done}/{progress.total_steps}")
    parts.append(f"{progress.elapsed_s:6.1f}s")
    if progress.profile:
        parts.append(f"profile {progress.profile}")
    if progress.message:
        parts.append(progress.message)
    return "  ".join(parts)


class Mode(enum.Enum):
    BAR = "bar"
    LINES = "lines"
    QUIET = "quiet"


def mode_for(stream: TextIO, quiet: bool) -> Mode:
    if quiet:
        return Mode.QUIET
    return Mode.BAR if stream.isatty() else Mode.LINES


def worth_a_line(progress: common_pb2.Progress, previous: common_pb2.Progress | None) -> bool:
    """In plain-line mode: every stage change, and about every tenth of the denoising steps."""
    if previous is None or progress.stage != previous.stage or progress.message:
        return True
    if not progress.total_steps:
        return False
    every = max(1, progress.total_steps // 10)
    return progress.step % every == 0 or progress.step == progress.total_steps


class ProgressDisplay:
    def __init__(self, stream: TextIO, mode: Mode) -> None:
        self._stream = stream
        self._mode = mode
        self._previous: common_pb2.Progress | None = None
        self._drawn = 0

    def update(self, progress: common_pb2.Progress) -> None:
        if self._mode is Mode.BAR:
            line = render(progress)
            self._stream.write("\r" + line + " " * max(0, self._drawn - len(line)))
            self._drawn = len(line)
            self._stream.flush()
        elif self._mode is Mode.LINES and worth_a_line(progress, self._previous):
            self._stream.write(render(progress) + "\n")
            self._stream.flush()
        self._previous = progress

    def close(self) -> None:
        if self._mode is Mode.BAR and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = 0


def stop(display: ProgressDisplay, err: TextIO, message: str, code: int) -> int:
    """End the progress line, then say why the command stops; returns `code`."""
    display.close()
    err.write(message + "\n")
    return code
