"""Event-loop lag: how late a short timer fires, the evidence that no bulk work starves the loop.

Lease keepalives, the validity clock and every stream heartbeat run on this process's event loop;
they are only as punctual as the longest stretch of work that does not yield. The monitor sleeps
`interval_s` again and again and reports how much later than asked each wake-up came; a lag over
`warn_s` is logged once per stretch, with its size, so a slow load or burst shows up by name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

INTERVAL_S = 0.1
WARN_S = 0.5


async def monitor_loop_lag(
    record: Callable[[float], None],
    *,
    interval_s: float = INTERVAL_S,
    warn_s: float = WARN_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run until cancelled, calling record(lag_seconds) after every wake-up."""
    while True:
        asked = clock()
        await asyncio.sleep(interval_s)
        lag = max(0.0, clock() - asked - interval_s)
        record(lag)
        if lag >= warn_s:
            log.warning(
                "event loop was blocked for %.2f s (lease keepalives and heartbeats were late by as much)",
                lag,
            )
