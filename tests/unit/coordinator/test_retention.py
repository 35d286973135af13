"""Retention: the pure policy (durations, what is due and why)."""

from __future__ import annotations

import pytest

from i2v_contract.keys import Keys
from i2v_coordinator.retention import (
    Finished,
    RetentionPolicy,
    due,
    format_duration,
    parse_duration,
)

KEYS = Keys("/rt/")
DAY = 86400.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 7 * DAY),
        ("12h", 43200.0),
        ("30m", 1800.0),
        ("45s", 45.0),
        ("3600", 3600.0),
        ("0", 0.0),
        ("1.5h", 5400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7w", "-1d", "d", "1 d", "1e3", "7dd"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(7 * DAY, "7d"), (5400, "90m"), (7200, "2h"), (45, "45s"), (1.5, "1.5s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_policy_validates_and_describes() -> None:
    assert RetentionPolicy().describe() == "kept 7d / 100000 jobs"
    assert RetentionPolicy(0, 10).describe() == "kept no age limit / 10 jobs"
    assert not RetentionPolicy(0, 0).limited
    with pytest.raises(ValueError, match="max age must be >= 0"):
        RetentionPolicy(-1, 5)
    with pytest.raises(ValueError, match="max jobs must be >= 0"):
        RetentionPolicy(5, -1)


NOW = 100 * DAY
OLDEST = [Finished(f"k{i}", f"j{i}", NOW - (10 - i) * DAY) for i in range(5)]  # 10, 9, 8, 7, 6 days old


@pytest.mark.parametrize(
    ("policy", "total", "expected", "why"),
    [
        (RetentionPolicy(7 * DAY, 0), 5, ["j0", "j1", "j2"], "older than 7d"),  # 7 days exactly is kept
        (RetentionPolicy(30 * DAY, 0), 5, [], ""),
        (RetentionPolicy(0, 3), 5, ["j0", "j1"], "beyond the newest 3 finished jobs"),
        (
            RetentionPolicy(0, 3),
            1000,
            ["j0", "j1", "j2", "j3", "j4"],
            "beyond the newest 3",
        ),  # the page bounds it
        (RetentionPolicy(0, 0), 1000, [], ""),
        (RetentionPolicy(8.5 * DAY, 4), 5, ["j0", "j1"], ""),  # j0 over the count, j1 too old
    ],
)
def test_due(policy: RetentionPolicy, total: int, expected: list[str], why: str) -> None:
    got = due(OLDEST, total, NOW, policy)
    assert [e.entry.job_id for e in got] == expected
    assert all(why in e.reason and e.reason.startswith(policy.describe()) for e in got)


def test_due_reasons_name_the_axis() -> None:
    got = due(OLDEST, 5, NOW, RetentionPolicy(8.5 * DAY, 4))
    assert [e.reason.split(": ")[1] for e in got] == ["beyond the newest 4 finished jobs", "older than 204h"]
