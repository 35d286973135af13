"""The one log format: time, level, logger, message, on stderr, at the level asked for."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from i2v_common.logs import setup_logging


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
