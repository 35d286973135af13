"""A blocking iterator of chunks (the SDK's ranged read) as an async one, read ahead by one worker
thread per download.

Starlette runs a plain iterator one `next()` per threadpool hop: the event loop waits for each
chunk before it writes it, and the read waits while the loop writes. Here a thread reads up to
`depth` chunks ahead into a queue the loop drains, so reading and writing overlap, and a chunk
costs at most one wake-up of the loop instead of a round trip through the threadpool.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass

DEPTH = 4  # chunks read ahead of the writer: 4 MiB of the coordinators' 1 MiB chunks per download


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


class _Reader:
    """The worker: reads `chunks` into `ready`, at most `depth` ahead of the consumer. It wakes the
    event loop only when the consumer waits for a chunk: a writer behind the reader (the usual case
    on a fast read) takes what is ready without a wake-up, a syscall and a GIL handover each."""

    def __init__(self, chunks: Iterator[bytes], depth: int, loop: asyncio.AbstractEventLoop) -> None:
        self.ready: collections.deque[bytes | _End] = collections.deque()
        self.room = threading.Semaphore(depth)
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None
        self._chunks = chunks
        self._loop = loop

    def _put(self, item: bytes | _End) -> bool:
        with self._lock:
            self.ready.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is None:
            return True
        try:
            self._loop.call_soon_threadsafe(_wake, waiter)
        except RuntimeError:  # the loop is gone (the process is exiting)
            return False
        return True

    def run(self) -> None:
        end = _End()
        try:
            for chunk in self._chunks:
                self.room.acquire()
                if self.stopped.is_set() or not self._put(chunk):
                    return
        except BaseException as err:  # handed to the consumer, which raises it
            end = _End(err)
        finally:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()  # a generator's cleanup (the SDK's read cancels its call) runs here, in its thread
        self._put(end)

    async def take(self) -> bytes | _End:
        while True:
            with self._lock:
                if self.ready:
                    return self.ready.popleft()
                waiter = self._waiter = self._loop.create_future()
            await waiter

    def stop(self) -> None:
        """The consumer left: let a worker waiting for room go, and have it end."""
        self.stopped.set()
        self.room.release()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def relay(chunks: Iterator[bytes], depth: int = DEPTH) -> AsyncGenerator[bytes, None]:
    """`chunks` as they are read; an exception the iterator raised is raised here, after the chunks
    before it. Closing this generator early ends the reading (at its next chunk)."""
    reader = _Reader(chunks, depth, asyncio.get_running_loop())
    threading.Thread(target=reader.run, name="i2v-gw-download", daemon=True).start()
    try:
        while True:
            item = await reader.take()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            reader.room.release()
            yield item
    finally:
        reader.stop()
