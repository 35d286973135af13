"""KV on a real etcd cluster, through the gRPC stubs that aetcd generates.

aetcd's high-level Client fixes one timeout per client and hides watch stream failures inside
callbacks, so this adapter drives aetcd's stubs directly: every call gets a deadline, fails over
across endpoints, and a watch resumes on another endpoint from the last revision it delivered.

Failover rule: a call has `timeout` seconds in total. One attempt may use at most half of what is
left (all of it when it is the only endpoint), so an endpoint that hangs (paused, partitioned) still
leaves time to reach another one. Reads, lease grants, keepalives and revokes are retried on any
transient error; writes (put, delete, txn, compact) only when the request cannot have been applied
(no connection, or the member has no leader), otherwise KVUnavailable says the outcome is unknown.
The endpoint that failed is rotated away from, so the next call starts on another member.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from i2v_common.logs import summarize
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

log = logging.getLogger(__name__)

T = TypeVar("T")
_Opts = dict[str, Any]  # per-attempt gRPC call options: deadline and metadata

DEFAULT_TIMEOUT_S = 1.5  # etcd call timeout (docs/architecture.md, timings)
_MIN_ATTEMPT_S = 0.3  # no attempt gets less than this while more is left, so a healthy member can answer
_ROUND_BACKOFF_S = 0.05  # pause after every endpoint failed fast, before the next round

_CHANNEL_OPTIONS = (
    # Reconnect to a restarted member within a second instead of gRPC's default (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Detect a hung member under a long-lived watch; etcd refuses pings more often than every 5 s.
    ("grpc.keepalive_time_ms", 6000),
    ("grpc.keepalive_timeout_ms", 3000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)

# With this metadata a member without a leader answers "no leader" at once (a safe retry elsewhere)
# instead of queueing the request, and closes watches instead of letting them go silently stale.
_REQUIRE_LEADER = (("hasleader", "true"),)

_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# UNAVAILABLE details that prove a write was never proposed: safe to send it elsewhere.
_NOT_SENT_MARKERS = ("failed to connect", "connection refused", "etcdserver: no leader", "too many requests")

_TARGETS = {
    "create": (rpc.Compare.CREATE, "create_revision"),
    "mod": (rpc.Compare.MOD, "mod_revision"),
    "version": (rpc.Compare.VERSION, "version"),
    "value": (rpc.Compare.VALUE, "value"),
}
_RESULTS = {
    "==": rpc.Compare.EQUAL,
    "!=": rpc.Compare.NOT_EQUAL,
    "<": rpc.Compare.LESS,
    ">": rpc.Compare.GREATER,
}


def retry_safe(code: grpc.StatusCode, details: str, *, mutating: bool) -> bool:
    """Whether a failed attempt may be sent to another endpoint without risking a double apply."""
    if code not in _TRANSIENT:
        return False
    if not mutating:
        return True
    lowered = details.lower()
    return code == grpc.StatusCode.UNAVAILABLE and any(m in lowered for m in _NOT_SENT_MARKERS)


def _prefix_range(prefix: str) -> tuple[bytes, bytes]:
    key = prefix.encode()
    if not key:
        return b"\0", b"\0"  # etcd: from the smallest key to the end
    end = bytearray(key)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return key, bytes(end[: i + 1])
    return key, b"\0"


def _kv(pb: Any) -> KeyValue:
    return KeyValue(
        key=bytes(pb.key).decode(),
        value=bytes(pb.value),
        create_revision=int(pb.create_revision),
        mod_revision=int(pb.mod_revision),
        version=int(pb.version),
        lease=int(pb.lease),
    )


def _compare(c: Compare) -> Any:
    target, field = _TARGETS[c.target]
    return rpc.Compare(key=c.key.encode(), target=target, result=_RESULTS[c.op], **{field: c.value})


def _request_op(op: Put | Delete) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=op.key.encode(), value=op.value, lease=op.lease))
    if op.prefix:
        start, end = _prefix_range(op.key)
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=start, range_end=end))
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=op.key.encode()))


def _map_error(what: str, code: grpc.StatusCode, details: str) -> Exception:
    if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
        return LeaseLost(f"{what}: {details}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        return ValueError(f"{what}: etcd rejected the request: {details}")
    return KVUnavailable(f"{what}: etcd answered {code.name}: {details}")


class _Endpoint:
    """One member's channel and stubs, created on first use inside the running loop."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel: Any = None
        self.kv: Any = None
        self.lease: Any = None
        self.watch: Any = None

    def connect(self) -> _Endpoint:
        if self._channel is None:
            self._channel = rpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
            self.kv = rpc.KVStub(self._channel)
            self.lease = rpc.LeaseStub(self._channel)
            self.watch = rpc.WatchStub(self._channel)
        return self

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()


