"""One coordinator Watch per job (and caller's token) in the gateway, fanned out to every SSE stream
and poll that asks about it.

Each watch runs the SDK's blocking `watch` in a thread of its own (it rides out coordinator
failovers itself) and hands events to the event loop; streams read them from asyncio queues. The
latest progress is kept so `GET /v1/videos/{id}` can say how far a running job is: a poll keeps the
watch alive for `linger_s` after it, a stream for as long as it is open. A watch nobody wants any
more ends at its next event or slice (`slice_s`). `close_all` (SIGTERM) ends every stream at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from i2v_client import CallError, CoordinatorClient, Pause
from i2v_contract.states import FINAL_STATES
from i2v_contract.wire import common_pb2, coordinator_pb2

log = logging.getLogger(__name__)


class Closed:
    """The gateway is shutting down: the stream should end and the client reconnect elsewhere."""


Item = coordinator_pb2.JobEvent | Pause | CallError | Closed


class _Unwanted(Exception):
    """Raised from the SDK's callback to end a watch nobody listens to."""


@dataclass
class _Watch:
    job_id: str
    queues: set[asyncio.Queue[Item]] = field(default_factory=set)
    wanted_until: float = 0.0
    progress: common_pb2.Progress | None = None
    last: coordinator_pb2.JobEvent | None = None
    done: bool = False


class Watches:
    def __init__(
        self,
        client_for: Callable[[str | None], CoordinatorClient],
        *,
        linger_s: float = 60.0,
        slice_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_for = client_for
        self._linger_s = linger_s
        self._slice_s = slice_s
        self._clock = clock
        self._watches: dict[tuple[str, str], _Watch] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    @staticmethod
    def _key(job_id: str, token: str | None) -> tuple[str, str]:
        # Callers with different tokens never share a watch (or its progress).
        return job_id, hashlib.sha256((token or "").encode()).hexdigest()

    def count(self) -> int:
        with self._lock:
            return len(self._watches)

    def _ensure(self, job_id: str, token: str | None) -> _Watch:
        """The watch of this job for this token, started if there is none. Call with the lock held."""
        key = self._key(job_id, token)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(job_id)
            client = self._client_for(token)
            thread = threading.Thread(
                target=self._run, args=(key, watch, client), name="i2v-gateway-watch", daemon=True
            )
            thread.start()
        return watch

    def progress(self, job_id: str, token: str | None) -> common_pb2.Progress | None:
        """The latest progress of a running job, watching it for `linger_s` from now."""
        if self.closed:
            return None
        with self._lock:
            watch = self._ensure(job_id, token)
            watch.wanted_until = self._clock() + self._linger_s
            return watch.progress

    def subscribe(self, job_id: str, token: str | None) -> asyncio.Queue[Item]:
        """A queue of the job's events from now (its current state first) until its final event."""
        self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Item] = asyncio.Queue()
        if self.closed:
            queue.put_nowait(Closed())
            return queue
        with self._lock:
            watch = self._ensure(job_id, token)
            if watch.last is not None:
                queue.put_nowait(watch.last)  # the watch is under way: start from where it is
            watch.queues.add(queue)
        return queue

    def unsubscribe(self, job_id: str, token: str | None, queue: asyncio.Queue[Item]) -> None:
        with self._lock:
            watch = self._watches.get(self._key(job_id, token))
            if watch is not None:
                watch.queues.discard(queue)

    def close_all(self) -> None:
        """End every stream now (the gateway is draining); new ones end at once."""
        self.closed = True
        with self._lock:
            queues = [q for w in self._watches.values() for q in w.queues]
        for queue in queues:
            self._send(queue, Closed())

    def _send(self, queue: asyncio.Queue[Item], item: Item) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def _publish(self, watch: _Watch, item: Item) -> None:
        with self._lock:
            if isinstance(item, coordinator_pb2.JobEvent):
                watch.last = item
                if item.HasField("progress"):
                    watch.progress = item.progress
            queues = list(watch.queues)
            wanted = bool(queues) or watch.wanted_until > self._clock()
        for queue in queues:
            self._send(queue, item)
        if not wanted and not self.closed:
            raise _Unwanted

    def _wanted(self, watch: _Watch) -> bool:
        with self._lock:
            return bool(watch.queues) or watch.wanted_until > self._clock()

    def _run(self, key: tuple[str, str], watch: _Watch, client: CoordinatorClient) -> None:
        try:
            while not self.closed and self._wanted(watch):
                try:
                    final = client.watch(
                        watch.job_id,
                        lambda event: self._publish(watch, event),
                        timeout=self._slice_s,
                        on_pause=lambda pause: self._publish(watch, pause),
                    )
                except _Unwanted:
                    return
                except CallError as err:
                    if err.code.name == "DEADLINE_EXCEEDED":
                        continue  # a slice ended: go on if anyone still wants the job
                    self._publish(watch, err)
                    return
                if final.state in FINAL_STATES:
                    return
        except _Unwanted:
            return
        except Exception:
            log.exception("watch of job %s failed", watch.job_id)
        finally:
            with self._lock:
                self._watches.pop(key, None)
