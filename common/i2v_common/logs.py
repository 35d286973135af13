"""One log format for every process: time, level, logger, then the decision and its reason.

Loops that retry (etcd unreachable, a watch that keeps breaking) would repeat the same warning every
second; `RepeatFilter` lets such a line through once per interval and says, the next time it passes,
how many were held back. Every message is capped at `MAX_MESSAGE_CHARS`, and `summarize` turns a
retry loop's many failures into one phrase.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_MESSAGE_CHARS = 1000
REPEAT_INTERVAL_S = 60.0
_KEY_CHARS = 300  # a message's first characters decide whether it repeats an earlier one
_MAX_KEYS = 1000  # distinct messages remembered; older ones are forgotten first
# A standalone number (a duration, a count, a revision): not part of an address or an identifier.
_NUMBER = re.compile(r"(?<![.:\w])\d+(?:\.\d+)?(?![.:\d])")


def cap(message: str, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """`message`, cut to `max_chars` with a note of how much was cut."""
    if len(message) <= max_chars:
        return message
    return f"{message[:max_chars]}... ({len(message) - max_chars} more characters)"


def repeat_key(message: str) -> str:
    """What makes two messages the same: the text with its standalone numbers blanked out."""
    return _NUMBER.sub("#", message[:_KEY_CHARS])


def summarize(items: Sequence[str], noun: str, max_chars: int = 200, max_distinct: int = 3) -> str:
    """'30 attempts: X (30 times)': each distinct item once with its count, cut to `max_chars`, at
    most `max_distinct` of them; what a retry loop's final error says instead of every attempt."""
    counts: dict[str, int] = {}
    for item in items:
        text = item if len(item) <= max_chars else item[:max_chars] + "..."
        counts[text] = counts.get(text, 0) + 1
    shown = [f"{text} ({n} times)" if n > 1 else text for text, n in list(counts.items())[:max_distinct]]
    more = len(counts) - len(shown)
    head = f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"
    return f"{head}: {'; '.join(shown)}{f'; {more} other errors' if more > 0 else ''}"


@dataclass
class _Seen:
    since: float  # when the line last passed
    held: int = 0  # repeats held back since


class RepeatFilter(logging.Filter):
    """Caps every message; passes a WARNING-or-worse line once per `interval_s` per distinct text
    (`repeat_key`), counting the repeats in between, and notes that count on the next line that passes."""

    def __init__(
        self,
        interval_s: float = REPEAT_INTERVAL_S,
        max_chars: int = MAX_MESSAGE_CHARS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._max_chars = max_chars
        self._clock = clock
        self._seen: dict[tuple[str, int, str], _Seen] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = cap(record.getMessage(), self._max_chars)
        if record.levelno >= logging.WARNING:
            key = (record.name, record.levelno, repeat_key(message))
            with self._lock:
                note = self._repeat(key)
            if note is None:
                return False
            message += note
        record.msg, record.args = message, None
        return True

    def _repeat(self, key: tuple[str, int, str]) -> str | None:
        """None to hold the line back, else what to add to it ("" or the count held back)."""
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self._interval_s:
            seen.held += 1
            return None
        self._seen.pop(key, None)
        if len(self._seen) >= _MAX_KEYS:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = _Seen(now)
        if seen is None or not seen.held:
            return ""
        return f" [{seen.held} more like this in the last {now - seen.since:.0f} s]"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())
