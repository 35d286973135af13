"""The leader probe: only a refused connection says nothing listens."""

from __future__ import annotations

import asyncio
import socket

import pytest

from i2v_coordinator.election import ProbeOutcome
from i2v_coordinator.probe import probe_tcp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_listening_address_is_ok() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await probe_tcp(f"127.0.0.1:{port}", 1.0) is ProbeOutcome.OK
    finally:
        server.close()
        await server.wait_closed()


async def test_an_address_nothing_listens_on_is_refused() -> None:
    assert await probe_tcp(f"127.0.0.1:{free_port()}", 1.0) is ProbeOutcome.REFUSED


@pytest.mark.parametrize(
    "addr", [pytest.param("not an address", id="no port"), pytest.param(":x", id="bad port")]
)
async def test_an_unparsable_address_proves_nothing(addr: str) -> None:
    assert await probe_tcp(addr, 1.0) is ProbeOutcome.ERROR
