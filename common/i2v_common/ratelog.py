"""A log line per key at most every `interval_s`, with the count of the ones held back.

For events a caller can repeat at will (a flood of unparseable requests): the first is logged at
once, later ones within the interval only counted, and the next line after it says how many were
suppressed. The clock is passed in, so tests drive it by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    logged_at: float
    suppressed: int = 0


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0 seconds, got {interval_s}")
        self._log = logger
        self._interval = interval_s
        self._level = level
        self._clock = clock
        self._max_keys = max_keys  # keys come from a fixed set (methods); this only bounds memory
        self._windows: dict[str, _Window] = {}

    def log(self, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `key` logged less than `interval_s` ago; True when logged."""
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now - window.logged_at < self._interval:
            window.suppressed += 1
            return False
        suppressed = 0 if window is None else window.suppressed
        if window is None and len(self._windows) >= self._max_keys:
            self._windows.pop(next(iter(self._windows)))
        self._windows[key] = _Window(now)
        if suppressed:
            message += " (%d more like it in the last %.0f s were not logged)"
            args = (*args, suppressed, now - (window.logged_at if window else now))
        self._log.log(self._level, message, *args)
        return True
