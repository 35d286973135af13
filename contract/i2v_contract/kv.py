"""The narrow key-value interface every etcd user goes through, and its value types.

Two implementations: `i2v_common.etcd_kv.EtcdKV` (real etcd through aetcd's gRPC stubs) and
`tests.fakes.memory_kv.MemoryKV` (in-memory fake with the same revision, lease, txn and watch
semantics, driven by an injected clock). Logic is tested against the fake; integration tests run
the same behaviour tests against both so the fake stays faithful.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

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


class KVDenied(KVUnavailable):
    """etcd refused this process's credentials or permissions (wrong password, no role on the key
    prefix, no client certificate): retrying does not help until an operator fixes them."""


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
