"""In-memory KV with etcd's semantics for what the project uses, driven by an injected clock.

Faithful to etcd on: one global revision bumped once per write txn (reads and no-op deletes do not
bump it), create/mod revision and version per key, a value compare on a missing key failing, leases
whose keys are deleted in one revision on expiry or revoke, watches from any retained revision, and
compaction making older watch starts raise Compacted. Leases expire lazily on every call once the
clock passes their deadline; `expire()` forces it. `available = False` makes every call raise
KVUnavailable, to test outage handling.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from i2v_contract.kv import (
    Compacted,
    Compare,
    Delete,
    KeyValue,
    KVUnavailable,
    LeaseLost,
    Page,
    Put,
    TxnResult,
    WatchEvent,
)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass
class _Lease:
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class MemoryKV:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._revision = 1  # an empty etcd reports revision 1
        self._compact_revision = 0
        self._data: dict[str, KeyValue] = {}
        self._leases: dict[int, _Lease] = {}
        self._next_lease = 0x1000
        self._history: list[tuple[int, WatchEvent]] = []
        self._changed = asyncio.Event()
        self.available = True
        self.closed = False

    @property
    def revision(self) -> int:
        return self._revision

    def _enter(self) -> None:
        if not self.available:
            raise KVUnavailable("memory KV marked unavailable")
        self.expire()

    def expire(self) -> None:
        """Delete the keys of every lease whose deadline the clock has passed, oldest deadline first."""
        now = self._clock()
        for lease_id, lease in sorted(self._leases.items(), key=lambda item: item[1].deadline):
            if lease.deadline <= now:
                self._drop_lease(lease_id)

    def _drop_lease(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id)
        live = sorted(k for k in lease.keys if k in self._data)
        if live:
            self._commit([Delete(k) for k in live])

    def _commit(self, ops: Sequence[Put | Delete]) -> int:
        """Apply writes at one new revision (none if nothing changes); return the store revision."""
        events: list[WatchEvent] = []
        rev = self._revision + 1
        for op in ops:
            if isinstance(op, Put):
                old = self._data.get(op.key)
                if old is not None and old.lease and old.lease in self._leases:
                    self._leases[old.lease].keys.discard(op.key)
                kv = KeyValue(
                    key=op.key,
                    value=op.value,
                    create_revision=old.create_revision if old else rev,
                    mod_revision=rev,
                    version=old.version + 1 if old else 1,
                    lease=op.lease,
                )
                self._data[op.key] = kv
                if op.lease:
                    self._leases[op.lease].keys.add(op.key)
                events.append(WatchEvent("put", kv))
            else:
                hit = sorted(k for k in self._data if op.covers(k)) if op.prefix else [op.key]
                for key in (k for k in hit if k in self._data):
                    gone = self._data.pop(key)
                    if gone.lease in self._leases:
                        self._leases[gone.lease].keys.discard(key)
                    events.append(WatchEvent("delete", KeyValue(key, b"", 0, rev, 0, 0)))
        if events:
            self._revision = rev
            self._history.extend((rev, ev) for ev in events)
            self._changed.set()
            self._changed = asyncio.Event()
        return self._revision

    def _check_ops(self, ops: Sequence[Put | Delete]) -> None:
        keys = [op.key for op in ops]
        ranges = [op for op in ops if isinstance(op, Delete) and op.prefix]
        overlap = any(r.covers(op.key) for r in ranges for op in ops if isinstance(op, Put))
        if len(set(keys)) != len(keys) or overlap:
            raise ValueError(f"txn writes a key more than once: {keys}; etcd rejects duplicate keys")
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise LeaseLost(f"lease {op.lease:x} not found (expired or revoked)")

    def _holds(self, cmp: Compare) -> bool:
        kv = self._data.get(cmp.key)
        if cmp.target == "value":
            return kv is not None and _OPS[cmp.op](kv.value, cmp.value)
        actual = 0
        if kv is not None:
            actual = {"create": kv.create_revision, "mod": kv.mod_revision, "version": kv.version}[cmp.target]
        return _OPS[cmp.op](actual, cmp.value)

    async def get(self, key: str) -> KeyValue | None:
        self._enter()
        return self._data.get(key)

    async def range_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._enter()
        items = [kv for key, kv in sorted(self._data.items()) if key.startswith(prefix)]
        return items, self._revision

    async def range_page(self, start: str, end: str, limit: int) -> Page:
        self._enter()
        if limit < 1:
            raise ValueError(f"range limit must be >= 1, got {limit}")
        items = [kv for key, kv in sorted(self._data.items()) if start <= key < end]
        return Page(items[:limit], self._revision, len(items) > limit)

    async def count_range(self, start: str, end: str) -> int:
        self._enter()
        return sum(1 for key in self._data if start <= key < end)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        self._enter()
        self._check_ops(success)
        self._check_ops(failure)
        ok = all(self._holds(c) for c in compares)
        return TxnResult(ok, self._commit(success if ok else failure))

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        self._enter()
        op = Put(key, value, lease)
        self._check_ops([op])
        return self._commit([op])

    async def delete(self, key: str) -> int:
        self._enter()
        return self._commit([Delete(key)])

    async def grant_lease(self, ttl: int) -> int:
        self._enter()
        if ttl <= 0:
            raise ValueError(f"lease ttl must be a positive number of seconds, got {ttl}")
        self._next_lease += 1
        self._leases[self._next_lease] = _Lease(ttl, self._clock() + ttl)
        return self._next_lease

    async def keepalive_once(self, lease_id: int) -> int:
        self._enter()
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseLost(f"lease {lease_id:x} not found (expired or revoked)")
        lease.deadline = self._clock() + lease.ttl
        return lease.ttl

    async def revoke_lease(self, lease_id: int) -> None:
        self._enter()
        if lease_id in self._leases:
            self._drop_lease(lease_id)

    def lease_keys(self, lease_id: int) -> set[str]:
        """Keys attached to a live lease (test helper)."""
        lease = self._leases.get(lease_id)
        return set(lease.keys) if lease else set()

    async def compact(self, revision: int) -> None:
        """Forget history before `revision`, like etcd's Compact."""
        self._enter()
        if revision > self._revision:
            raise ValueError(f"cannot compact to {revision}: store is at revision {self._revision}")
        if revision <= self._compact_revision:
            raise ValueError(f"cannot compact to {revision}: already compacted to {self._compact_revision}")
        self._compact_revision = revision
        self._history = [(rev, ev) for rev, ev in self._history if rev >= revision]

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        self._enter()
        next_rev = start_revision if start_revision > 0 else self._revision + 1
        while True:
            if next_rev < self._compact_revision:
                raise Compacted(self._compact_revision)
            changed = self._changed
            pending = [(rev, ev) for rev, ev in self._history if rev >= next_rev]
            for rev, ev in pending:
                if ev.kv.key.startswith(prefix):
                    yield ev
                next_rev = rev + 1
            if not pending:
                next_rev = max(next_rev, self._revision + 1)
                await changed.wait()

    async def close(self) -> None:
        self.closed = True
