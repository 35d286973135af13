"""ProgressHub: per-job fan-out of JobEvents from the leader's loop to the client streams watching it.

Each watcher has a bounded buffer. A slow watcher loses its oldest progress events first (the next
one supersedes them anyway), then its oldest state events; the final event is kept apart and is never
dropped, so every watcher that stays connected learns how its job ended. When the coordinator stops
leading, `close_all` ends every watcher with `HubClosed`, and clients re-attach to the new leader.
A wait for the next event may be cancelled (e.g. by `asyncio.timeout`) without losing or reordering
anything, so a stream can send keep-alives while its job is quiet, without polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

from i2v_contract.wire import coordinator_pb2

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 64


class HubClosed(Exception):
    """The hub stopped serving (leadership lost or shutdown); the message says what to do."""


class Subscription:
    """One watcher's view of one job: iterate it for events; it ends after the final event."""

    def __init__(self, hub: ProgressHub, job_id: str, capacity: int) -> None:
        self.job_id = job_id
        self.dropped = 0
        self._hub = hub
        self._capacity = capacity
        self._items: deque[coordinator_pb2.JobEvent] = deque()
        self._final: coordinator_pb2.JobEvent | None = None
        self._closed: HubClosed | None = None
        self._ended = False  # the final event was handed out
        self._wakeup = asyncio.Event()

    def push(self, event: coordinator_pb2.JobEvent, *, final: bool) -> None:
        if self._final is not None or self._ended or self._closed is not None:
            return
        if final:
            self._final = event
        else:
            if len(self._items) >= self._capacity:
                self._drop_one()
            self._items.append(event)
        self._wakeup.set()

    def _drop_one(self) -> None:
        for i, item in enumerate(self._items):
            if item.HasField("progress"):
                del self._items[i]
                break
        else:
            self._items.popleft()
        self.dropped += 1

    def close(self, error: HubClosed) -> None:
        if self._closed is None:
            self._closed = error
            self._wakeup.set()

    def unsubscribe(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __aiter__(self) -> AsyncIterator[coordinator_pb2.JobEvent]:
        return self

    async def __anext__(self) -> coordinator_pb2.JobEvent:
        """The next event in order; StopAsyncIteration after the final one, HubClosed once closed.

        Not an async generator on purpose: cancelling a generator's wait would end it, while a
        cancelled wait here only leaves the queue as it was (nothing is taken across an await).
        """
        while True:
            if self._items:
                return self._items.popleft()
            if self._final is not None:
                final, self._final = self._final, None
                self._ended = True
                return final
            if self._ended:
                raise StopAsyncIteration
            if self._closed is not None:
                raise self._closed
            self._wakeup.clear()
            await self._wakeup.wait()


class ProgressHub:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"ProgressHub capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._subs: dict[str, set[Subscription]] = {}
        self._closed: HubClosed | None = None

    def open(self) -> None:
        """Serve again (after close_all), e.g. when this coordinator leads again."""
        self._closed = None

    def subscribe(self, job_id: str) -> Subscription:
        sub = Subscription(self, job_id, self._capacity)
        if self._closed is not None:
            sub.close(self._closed)
        else:
            self._subs.setdefault(job_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.job_id]

    def watchers(self, job_id: str) -> int:
        return len(self._subs.get(job_id, ()))

    def publish(self, job_id: str, event: coordinator_pb2.JobEvent, *, final: bool = False) -> None:
        for sub in list(self._subs.get(job_id, ())):
            sub.push(event, final=final)
        if final:
            self._subs.pop(job_id, None)

    def close_all(self, message: str) -> None:
        """End every watcher with HubClosed(message); new subscriptions fail until open()."""
        self._closed = HubClosed(message)
        count = sum(len(s) for s in self._subs.values())
        for subs in self._subs.values():
            for sub in subs:
                sub.close(self._closed)
        self._subs.clear()
        if count:
            log.info("closed %d watch streams: %s", count, message)
