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

Security (etcd_security.EtcdSecurity): TLS channels when a CA or client certificate is given; with a
user, every call carries etcd's auth token (etcd_auth), renewed once per call when etcd says it is
no longer valid. Refused credentials or permissions raise KVDenied, which no retry fixes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from i2v_common.etcd_auth import Authenticator, StaleToken
from i2v_common.etcd_security import EtcdSecurity, transport_hint
from i2v_common.etcd_wire import Endpoint, compare, key_value, prefix_range, request_op
from i2v_common.logs import summarize
from i2v_contract.kv import (
    Compacted,
    Compare,
    Delete,
    KeyValue,
    KVDenied,
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

# With this metadata a member without a leader answers "no leader" at once (a safe retry elsewhere)
# instead of queueing the request, and closes watches instead of letting them go silently stale.
_REQUIRE_LEADER = (("hasleader", "true"),)

_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# UNAVAILABLE details that prove a write was never proposed: safe to send it elsewhere.
_NOT_SENT_MARKERS = ("failed to connect", "connection refused", "etcdserver: no leader", "too many requests")


def retry_safe(code: grpc.StatusCode, details: str, *, mutating: bool) -> bool:
    """Whether a failed attempt may be sent to another endpoint without risking a double apply."""
    if code not in _TRANSIENT:
        return False
    if not mutating:
        return True
    lowered = details.lower()
    return code == grpc.StatusCode.UNAVAILABLE and any(m in lowered for m in _NOT_SENT_MARKERS)


def _map_error(what: str, code: grpc.StatusCode, details: str) -> Exception:
    if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
        return LeaseLost(f"{what}: {details}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        return ValueError(f"{what}: etcd rejected the request: {details}")
    return KVUnavailable(f"{what}: etcd answered {code.name}: {details}")


class EtcdKV:
    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        watch_reconnect_s: float = 10.0,
        security: EtcdSecurity | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdKV needs at least one endpoint (host:port)")
        if timeout <= 0:
            raise ValueError(f"EtcdKV timeout must be > 0 seconds, got {timeout}")
        security = security or EtcdSecurity()
        self._endpoints = [Endpoint(address, security) for address in endpoints]
        self._tls = security.tls
        self._auth = Authenticator(security.user, security.password)
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
        self, what: str, attempt: Callable[[Endpoint, _Opts], Awaitable[T]], *, mutating: bool
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        failures: list[str] = []
        count = len(self._endpoints)
        renewed = False  # the token is renewed at most once per call
        while (remaining := deadline - loop.time()) > 0:
            index = self._current
            endpoint = self._endpoints[index].connect()
            budget = remaining if count == 1 else min(remaining, max(_MIN_ATTEMPT_S, remaining / 2))
            attempt_end, token = loop.time() + budget, ""
            try:
                token = await self._auth.token(endpoint.auth, budget)
                return await attempt(endpoint, self._opts(token, attempt_end - loop.time()))
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if self._renew(what, code, details, token, renewed):
                    renewed = True
                    continue
                if code not in _TRANSIENT:
                    raise _map_error(what, code, details) from exc
                failures.append(f"{endpoint.address} {code.name} {details}")
                self._rotate_from(index, f"{code.name} {details}")
                if not retry_safe(code, details, mutating=mutating):
                    raise KVUnavailable(
                        f"{what}: {endpoint.address} answered {code.name} ({details}) after the write may "
                        f"have been sent; its outcome is unknown, re-read before retrying"
                    ) from exc
            except TimeoutError:  # waiting for another call's authentication
                failures.append(f"{endpoint.address} authentication timed out")
                self._rotate_from(index, "authentication timed out")
            if len(failures) % count == 0:
                await asyncio.sleep(min(_ROUND_BACKOFF_S, max(0.0, deadline - loop.time())))
        raise KVUnavailable(
            f"{what}: no etcd endpoint answered within {self._timeout}s "
            f"({summarize(failures, 'attempt') if failures else 'no attempt fitted in the timeout'})"
            f"{transport_hint(failures, tls=self._tls)}"
        )

    def _opts(self, token: str, budget: float) -> _Opts:
        return {"timeout": max(budget, 0.001), "metadata": _REQUIRE_LEADER + self._auth.metadata(token)}

    def _renew(self, what: str, code: grpc.StatusCode, details: str, token: str, renewed: bool) -> bool:
        """True when the call should run again with a new token; raises KVDenied on a refusal."""
        refusal = self._auth.refusal(what, code, details)
        if refusal is None:
            return False
        if isinstance(refusal, StaleToken) and not renewed:
            self._auth.drop(token)
            return True
        if isinstance(refusal, StaleToken):
            raise KVDenied(f"{what}: etcd refused a fresh token for user {self._auth.user!r}: {details}")
        raise refusal

    async def get(self, key: str) -> KeyValue | None:
        async def attempt(ep: Endpoint, opts: _Opts) -> KeyValue | None:
            resp = await ep.kv.Range(rpc.RangeRequest(key=key.encode()), **opts)
            return key_value(resp.kvs[0]) if resp.kvs else None

        return await self._call(f"get {key}", attempt, mutating=False)

    async def range_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        start, end = prefix_range(prefix)

        async def attempt(ep: Endpoint, opts: _Opts) -> tuple[list[KeyValue], int]:
            resp = await ep.kv.Range(rpc.RangeRequest(key=start, range_end=end), **opts)
            return [key_value(kv) for kv in resp.kvs], int(resp.header.revision)

        return await self._call(f"range {prefix}", attempt, mutating=False)

    async def range_page(self, start: str, end: str, limit: int) -> Page:
        if limit < 1:
            raise ValueError(f"range limit must be >= 1, got {limit}")
        # No sort_order: even an explicit ASCEND by key makes etcd 3.4 read the whole range first.
        request = rpc.RangeRequest(key=start.encode(), range_end=end.encode(), limit=limit)

        async def attempt(ep: Endpoint, opts: _Opts) -> Page:
            resp = await ep.kv.Range(request, **opts)
            return Page([key_value(kv) for kv in resp.kvs], int(resp.header.revision), bool(resp.more))

        return await self._call(f"range [{start}, {end}) limit {limit}", attempt, mutating=False)

    async def count_range(self, start: str, end: str) -> int:
        request = rpc.RangeRequest(key=start.encode(), range_end=end.encode(), count_only=True)

        async def attempt(ep: Endpoint, opts: _Opts) -> int:
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
            compare=[compare(c) for c in compares],
            success=[request_op(op) for op in success],
            failure=[request_op(op) for op in failure],
        )

        async def attempt(ep: Endpoint, opts: _Opts) -> TxnResult:
            resp = await ep.kv.Txn(request, **opts)
            return TxnResult(bool(resp.succeeded), int(resp.header.revision))

        keys = sorted({c.key for c in compares} | {op.key for op in (*success, *failure)})
        return await self._call(f"txn on {', '.join(keys)}", attempt, mutating=True)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        request = rpc.PutRequest(key=key.encode(), value=value, lease=lease)

        async def attempt(ep: Endpoint, opts: _Opts) -> int:
            resp = await ep.kv.Put(request, **opts)
            return int(resp.header.revision)

        return await self._call(f"put {key}", attempt, mutating=True)

    async def delete(self, key: str) -> int:
        async def attempt(ep: Endpoint, opts: _Opts) -> int:
            resp = await ep.kv.DeleteRange(rpc.DeleteRangeRequest(key=key.encode()), **opts)
            return int(resp.header.revision)

        return await self._call(f"delete {key}", attempt, mutating=True)

    async def compact(self, revision: int) -> None:
        """Drop history before `revision` (watches starting earlier then raise Compacted)."""

        async def attempt(ep: Endpoint, opts: _Opts) -> None:
            await ep.kv.Compact(rpc.CompactionRequest(revision=revision), **opts)

        await self._call(f"compact {revision}", attempt, mutating=True)

    async def grant_lease(self, ttl: int) -> int:
        # A retried grant at worst leaves an unused lease that expires by itself.
        async def attempt(ep: Endpoint, opts: _Opts) -> int:
            resp = await ep.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), **opts)
            if resp.error:
                raise KVUnavailable(f"lease grant ttl={ttl}: {resp.error}")
            return int(resp.ID)

        return await self._call(f"grant lease ttl={ttl}", attempt, mutating=False)

    async def keepalive_once(self, lease_id: int) -> int:
        async def attempt(ep: Endpoint, opts: _Opts) -> int:
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
        async def attempt(ep: Endpoint, opts: _Opts) -> None:
            await ep.lease.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease_id), **opts)

        try:
            await self._call(f"revoke lease {lease_id:x}", attempt, mutating=False)
        except LeaseLost:
            log.info("lease %x was already gone when revoked", lease_id)

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        start, end = prefix_range(prefix)
        loop = asyncio.get_running_loop()
        next_rev = start_revision
        give_up_at: float | None = None
        renewed = False  # the token is renewed at most once per creation
        while True:
            index = self._current
            endpoint = self._endpoints[index].connect()
            call: Any = None
            try:
                create = rpc.WatchCreateRequest(key=start, range_end=end, start_revision=max(next_rev, 0))
                call, created = await self._create_watch(endpoint, f"watch {prefix}", create)
                if next_rev <= 0:
                    next_rev = int(created.header.revision) + 1
                if give_up_at is not None:
                    log.info("watch %s resumed on %s from revision %d", prefix, endpoint.address, next_rev)
                give_up_at, renewed = None, False
                while (resp := await call.read()) is not grpc.aio.EOF:
                    if resp.compact_revision:
                        raise Compacted(int(resp.compact_revision))
                    for ev in resp.events:
                        yield WatchEvent("delete" if ev.type == rpc.Event.DELETE else "put", key_value(ev.kv))
                        next_rev = int(ev.kv.mod_revision) + 1
                    if resp.canceled:
                        raise KVUnavailable(
                            f"watch {prefix} canceled by {endpoint.address}: {resp.cancel_reason}"
                        )
                raise KVUnavailable(f"watch {prefix}: {endpoint.address} ended the stream")
            except StaleToken as exc:
                if renewed:
                    raise KVDenied(f"watch {prefix}: etcd refused a fresh token ({exc})") from None
                renewed = True
                continue
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _TRANSIENT:
                    raise _map_error(f"watch {prefix}", exc.code(), exc.details() or "") from exc
                why = f"{exc.code().name} {exc.details()}"
            except KVDenied:
                raise
            except (KVUnavailable, TimeoutError) as exc:
                why = str(exc) or "watch create timed out"
            finally:
                if call is not None:
                    call.cancel()
            self._rotate_from(index, why)
            now = loop.time()
            give_up_at = give_up_at if give_up_at is not None else now + self._watch_reconnect_s
            if now >= give_up_at:
                raise KVUnavailable(
                    f"watch {prefix}: could not re-establish on any endpoint for {self._watch_reconnect_s}s "
                    f"(last: {why}); resume from revision {next_rev}{transport_hint([why], tls=self._tls)}"
                )
            log.warning(
                "watch %s broke on %s (%s); resuming from revision %d",
                prefix,
                endpoint.address,
                why,
                next_rev,
            )
            await asyncio.sleep(_ROUND_BACKOFF_S)

    def _refused(self, refusal: Exception, token: str) -> Exception:
        if isinstance(refusal, StaleToken):
            self._auth.drop(token)
        return refusal

    async def _create_watch(self, endpoint: Endpoint, what: str, create: Any) -> tuple[Any, Any]:
        """The open watch stream and etcd's creation answer; StaleToken after dropping the token."""
        token = await self._auth.token(endpoint.auth, self._timeout)
        call = endpoint.watch.Watch(metadata=_REQUIRE_LEADER + self._auth.metadata(token))
        try:
            await call.write(rpc.WatchRequest(create_request=create))
            async with asyncio.timeout(self._timeout):  # not wait_for: it can swallow a cancel
                created = await call.read()
            if created is grpc.aio.EOF or not created.created:
                raise KVUnavailable(f"{what}: {endpoint.address} did not create the watch")
            if created.compact_revision:
                raise Compacted(int(created.compact_revision))
            if created.canceled:  # etcd refuses a watch in its creation answer, not with a status
                raise self._refused(
                    self._auth.watch_refusal(what, endpoint.address, created.cancel_reason), token
                )
        except grpc.aio.AioRpcError as exc:
            call.cancel()
            refusal = self._auth.refusal(what, exc.code(), exc.details() or "")
            if refusal is None:
                raise
            raise self._refused(refusal, token) from exc
        except BaseException:
            call.cancel()
            raise
        return call, created

    async def close(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.close()
