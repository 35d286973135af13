"""The one log format: time, level, logger, message, on stderr, at the level asked for."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from i2v_common.logs import RepeatFilter, setup_logging, summarize


@contextmanager
def fresh_root() -> Iterator[logging.Logger]:
    """The root logger as a new process has it, for the test's body (pytest's handlers come back)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize(
    ("level", "number"),
    [
        pytest.param("DEBUG", logging.DEBUG, id="debug"),
        pytest.param("INFO", logging.INFO, id="info"),
        pytest.param("WARNING", logging.WARNING, id="warning"),
    ],
)
def test_setup_logging_writes_one_format_to_stderr_at_the_level(level: str, number: int) -> None:
    with fresh_root() as root:
        setup_logging(level)
        assert root.level == number
        [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
    record = logging.LogRecord("i2v.test", logging.INFO, __file__, 1, "claimed %s", ("j1",), None)
    line = handler.format(record)
    assert line.endswith(" INFO i2v.test: claimed j1")
    assert line[:4].isdigit()  # starts with the time


def test_an_unknown_level_is_refused() -> None:
    with fresh_root(), pytest.raises(ValueError, match="LOUD"):
        setup_logging("LOUD")


def test_setup_logging_holds_back_repeats_on_its_handler() -> None:
    with fresh_root() as root:
        setup_logging("INFO")
        setup_logging("INFO")
        [handler] = root.handlers
    assert [type(f) for f in handler.filters] == [RepeatFilter]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def passed(log_filter: RepeatFilter, level: int, msg: str, *args: object, name: str = "i2v.t") -> str | None:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    return record.getMessage() if log_filter.filter(record) else None


def test_a_repeating_warning_passes_once_per_interval_with_the_count_held_back() -> None:
    clock = Clock()
    f = RepeatFilter(interval_s=60, clock=clock)
    msg = "etcd unreachable at start (%s); retrying in %g s"
    assert passed(f, logging.WARNING, msg, "connection refused, 29 attempts", 1.0) == (
        "etcd unreachable at start (connection refused, 29 attempts); retrying in 1 s"
    )
    for second in range(1, 60):
        clock.now = second
        assert passed(f, logging.WARNING, msg, f"connection refused, {second % 3 + 28} attempts", 1.0) is None
    clock.now = 61.0
    line = passed(f, logging.WARNING, msg, "connection refused, 30 attempts", 1.0)
    assert line == (
        "etcd unreachable at start (connection refused, 30 attempts); retrying in 1 s "
        "[59 more like this in the last 61 s]"
    )
    clock.now = 62.0
    assert passed(f, logging.WARNING, msg, "connection refused, 30 attempts", 1.0) is None


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("watch broke on 127.0.0.1:2379", "watch broke on 127.0.0.1:2380", id="other-endpoint"),
        pytest.param("etcd: connection refused", "etcd: no leader", id="other-error"),
    ],
)
def test_a_distinct_warning_passes_at_once(first: str, second: str) -> None:
    f = RepeatFilter(interval_s=60, clock=Clock())
    assert passed(f, logging.WARNING, first) == first
    assert passed(f, logging.WARNING, second) == second


def test_the_same_text_from_another_logger_or_level_is_distinct() -> None:
    f = RepeatFilter(interval_s=60, clock=Clock())
    assert passed(f, logging.WARNING, "lost") == "lost"
    assert passed(f, logging.WARNING, "lost", name="i2v.other") == "lost"
    assert passed(f, logging.ERROR, "lost") == "lost"


def test_info_lines_always_pass_but_every_line_is_capped() -> None:
    f = RepeatFilter(interval_s=60, max_chars=50, clock=Clock())
    assert passed(f, logging.INFO, "claimed %s", "j1") == "claimed j1"
    assert passed(f, logging.INFO, "claimed %s", "j1") == "claimed j1"
    line = passed(f, logging.WARNING, "x" * 4919)
    assert line == "x" * 50 + "... (4869 more characters)"


def test_remembered_messages_are_bounded() -> None:
    f = RepeatFilter(interval_s=60, clock=Clock())
    for i in range(3000):
        passed(f, logging.WARNING, f"error {chr(0x4E00 + i)}")
    assert len(f._seen) <= 1000


REFUSED = (
    "127.0.0.1:2999 UNAVAILABLE failed to connect to all addresses; last error: UNKNOWN: "
    "ipv4:127.0.0.1:2999: Failed to connect to remote host: Connection refused"
)


@pytest.mark.parametrize(
    ("failures", "summary"),
    [
        pytest.param(["a:1 UNAVAILABLE x"], "1 attempt: a:1 UNAVAILABLE x", id="one"),
        pytest.param([REFUSED] * 30, f"30 attempts: {REFUSED} (30 times)", id="one-error-thirty-times"),
        pytest.param(
            ["a:1 UNAVAILABLE x", "b:2 DEADLINE_EXCEEDED y", "a:1 UNAVAILABLE x"],
            "3 attempts: a:1 UNAVAILABLE x (2 times); b:2 DEADLINE_EXCEEDED y",
            id="two-endpoints",
        ),
        pytest.param(
            [f"e{i} UNAVAILABLE" for i in range(5)],
            "5 attempts: e0 UNAVAILABLE; e1 UNAVAILABLE; e2 UNAVAILABLE; 2 other errors",
            id="many-distinct",
        ),
        pytest.param(["z" * 500], "1 attempt: " + "z" * 200 + "...", id="long-detail-cut"),
    ],
)
def test_a_failed_call_names_each_distinct_failure_once(failures: list[str], summary: str) -> None:
    assert summarize(failures, "attempt") == summary


def test_a_call_refused_thirty_times_is_one_short_phrase() -> None:
    assert len(summarize([REFUSED] * 30, "attempt")) < 200
