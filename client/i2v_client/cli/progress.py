"""Progress of a job as people see it: a live line on a terminal (rich), plain lines otherwise.

Both show the stage, step i/n with the rate and an ETA while denoising, the time since the command
started, and a failover pause as such ("coordinator a:1 lost (...); reconnecting to b:2…"). On a
terminal the clock keeps ticking between events; plain lines are written on news, and every
`line_every_s` without any.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from i2v_client.streams import Pause
from i2v_contract.states import stage_name
from i2v_contract.wire import common_pb2

BAR_WIDTH = 24
LINE_EVERY_S = 15.0  # plain progress lines: one at least this often while nothing happens


def label(stage: int) -> str:
    """The stage's name; before the first event there is none yet: "starting"."""
    return "starting" if stage == common_pb2.STAGE_UNSPECIFIED else stage_name(stage)


def render(
    progress: common_pb2.Progress,
    width: int = BAR_WIDTH,
    *,
    elapsed_s: float | None = None,
    details: Sequence[str] = (),
) -> str:
    """One status line: stage, a bar and step i/n while denoising, `details` (rate, ETA), elapsed
    time (the progress's own unless given), profile and note."""
    parts = [f"{label(progress.stage):<13}"]
    if progress.total_steps and progress.stage == common_pb2.STAGE_DENOISE:
        done = min(progress.step, progress.total_steps)
        filled = round(width * done / progress.total_steps)
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {done}/{progress.total_steps}")
    parts.extend(details)
    parts.append(f"{progress.elapsed_s if elapsed_s is None else elapsed_s:6.1f}s")
    if progress.profile:
        parts.append(f"profile {progress.profile}")
    if progress.message:
        parts.append(progress.message)
    return "  ".join(parts)


def queue_position(progress: Any) -> int | None:
    """The job's place in the queue (1 = next) when the server sends one: a `queue_position` field on
    Progress, which the wire does not have yet; None until it does."""
    if "queue_position" not in progress.DESCRIPTOR.fields_by_name:
        return None
    position = int(progress.queue_position)
    return position or None


def describe_pause(why: str) -> str:
    """A failover pause in words: which coordinator was lost, why, and where the client goes now."""
    if isinstance(why, Pause):
        return f"coordinator {why.lost} lost ({why.reason}); reconnecting to {why.next}…"
    return why


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Tracker:
    """What a progress display knows: the last progress, a pause, and from a clock the time since
    the command started, the denoising rate (steps/s over this run's events) and the ETA, which
    keeps counting down between events."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.started = clock()
        self.last = common_pb2.Progress()
        self.paused = ""
        self._first: tuple[int, float] | None = None  # (step, when) of this run's first denoise event
        self._latest = 0.0  # when the latest denoise event came
        self.rate: float | None = None

    def update(self, progress: common_pb2.Progress) -> None:
        now = self._clock()
        if progress.stage == common_pb2.STAGE_DENOISE and progress.total_steps:
            restarted = progress.step < self.last.step or (progress.attempt != self.last.attempt)
            if self._first is None or restarted or self.last.stage != common_pb2.STAGE_DENOISE:
                self._first, self.rate = (progress.step, now), None
            elif progress.step > self._first[0] and now > self._first[1]:
                self.rate = (progress.step - self._first[0]) / (now - self._first[1])
            self._latest = now
        self.last = progress
        self.paused = ""

    def pause(self, why: str) -> None:
        self.paused = describe_pause(why)

    def elapsed(self) -> float:
        return self._clock() - self.started

    def eta(self) -> float | None:
        p = self.last
        if p.stage != common_pb2.STAGE_DENOISE or not self.rate:
            return None
        return max(0.0, (p.total_steps - p.step) / self.rate - (self._clock() - self._latest))

    def details(self) -> list[str]:
        """Rate and ETA while denoising, or the queue position while queued."""
        position = queue_position(self.last)
        if self.last.stage == common_pb2.STAGE_QUEUED and position is not None:
            return [f"position {position} in the queue"]
        eta = self.eta()
        if self.rate is None or eta is None:
            return []
        return [f"{self.rate:.2f} steps/s", f"ETA {_duration(eta)}"]

    def note(self) -> str:
        return f"paused: {self.paused}" if self.paused else ""

    def line(self) -> str:
        line = render(self.last, elapsed_s=self.elapsed(), details=self.details())
        return f"{line}  {self.note()}" if self.paused else line


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
    """Shows a Tracker on `stream` in `mode`; use as a context manager (or close())."""

    def __init__(
        self,
        stream: TextIO,
        mode: Mode,
        clock: Callable[[], float] = time.monotonic,
        *,
        line_every_s: float | None = None,
    ) -> None:
        self._stream = stream
        self._mode = mode
        self._clock = clock
        self._tracker = Tracker(clock)
        self._previous: common_pb2.Progress | None = None
        self._written_at = clock()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._ticker: threading.Thread | None = None
        self._stopped = threading.Event()
        if mode is Mode.BAR:
            console = Console(file=stream, force_terminal=True, highlight=False)
            self._live = Live(
                console=console,
                get_renderable=self._renderable,
                refresh_per_second=4,
                transient=True,  # what stays is the outcome the command prints
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        elif mode is Mode.LINES and line_every_s:
            self._ticker = threading.Thread(target=self._tick_every, args=(line_every_s,), daemon=True)
            self._ticker.start()

    def _renderable(self) -> RenderableType:
        t, p = self._tracker, self._tracker.last
        row: list[RenderableType] = [Text(label(p.stage), style="bold")]
        if p.total_steps and p.stage == common_pb2.STAGE_DENOISE:
            row += [
                ProgressBar(total=p.total_steps, completed=p.step, width=BAR_WIDTH),
                f"{p.step}/{p.total_steps}",
            ]
        row += [*t.details(), f"elapsed {_duration(t.elapsed())}"]
        row += [f"profile {p.profile}"] if p.profile else []
        row += [p.message] if p.message and not t.paused else []
        row += [Text(t.note(), style="yellow")] if t.paused else []
        grid = Table.grid(padding=(0, 2))
        grid.add_row(*row)
        return grid

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()
        self._written_at = self._clock()

    def update(self, progress: common_pb2.Progress) -> None:
        with self._lock:
            self._tracker.update(progress)
            if self._mode is Mode.LINES and worth_a_line(progress, self._previous):
                self._write(self._tracker.line())
            self._previous = progress

    def pause(self, why: str) -> None:
        with self._lock:
            self._tracker.pause(why)
            if self._mode is Mode.LINES:
                self._write(self._tracker.line())

    def tick(self, every_s: float) -> None:
        """In plain-line mode, a line when none was written for `every_s` (the clock goes on)."""
        with self._lock:
            if self._mode is Mode.LINES and self._clock() - self._written_at >= every_s:
                self._write(self._tracker.line())

    def _tick_every(self, every_s: float) -> None:
        while not self._stopped.wait(every_s / 4):
            self.tick(every_s)

    def close(self) -> None:
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def stop(display: ProgressDisplay, err: TextIO, message: str, code: int) -> int:
    """End the progress display, then say why the command stops; returns `code`."""
    display.close()
    err.write(message + "\n")
    return code
