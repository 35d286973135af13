"""Bytes that are not the request message, sent through generic channel methods with identity
serializers to every unary-request method of the node and the coordinators: random bytes, and
protobuf-shaped ones with invalid UTF-8 in string fields, varints past 64 bits, lengths past the end,
wrong wire types and deep nesting. Each is INVALID_ARGUMENT naming the message type, or, when the
bytes do parse, whatever that request gets."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from i2v_contract.wire import node_pb2
from tests.hostile.conftest import HOSTILE
from tests.hostile.servers import HostileCluster
from tests.hostile.tally import Tally

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

NODE = [
    ("/i2v.v1.Node/Generate", "stream"),
    ("/i2v.v1.Node/Cancel", "unary"),
    ("/i2v.v1.Node/Status", "unary"),
]
COORDINATOR = [
    (f"/i2v.v1.Coordinator/{m}", kind)
    for m, kind in [
        ("Submit", "unary"), ("Watch", "stream"), ("Generate", "stream"), ("Get", "unary"),
        ("Cancel", "unary"), ("ListJobs", "unary"), ("ListNodes", "unary"), ("ClusterStatus", "unary"),
        ("Download", "stream"),
    ]
]  # fmt: skip
EVERY_SERVER = [
    ("/grpc.health.v1.Health/Check", "unary"),
    ("/grpc.health.v1.Health/Watch", "stream"),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "bidi"),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "bidi"),
]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def protobuf_shaped(draw: st.DrawFn) -> bytes:
    """Tag/value pairs close enough to the real messages to get past the first byte."""
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        field = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 11, 15, 16, 2**29 - 1]))
        kind = draw(
            st.sampled_from(["varint", "bad-utf8", "long-length", "overflow", "group", "wire-7", "nest"])
        )
        if kind == "varint":
            parts.append(varint(field << 3) + varint(draw(st.integers(0, 2**64 - 1))))
        elif kind == "bad-utf8":
            text = draw(
                st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"a\xc0\xafb", b"\xf8\x88\x80\x80\x80"])
            )
            parts.append(varint(field << 3 | 2) + varint(len(text)) + text)
        elif kind == "long-length":
            parts.append(varint(field << 3 | 2) + varint(draw(st.integers(1, 2**32))) + b"short")
        elif kind == "overflow":
            parts.append(varint(field << 3) + b"\xff" * draw(st.integers(10, 20)))
        elif kind == "group":
            parts.append(varint(field << 3 | 3) * draw(st.integers(1, 200)))
        elif kind == "wire-7":
            parts.append(varint(field << 3 | 7) + b"\x00")
        else:  # length-delimited in length-delimited, deeper than parsers allow
            inner = b""
            for _ in range(draw(st.integers(50, 150))):
                inner = varint(1 << 3 | 2) + varint(len(inner)) + inner
            parts.append(inner)
    return b"".join(parts)


RAW = st.one_of(st.binary(max_size=512), protobuf_shaped())


def harmless(path: str, raw: bytes) -> bool:
    """False for bytes that parse into a call with a caller's real effect (Node.Cancel with an empty
    job_id cancels whatever runs: a sentinel)."""
    if path != "/i2v.v1.Node/Cancel":
        return True
    try:
        return bool(node_pb2.NodeCancelRequest.FromString(raw).job_id)
    except Exception:
        return True


def send(chan: grpc.Channel, path: str, kind: str, raw: bytes) -> None:
    if kind == "unary":
        chan.unary_unary(path)(raw, timeout=10)
        return
    call = (
        chan.unary_stream(path)(raw, timeout=10)
        if kind == "stream"
        else chan.stream_stream(path)(iter([raw]), timeout=10)
    )
    for _ in call:
        call.cancel()
        break


@given(raw=RAW, target=st.sampled_from(["node", "leader", "standby"]), pick=st.integers(0, 100))
@HOSTILE
def test_unparseable_bytes_are_invalid_argument(
    cluster: HostileCluster, tally: Tally, raw: bytes, target: str, pick: int
) -> None:
    methods = (NODE if target == "node" else COORDINATOR) + EVERY_SERVER
    path, kind = methods[pick % len(methods)]
    assume(harmless(path, raw))
    chan = cluster.node_channel if target == "node" else cluster.channels[target]
    try:
        send(chan, path, kind, raw)
        tally.ok(target, "raw-bytes")
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED:  # parsed, started streaming, and we hung up
            tally.ok(target, "raw-bytes", "STARTED")
            return
        tally.error(target, "raw-bytes", err, (path, raw))
