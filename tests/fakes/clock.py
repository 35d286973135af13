"""A clock for tests that only moves when told to."""

from __future__ import annotations


class ManualClock:
    """A monotonic clock that moves only when told to (for MemoryKV and LeaseKeeper tests)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds}s)")
        self.now += seconds
