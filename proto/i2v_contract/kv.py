"""The narrow key-value interface every etcd user goes through, its value types, and LeaseKeeper.

Two implementations: `etcd_kv.EtcdKV` (real etcd through aetcd's gRPC stubs) and
`memory_kv.MemoryKV` (in-memory fake with the same revision, lease, txn and watch semantics, driven
by an injected clock). Logic is tested against the fake; integration tests run the same behaviour
tests against both so the fake stays faithful.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

log = logging.getLogger(__name__)

CompareTarget = Literal["create", "mod", "version", "value"]
CompareOp = Literal["==", "!=", "<", ">"]

# A holder stops acting on its lease this long before the server could expire it
# (docs/architecture.md, timings).
DEFAULT_LEASE_MARGIN_S = 1.5


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class Compare:
    """One txn guard. A missing key has create/mod/version 0; a value compare on it is always false."""

    key: str
    target: CompareTarget
    op: CompareOp
    value: int | bytes

    def __post_init__(self) -> None:
        wants_bytes = self.target == "value"
        if wants_bytes != isinstance(self.value, bytes):
            kind = "bytes" if wants_bytes else "an int revision/version"
            raise ValueError(
                f"Compare on {self.key!r}: target {self.target!r} needs {kind}, got {self.value!r}"
            )


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False  # delete every key that starts with `key` (one range delete)

    def covers(self, key: str) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key


@dataclass(frozen=True)
class Page:
    """One bounded range read: items in the requested order, the store revision, and whether the
    range holds more keys beyond `limit`."""

    items: list[KeyValue]
    revision: int
    more: bool


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # store revision after the txn (unchanged when the executed branch wrote nothing)


@dataclass(frozen=True)
class WatchEvent:
    kind: Literal["put", "delete"]
    kv: KeyValue  # on delete: value b"", create_revision/version 0, mod_revision = the deletion


class Compacted(Exception):
    """The requested watch start revision is older than the store's compaction: relist, then watch."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(
            f"revision history before {compact_revision} was compacted; "
            f"range-read again and watch from the read's revision + 1"
        )
        self.compact_revision = compact_revision


class KVUnavailable(Exception):
    """No endpoint answered within the call timeout. For a write the outcome is unknown: re-read."""


class LeaseLost(Exception):
    """The lease no longer exists (expired or revoked); keys written with it are gone."""


