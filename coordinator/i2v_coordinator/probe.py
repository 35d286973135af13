"""The standby's probe of the leader's address: a TCP connect, whose outcome election.py weighs.

Only a refused connection (nothing listens) is evidence of a crashed leader; a timeout or any other
error proves nothing (a paused process, a partition, a slow network).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Awaitable, Callable

from i2v_contract.addresses import parse_address
from i2v_coordinator.election import ProbeOutcome

Probe = Callable[[str, float], Awaitable[ProbeOutcome]]

PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 0.1


async def probe_tcp(addr: str, wait_s: float) -> ProbeOutcome:
    """TCP connect to `addr`: REFUSED only for ECONNREFUSED (nothing listens); a timeout proves nothing."""
    try:
        host, port = parse_address(addr)
    except ValueError:
        return ProbeOutcome.ERROR
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait_s)
    except TimeoutError:
        return ProbeOutcome.TIMEOUT
    except ConnectionRefusedError:
        return ProbeOutcome.REFUSED
    except OSError as err:
        return ProbeOutcome.REFUSED if err.errno == errno.ECONNREFUSED else ProbeOutcome.ERROR
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeOutcome.OK
