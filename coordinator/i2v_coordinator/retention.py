"""Retention of finished jobs, as pure decisions: which of the oldest history entries to remove now,
and why. The leader's sweeper (sweeper.py) reads the entries, calls `due` and carries it out.

A finished job is kept while it is younger than `max_age_s` AND among the newest `max_jobs`
finished jobs; 0 on an axis means no limit on it. Defaults: 7 days and 100,000 jobs, which keeps a
week of results for clients that come back for them while bounding etcd (a finished record is a
few KiB: 100,000 of them stay well inside etcd's default 2 GiB quota).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

DAY_S = 86400.0
DEFAULT_MAX_AGE_S = 7 * DAY_S
DEFAULT_MAX_JOBS = 100_000
TOMBSTONE_S = 7 * DAY_S  # how long Get/Watch of a removed job still say why it is gone

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY_S}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_duration(text: str) -> float:
    """'7d', '12h', '30m', '45s' or plain seconds -> seconds (0 allowed); ValueError otherwise."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; use a number with an optional unit s, m, h or d "
            "(e.g. 7d, 12h, 30m, 3600), or 0 for no limit"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """The largest unit that states `seconds` exactly: 604800 -> '7d', 5400 -> '90m'."""
    for unit in ("d", "h", "m"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: float = DEFAULT_MAX_AGE_S  # 0 = no age limit
    max_jobs: int = DEFAULT_MAX_JOBS  # 0 = no count limit

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_age_s) or self.max_age_s < 0:
            raise ValueError(f"retention max age must be >= 0 seconds (0 = no limit), got {self.max_age_s}")
        if self.max_jobs < 0:
            raise ValueError(f"retention max jobs must be >= 0 (0 = no limit), got {self.max_jobs}")

    @property
    def limited(self) -> bool:
        return bool(self.max_age_s or self.max_jobs)

    def describe(self) -> str:
        age = format_duration(self.max_age_s) if self.max_age_s else "no age limit"
        count = f"{self.max_jobs} jobs" if self.max_jobs else "no job count limit"
        return f"kept {age} / {count}"


@dataclass(frozen=True)
class Finished:
    """One history entry: its key, the job and when it finished (Unix seconds)."""

    key: str
    job_id: str
    finished_at: float


@dataclass(frozen=True)
class Expire:
    entry: Finished
    reason: str  # for the tombstone and the log line


def due(oldest: Sequence[Finished], total: int, now: float, policy: RetentionPolicy) -> list[Expire]:
    """Which of `oldest` (the oldest history entries, oldest first) to remove now.

    `total` is how many finished jobs exist, so the count limit knows how many are over it. The
    answer is a prefix of `oldest`: an entry is kept once it is neither over the count nor too old.
    """
    over = max(0, total - policy.max_jobs) if policy.max_jobs else 0
    kept = policy.describe()
    out = []
    for i, entry in enumerate(oldest):
        if i < over:
            out.append(Expire(entry, f"{kept}: beyond the newest {policy.max_jobs} finished jobs"))
        elif policy.max_age_s and now - entry.finished_at > policy.max_age_s:
            out.append(Expire(entry, f"{kept}: older than {format_duration(policy.max_age_s)}"))
        else:
            break
    return out
