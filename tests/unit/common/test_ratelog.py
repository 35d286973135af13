"""RateLimitedLog: one line per key per interval, the next one counting what was held back (manual clock)."""

from __future__ import annotations

import logging

import pytest

from i2v_common.ratelog import RateLimitedLog
from tests.fakes.clock import ManualClock

NAME = "i2v_test.ratelog"


def limited(clock: ManualClock, **kw: object) -> RateLimitedLog:
    return RateLimitedLog(logging.getLogger(NAME), 10.0, clock=clock, **kw)  # type: ignore[arg-type]


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == NAME]


def test_a_burst_logs_once_then_the_next_line_counts_the_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    log = limited(clock)
    with caplog.at_level(logging.WARNING, logger=NAME):
        logged = [log.log("/svc/Get", "bad request %d", i) for i in range(200)]
        clock.advance(9.9)
        logged.append(log.log("/svc/Get", "bad request %d", 200))
        clock.advance(0.1)
        logged.append(log.log("/svc/Get", "bad request %d", 201))
    assert logged.count(True) == 2 and logged[0] and logged[-1]
    assert lines(caplog) == [
        "bad request 0",
        "bad request 201 (200 more like it in the last 10 s were not logged)",
    ]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param(["a", "a", "a"], 1, id="one-key"),
        pytest.param(["a", "b", "a", "b"], 2, id="each-key-its-own-window"),
    ],
)
def test_keys_are_limited_separately(
    caplog: pytest.LogCaptureFixture, keys: list[str], expected: int
) -> None:
    log = limited(ManualClock())
    with caplog.at_level(logging.WARNING, logger=NAME):
        for key in keys:
            log.log(key, "x %s", key)
    assert len(lines(caplog)) == expected


def test_a_quiet_key_logs_without_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    log = limited(clock)
    with caplog.at_level(logging.WARNING, logger=NAME):
        log.log("k", "first")
        clock.advance(60)
        log.log("k", "second")
    assert lines(caplog) == ["first", "second"]


def test_keys_beyond_the_bound_forget_the_oldest() -> None:
    log = limited(ManualClock(), max_keys=2)
    assert log.log("a", "x") and log.log("b", "x") and log.log("c", "x")
    assert log.log("a", "x")  # "a" was forgotten, so it logs again
    assert not log.log("c", "x")


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        RateLimitedLog(logging.getLogger(NAME), 0)