class EtcdKV:
    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        watch_reconnect_s: float = 10.0,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdKV needs at least one endpoint (host:port)")
        if timeout <= 0:
            raise ValueError(f"EtcdKV timeout must be > 0 seconds, got {timeout}")
        self._endpoints = [_Endpoint(address) for address in endpoints]
        self._timeout = timeout
        self._watch_reconnect_s = watch_reconnect_s
        self._current = 0

    @property
    def endpoint(self) -> str:
        """The endpoint the next call starts on."""
        return self._endpoints[self._current].address

    def _rotate_from(self, index: int, why: str) -> None:
        if self._current != index:
            return  # a concurrent call already moved on
        self._current = (index + 1) % len(self._endpoints)
        if len(self._endpoints) > 1:
            log.warning(
                "etcd endpoint %s failed (%s); next calls start on %s",
                self._endpoints[index].address,
                why,
                self.endpoint,
            )

    async def _call(
        self, what: str, attempt: Callable[[_Endpoint, _Opts], Awaitable[T]], *, mutating: bool
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        failures: list[str] = []
        count = len(self._endpoints)
        while (remaining := deadline - loop.time()) > 0:
            index = self._current
            endpoint = self._endpoints[index]
            budget = remaining if count == 1 else min(remaining, max(_MIN_ATTEMPT_S, remaining / 2))
            try:
                return await attempt(endpoint.connect(), {"timeout": budget, "metadata": _REQUIRE_LEADER})
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code not in _TRANSIENT:
                    raise _map_error(what, code, details) from exc
                failures.append(f"{endpoint.address} {code.name} {details}")
                self._rotate_from(index, f"{code.name} {details}")
                if not retry_safe(code, details, mutating=mutating):
                    raise KVUnavailable(
                        f"{what}: {endpoint.address} answered {code.name} ({details}) after the write may "
                        f"have been sent; its outcome is unknown, re-read before retrying"
                    ) from exc
            if len(failures) % count == 0:
                await asyncio.sleep(min(_ROUND_BACKOFF_S, max(0.0, deadline - loop.time())))
        raise KVUnavailable(
            f"{what}: no etcd endpoint answered within {self._timeout}s "
            f"({summarize(failures, 'attempt') if failures else 'no attempt fitted in the timeout'})"
        )

    async def get(self, key: str) -> KeyValue | None:
        async def attempt(ep: _Endpoint, opts: _Opts) -> KeyValue | None:
            resp = await ep.kv.Range(rpc.RangeRequest(key=key.encode()), **opts)
            return _kv(resp.kvs[0]) if resp.kvs else None

        return await self._call(f"get {key}", attempt, mutating=False)

    async def range_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        start, end = _prefix_range(prefix)

        async def attempt(ep: _Endpoint, opts: _Opts) -> tuple[list[KeyValue], int]:
            resp = await ep.kv.Range(rpc.RangeRequest(key=start, range_end=end), **opts)
            return [_kv(kv) for kv in resp.kvs], int(resp.header.revision)

        return await self._call(f"range {prefix}", attempt, mutating=False)

    async def range_page(self, start: str, end: str, limit: int) -> Page:
        if limit < 1:
            raise ValueError(f"range limit must be >= 1, got {limit}")
        # No sort_order: even an explicit ASCEND by key makes etcd 3.4 read the whole range first.
        request = rpc.RangeRequest(key=start.encode(), range_end=end.encode(), limit=limit)

        async def attempt(ep: _Endpoint, opts: _Opts) -> Page:
            resp = await ep.kv.Range(request, **opts)
            return Page([_kv(kv) for kv in resp.kvs], int(resp.header.revision), bool(resp.more))

        return await self._call(f"range [{start}, {end}) limit {limit}", attempt, mutating=False)

    async def count_range(self, start: str, end: str) -> int:
        request = rpc.RangeRequest(key=start.encode(), range_end=end.encode(), count_only=True)

        async def attempt(ep: _Endpoint, opts: _Opts) -> int:
            resp = await ep.kv.Range(request, **opts)
            return int(resp.count)

        return await self._call(f"count [{start}, {end})", attempt, mutating=False)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compares],
            success=[_request_op(op) for op in success],
            failure=[_request_op(op) for op in failure],
        )

        async def attempt(ep: _Endpoint, opts: _Opts) -> TxnResult:
            resp = await ep.kv.Txn(request, **opts)
            return TxnResult(bool(resp.succeeded), int(resp.header.revision))

        keys = sorted({c.key for c in compares} | {op.key for op in (*success, *failure)})
        return await self._call(f"txn on {', '.join(keys)}", attempt, mutating=True)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        request = rpc.PutRequest(key=key.encode(), value=value, lease=lease)

        async def attempt(ep: _Endpoint, opts: _Opts) -> int:
            resp = await ep.kv.Put(request, **opts)
            return int(resp.header.revision)

        return await self._call(f"put {key}", attempt, mutating=True)

    async def delete(self, key: str) -> int:
        async def attempt(ep: _Endpoint, opts: _Opts) -> int:
            resp = await ep.kv.DeleteRange(rpc.DeleteRangeRequest(key=key.encode()), **opts)
            return int(resp.header.revision)

        return await self._call(f"delete {key}", attempt, mutating=True)

    async def compact(self, revision: int) -> None:
        """Drop history before `revision` (watches starting earlier then raise Compacted)."""

        async def attempt(ep: _Endpoint, opts: _Opts) -> None:
            await ep.kv.Compact(rpc.CompactionRequest(revision=revision), **opts)

        await self._call(f"compact {revision}", attempt, mutating=True)

    async def grant_lease(self, ttl: int) -> int:
        # A retried grant at worst leaves an unused lease that expires by itself.
        async def attempt(ep: _Endpoint, opts: _Opts) -> int:
            resp = await ep.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), **opts)
            if resp.error:
                raise KVUnavailable(f"lease grant ttl={ttl}: {resp.error}")
            return int(resp.ID)

        return await self._call(f"grant lease ttl={ttl}", attempt, mutating=False)

    async def keepalive_once(self, lease_id: int) -> int:
        async def attempt(ep: _Endpoint, opts: _Opts) -> int:
            call = ep.lease.LeaseKeepAlive(**opts)
            try:
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
                resp = await call.read()
            finally:
                call.cancel()
            if resp is grpc.aio.EOF:
                raise KVUnavailable(f"lease {lease_id:x} keepalive: {ep.address} closed the stream")
            if resp.TTL <= 0:
                raise LeaseLost(f"lease {lease_id:x} not found (expired or revoked)")
            return int(resp.TTL)

        return await self._call(f"keepalive lease {lease_id:x}", attempt, mutating=False)

    async def revoke_lease(self, lease_id: int) -> None:
        async def attempt(ep: _Endpoint, opts: _Opts) -> None:
            await ep.lease.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease_id), **opts)

        try:
            await self._call(f"revoke lease {lease_id:x}", attempt, mutating=False)
        except LeaseLost:
            log.info("lease %x was already gone when revoked", lease_id)

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        start, end = _prefix_range(prefix)
        loop = asyncio.get_running_loop()
        next_rev = start_revision
        give_up_at: float | None = None
        while True:
            index = self._current
            endpoint = self._endpoints[index].connect()
            call = endpoint.watch.Watch(metadata=_REQUIRE_LEADER)
            try:
                create = rpc.WatchCreateRequest(key=start, range_end=end, start_revision=max(next_rev, 0))
                await call.write(rpc.WatchRequest(create_request=create))
                async with asyncio.timeout(self._timeout):  # not wait_for: it can swallow a cancel
                    created = await call.read()
                if created is grpc.aio.EOF or not created.created:
                    raise KVUnavailable(f"watch {prefix}: {endpoint.address} did not create the watch")
                if created.compact_revision:
                    raise Compacted(int(created.compact_revision))
                if next_rev <= 0:
                    next_rev = int(created.header.revision) + 1
                if give_up_at is not None:
                    log.info("watch %s resumed on %s from revision %d", prefix, endpoint.address, next_rev)
                give_up_at = None
                while (resp := await call.read()) is not grpc.aio.EOF:
                    if resp.compact_revision:
                        raise Compacted(int(resp.compact_revision))
                    for ev in resp.events:
                        yield WatchEvent("delete" if ev.type == rpc.Event.DELETE else "put", _kv(ev.kv))
                        next_rev = int(ev.kv.mod_revision) + 1
                    if resp.canceled:
                        raise KVUnavailable(
                            f"watch {prefix} canceled by {endpoint.address}: {resp.cancel_reason}"
                        )
                raise KVUnavailable(f"watch {prefix}: {endpoint.address} ended the stream")
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _TRANSIENT:
                    raise _map_error(f"watch {prefix}", exc.code(), exc.details() or "") from exc
                why = f"{exc.code().name} {exc.details()}"
            except (KVUnavailable, TimeoutError) as exc:
                why = str(exc) or "watch create timed out"
            finally:
                call.cancel()
            self._rotate_from(index, why)
            now = loop.time()
            give_up_at = give_up_at if give_up_at is not None else now + self._watch_reconnect_s
            if now >= give_up_at:
                raise KVUnavailable(
                    f"watch {prefix}: could not re-establish on any endpoint for {self._watch_reconnect_s}s "
                    f"(last: {why}); resume from revision {next_rev}"
                )
            log.warning(
                "watch %s broke on %s (%s); resuming from revision %d",
                prefix,
                endpoint.address,
                why,
                next_rev,
            )
            await asyncio.sleep(_ROUND_BACKOFF_S)

    async def close(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.close()
