"""The event-loop lag monitor reports a blocked loop by its size and logs it."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from i2v_coordinator.looplag import monitor_loop_lag


async def test_a_blocked_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    lags: list[float] = []
    task = asyncio.create_task(monitor_loop_lag(lags.append, interval_s=0.01, warn_s=0.2))
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.WARNING, logger="i2v_coordinator.looplag"):
        time.sleep(0.3)  # noqa: ASYNC251 - the point: bulk work that does not yield
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert max(lags) >= 0.25
    assert min(lags) < 0.2
    assert any(
        "blocked for 0.3" in r.getMessage() or "blocked for 0.2" in r.getMessage() for r in caplog.records
    )
