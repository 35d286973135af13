"""relay: a blocking iterator read ahead by a worker thread, as an async iterator: every chunk in
order, the iterator's error after the chunks before it, at most `depth` chunks read ahead, and the
source closed (its cleanup run) when the reader stops early."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from i2v_gateway.relay import relay


class _Source:
    """Chunks b"0", b"1", ... as a generator does it; `fail_at` raises there; records how many it
    handed out and whether its cleanup ran."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.pulled = 0
        self.closed = threading.Event()

    def chunks(self) -> Iterator[bytes]:
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise ConnectionError(f"lost at {i}")
                self.pulled += 1
                yield str(i).encode()
        finally:
            self.closed.set()


async def collect(source: Iterator[bytes], depth: int) -> list[bytes]:
    return [chunk async for chunk in relay(source, depth)]


@pytest.mark.parametrize(
    ("count", "depth"),
    [
        pytest.param(0, 4, id="nothing"),
        pytest.param(1, 1, id="one-chunk"),
        pytest.param(200, 1, id="no-read-ahead-room-to-spare"),
        pytest.param(200, 4, id="many-chunks"),
    ],
)
async def test_every_chunk_arrives_in_order_and_the_source_is_closed(count: int, depth: int) -> None:
    source = _Source(count)
    assert await collect(source.chunks(), depth) == [str(i).encode() for i in range(count)]
    assert source.closed.wait(1.0)


async def test_the_sources_error_is_raised_after_the_chunks_before_it() -> None:
    source = _Source(10, fail_at=3)
    got: list[bytes] = []
    with pytest.raises(ConnectionError, match="lost at 3"):
        async for chunk in relay(source.chunks(), 2):
            got.append(chunk)
    assert got == [b"0", b"1", b"2"]


async def test_the_worker_reads_at_most_depth_chunks_ahead_of_a_slow_writer() -> None:
    source = _Source(100)
    body = relay(source.chunks(), 3)
    assert await anext(body) == b"0"
    await asyncio.sleep(0.2)  # time enough for the worker to run as far ahead as it may
    assert 1 + 3 <= source.pulled <= 1 + 3 + 1  # the one taken, the window, one waiting for room
    await body.aclose()


async def test_a_reader_that_stops_early_ends_the_reading_and_runs_the_sources_cleanup() -> None:
    source = _Source(1000)
    body = relay(source.chunks(), 2)
    assert [await anext(body), await anext(body)] == [b"0", b"1"]
    await body.aclose()
    assert await asyncio.to_thread(source.closed.wait, 2.0)
    pulled = source.pulled
    for worker in [t for t in threading.enumerate() if t.name == "i2v-gw-download"]:
        await asyncio.to_thread(worker.join, 2.0)
        assert not worker.is_alive()
    assert source.pulled == pulled < 10