def prefix_end(prefix: str) -> str:
    """The smallest key after every key that starts with `prefix` (etcd's range_end of a prefix)."""
    if not prefix or ord(prefix[-1]) >= 0x7F:
        raise ValueError(f"prefix {prefix!r} must be non-empty and end with an ASCII character below DEL")
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class KV(Protocol):
    async def get(self, key: str) -> KeyValue | None: ...

    async def range_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Items sorted by key, and the store revision the read saw (watch from it + 1)."""
        ...

    async def range_page(self, start: str, end: str, limit: int) -> Page:
        """At most `limit` (>= 1) items with start <= key < end, in key order.

        Ascending only: etcd pushes a limit down only for its natural key order; any sort order
        makes it read and sort every value in the range first (a newest-first read of 100,000
        finished jobs took 270 ms for 100 of them).
        """
        ...

    async def count_range(self, start: str, end: str) -> int:
        """How many keys lie in [start, end) (etcd counts its in-memory index, reads no values)."""
        ...

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult: ...

    async def put(self, key: str, value: bytes, lease: int = 0) -> int: ...

    async def delete(self, key: str) -> int: ...

    async def grant_lease(self, ttl: int) -> int: ...

    async def keepalive_once(self, lease_id: int) -> int: ...

    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke the lease and delete its keys; a lease that is already gone is not an error."""
        ...

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Events with revision >= start_revision, in revision order; raises Compacted."""
        ...

    async def close(self) -> None: ...


async def count_prefix(kv: KV, prefix: str) -> int:
    return await kv.count_range(prefix, prefix_end(prefix))


async def range_pages(kv: KV, prefix: str, page_size: int) -> AsyncIterator[Page]:
    """Every key under `prefix` in ascending pages of `page_size`, yielding to the loop between pages
    so a large range never holds the event loop (lease keepalives keep running)."""
    start, end = prefix, prefix_end(prefix)
    while True:
        page = await kv.range_page(start, end, page_size)
        yield page
        if not page.more or not page.items:
            return
        start = page.items[-1].key + "\0"
        await asyncio.sleep(0)


class LeaseKeeper:
    """Keeps one lease alive and knows, on the local monotonic clock, whether it may still act on it.

    valid() is true only while now < last_ok + ttl - margin, where last_ok is when the last
    successful keepalive was *sent* (the server's deadline can only be later). on_lost callbacks run
    once, when etcd reports the lease gone or when validity lapses; the keeper then stops.
    """

    def __init__(
        self,
        kv: KV,
        ttl: float,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        margin: float = DEFAULT_LEASE_MARGIN_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < interval < ttl - margin:
            raise ValueError(
                f"LeaseKeeper: need 0 < interval ({interval}) < ttl ({ttl}) - margin ({margin}); "
                f"lower the keepalive interval or raise the TTL"
            )
        self._kv = kv
        self.ttl = ttl
        self.interval = interval
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self.lease_id = 0
        self._last_ok = -math.inf
        self._lost_reason: str | None = None
        self._stopped = False
        self._callbacks: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Register a callback(reason) run once when the lease is lost (not on a planned stop)."""
        self._callbacks.append(callback)

    @property
    def lost_reason(self) -> str | None:
        return self._lost_reason

    def deadline(self) -> float:
        """Monotonic time at which valid() turns false unless a keepalive succeeds first."""
        return self._last_ok + self.ttl - self.margin

    def valid(self) -> bool:
        return (
            self.lease_id != 0
            and self._lost_reason is None
            and not self._stopped
            and self._clock() < self.deadline()
        )

    async def start(self) -> int:
        if self.lease_id:
            raise RuntimeError("LeaseKeeper.start called twice; create a new keeper for a new lease")
        sent = self._clock()
        self.lease_id = await self._kv.grant_lease(math.ceil(self.ttl))
        self._last_ok = sent
        log.info("lease %x granted ttl=%.1fs keepalive every %.1fs", self.lease_id, self.ttl, self.interval)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"lease-keeper-{self.lease_id:x}"
        )
        return self.lease_id

    async def tick(self) -> None:
        """One keepalive attempt plus the validity check (the loop calls this; tests call it directly)."""
        if self._lost_reason is not None or self._stopped:
            return
        if not self._check_deadline():
            return
        sent = self._clock()
        try:
            await self._kv.keepalive_once(self.lease_id)
        except LeaseLost:
            self._lose("etcd reports the lease expired or revoked")
            return
        except KVUnavailable as exc:
            log.warning(
                "lease %x keepalive failed (%s); valid for %.2fs more",
                self.lease_id,
                exc,
                self.deadline() - self._clock(),
            )
        else:
            self._last_ok = max(self._last_ok, sent)
        self._check_deadline()

    def _check_deadline(self) -> bool:
        if self._clock() < self.deadline():
            return True
        self._lose(f"no successful keepalive for {self.ttl - self.margin:.1f}s (ttl {self.ttl}s - margin)")
        return False

    def _lose(self, reason: str) -> None:
        if self._lost_reason is not None:
            return
        self._lost_reason = reason
        log.warning("lease %x lost: %s", self.lease_id, reason)
        for callback in self._callbacks:
            try:
                callback(reason)
            except Exception:
                log.exception("lease %x on_lost callback failed", self.lease_id)

    async def _run(self) -> None:
        while self._lost_reason is None and not self._stopped:
            # Wake no later than the validity deadline so on_lost fires on time.
            await self._sleep(max(0.0, min(self.interval, self.deadline() - self._clock())))
            await self.tick()

    async def stop(self, revoke: bool) -> None:
        """Stop keepalives; revoke=True deletes the lease's keys now (planned handover)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if revoke and self.lease_id and self._lost_reason is None:
            try:
                await self._kv.revoke_lease(self.lease_id)
                log.info("lease %x revoked (planned stop)", self.lease_id)
            except KVUnavailable as exc:
                log.warning(
                    "lease %x revoke failed (%s); it expires within %.1fs", self.lease_id, exc, self.ttl
                )
