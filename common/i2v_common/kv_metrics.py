"""etcd as the process sees it: call latency by operation, failed calls, and whether etcd answers.

`EtcdMetrics.wrap(kv)` returns a KV that records every call (watch streams excluded), so every etcd
user in the process is counted without knowing about metrics. A call that ends KVUnavailable (no
member answered in time, or the write's outcome is unknown) counts as an error and sets
i2v_etcd_up to 0; any answer, a refusal included (lease not found, compacted), sets it to 1. The
same outcome goes to `observe` when given (the coordinator's EtcdHealth): None when etcd answered,
else the KVUnavailable message.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from i2v_contract.kv import KV, Compare, Delete, KeyValue, KVUnavailable, Page, Put, TxnResult, WatchEvent

ETCD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 3)
OPS = ("get", "range", "txn", "put", "delete", "lease")
Observe = Callable[[str | None], None]


class EtcdMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.call = Histogram(
            "i2v_etcd_call_seconds",
            "etcd call latency by operation",
            ["op"],
            buckets=ETCD_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "i2v_etcd_errors",
            "etcd calls that no member answered (or whose outcome is unknown), by operation",
            ["op"],
            registry=registry,
        )
        self.up = Gauge(
            "i2v_etcd_up",
            "1 while the last etcd call was answered, 0 after one that was not",
            registry=registry,
        )
        for op in OPS:
            self.errors.labels(op)

    def wrap(self, kv: KV, observe: Observe | None = None) -> TimedKV:
        return TimedKV(kv, self.call, errors=self.errors, up=self.up, observe=observe)


class TimedKV:
    """A KV that records each call's latency in i2v_etcd_call_seconds{op} and, given them, its
    failures in i2v_etcd_errors_total{op} and i2v_etcd_up."""

    def __init__(
        self,
        inner: KV,
        histogram: Histogram,
        *,
        errors: Counter | None = None,
        up: Gauge | None = None,
        observe: Observe | None = None,
    ) -> None:
        self._inner = inner
        self._ops = {op: (histogram.labels(op), errors.labels(op) if errors else None) for op in OPS}
        self._up = up
        self._observe = observe

    def _timer(self, op: str) -> _Timer:
        child, failed = self._ops[op]
        return _Timer(child, failed, self._up, self._observe)

    async def get(self, key: str) -> KeyValue | None:
        with self._timer("get"):
            return await self._inner.get(key)

    async def range_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        with self._timer("range"):
            return await self._inner.range_prefix(prefix)

    async def range_page(self, start: str, end: str, limit: int) -> Page:
        with self._timer("range"):
            return await self._inner.range_page(start, end, limit)

    async def count_range(self, start: str, end: str) -> int:
        with self._timer("range"):
            return await self._inner.count_range(start, end)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        with self._timer("txn"):
            return await self._inner.txn(compares, success, failure)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        with self._timer("put"):
            return await self._inner.put(key, value, lease)

    async def delete(self, key: str) -> int:
        with self._timer("delete"):
            return await self._inner.delete(key)

    async def grant_lease(self, ttl: int) -> int:
        with self._timer("lease"):
            return await self._inner.grant_lease(ttl)

    async def keepalive_once(self, lease_id: int) -> int:
        with self._timer("lease"):
            return await self._inner.keepalive_once(lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        with self._timer("lease"):
            await self._inner.revoke_lease(lease_id)

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        return self._inner.watch_prefix(prefix, start_revision)

    async def close(self) -> None:
        await self._inner.close()


class _Timer:
    """One call: observes the elapsed time on exit, also when the call raised (a timeout is a latency
    too), and whether etcd answered."""

    def __init__(
        self, child: Histogram, errors: Counter | None, up: Gauge | None, observe: Observe | None
    ) -> None:
        self._child = child
        self._errors = errors
        self._up = up
        self._observe = observe
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._child.observe(time.perf_counter() - self._start)
        if isinstance(exc, KVUnavailable):
            if self._errors is not None:
                self._errors.inc()
            if self._up is not None:
                self._up.set(0)
            if self._observe is not None:
                self._observe(str(exc))
        elif exc is None or isinstance(exc, Exception):  # etcd answered, maybe with a refusal
            if self._up is not None:
                self._up.set(1)
            if self._observe is not None:
                self._observe(None)
