"""What /proc says about a process: alive or not, whether it is still the one we started (its start
time, so a reused pid is never signalled), its CPU time and resident memory. Parsing is pure; the
readers return None for a process that is gone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Stat:
    state: str  # R, S, D, Z (zombie: exited, not yet reaped), ...
    utime: int  # clock ticks
    stime: int
    start: int  # clock ticks after boot: with the pid, names one process for good

    @property
    def cpu_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def running(self) -> bool:
        return self.state not in ("Z", "X")


def parse_stat(text: str) -> Stat:
    """/proc/PID/stat; the command name (field 2) may hold spaces and parentheses, so fields are
    counted from the last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime, stime and starttime are fields 14, 15 and 22
    return Stat(fields[0], int(fields[11]), int(fields[12]), int(fields[19]))


def parse_rss(status: str) -> int:
    """Resident bytes from /proc/PID/status (VmRSS, in kB); 0 when absent (a zombie has none)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def read_stat(pid: int, proc: Path = PROC) -> Stat | None:
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (OSError, IndexError, ValueError):
        return None


def is_ours(pid: int, start: int, proc: Path = PROC) -> bool:
    """The process `pid` that started at `start` still runs (not reused, not a zombie)."""
    stat = read_stat(pid, proc)
    return stat is not None and stat.running and stat.start == start


def rss_bytes(pid: int, proc: Path = PROC) -> int:
    try:
        return parse_rss((proc / str(pid) / "status").read_text())
    except OSError:
        return 0
