"""One etcd member's channel and stubs, and the conversions between the KV contract's values and
etcd's protobuf messages (aetcd's stubs).

A TLS endpoint looks every few seconds whether its certificate files changed (a renewed client
certificate, a rotated CA); then new calls go through a new channel made from the new files, and
the old channel is closed after a grace period (a watch on it resumes on the new one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aetcd import rpc

from i2v_common.etcd_security import EtcdSecurity
from i2v_contract.kv import Compare, Delete, KeyValue, KVUnavailable, Put

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 5.0  # how often a TLS endpoint looks at its certificate files
_RETIRE_GRACE_S = 30.0  # calls still running on a replaced channel get this long

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


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    key = prefix.encode()
    if not key:
        return b"\0", b"\0"  # etcd: from the smallest key to the end
    end = bytearray(key)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return key, bytes(end[: i + 1])
    return key, b"\0"


def key_value(pb: Any) -> KeyValue:
    return KeyValue(
        key=bytes(pb.key).decode(),
        value=bytes(pb.value),
        create_revision=int(pb.create_revision),
        mod_revision=int(pb.mod_revision),
        version=int(pb.version),
        lease=int(pb.lease),
    )


def compare(c: Compare) -> Any:
    target, field = _TARGETS[c.target]
    return rpc.Compare(key=c.key.encode(), target=target, result=_RESULTS[c.op], **{field: c.value})


def request_op(op: Put | Delete) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=op.key.encode(), value=op.value, lease=op.lease))
    if op.prefix:
        start, end = prefix_range(op.key)
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=start, range_end=end))
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=op.key.encode()))


class Endpoint:
    """One member's channel and stubs, created on first use inside the running loop."""

    def __init__(self, address: str, security: EtcdSecurity) -> None:
        self.address = address
        self._security = security
        self._channel: Any = None
        self._fingerprint = security.fingerprint()
        self._next_check = 0.0
        self._retiring: set[asyncio.Task[None]] = set()
        self.kv: Any = None
        self.lease: Any = None
        self.watch: Any = None
        self.auth: Any = None

    def connect(self) -> Endpoint:
        if self._channel is not None and self._security.tls and self._files_changed():
            log.info("etcd TLS files changed; new calls to %s use them", self.address)
            retiring = asyncio.create_task(self._retire(self._channel), name=f"retire-etcd-{self.address}")
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
            self._channel = None
        if self._channel is None:
            self._channel = self._open()
            self.kv = rpc.KVStub(self._channel)
            self.lease = rpc.LeaseStub(self._channel)
            self.watch = rpc.WatchStub(self._channel)
            self.auth = rpc.AuthStub(self._channel)
        return self

    def _files_changed(self) -> bool:
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + RELOAD_CHECK_S
        fingerprint = self._security.fingerprint()
        changed, self._fingerprint = fingerprint != self._fingerprint, fingerprint
        return changed

    def _open(self) -> Any:
        if not self._security.tls:
            return rpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        try:
            credentials = self._security.credentials()
        except OSError as err:
            raise KVUnavailable(f"etcd {self.address}: cannot read the TLS files: {err}") from None
        return rpc.secure_channel(self.address, credentials, options=_CHANNEL_OPTIONS)

    @staticmethod
    async def _retire(channel: Any) -> None:
        try:
            await asyncio.sleep(_RETIRE_GRACE_S)
        finally:
            await channel.close()

    async def close(self) -> None:
        for retiring in list(self._retiring):
            retiring.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()
