"""CoordinatorClient.read (ranged.py) against a fake Download stream that honours offset and limit:
the bytes asked for, resumed on the next coordinator from the byte reached, guarded by the digest,
and a call ended when the reader stops early."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from i2v_client import CallError, CoordinatorClient
from i2v_contract.wire import coordinator_pb2
from tests.fakes.client import FakeRpcError, FakeStubs
from tests.fakes.clock import ManualClock

DATA = bytes(range(250)) * 4  # 1000 bytes
PIECE = 100
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class _Stream:
    """One Download call: its messages, then `error` (or UNAVAILABLE after `breaks_after` pieces)."""

    messages: list[coordinator_pb2.DownloadResponse]
    breaks_after: int | None = None
    error: grpc.RpcError | None = None
    cancelled: bool = False

    def __iter__(self) -> Iterator[coordinator_pb2.DownloadResponse]:
        for i, message in enumerate(self.messages):
            if self.breaks_after is not None and i == self.breaks_after + 1:
                raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")
            yield message
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Stub:
    """A coordinator's Download: `DATA` from the request's offset, `limit` bytes of it (0 = to the
    end); call i breaks after `breaks[i]` pieces, ends early after `short[i]` pieces, or fails with
    `errors[i]`; `digests[i]` replaces the header's sha256."""

    breaks: dict[int, int] = field(default_factory=dict)
    short: dict[int, int] = field(default_factory=dict)
    errors: dict[int, grpc.RpcError] = field(default_factory=dict)
    digests: dict[int, str] = field(default_factory=dict)
    requests: list[coordinator_pb2.DownloadRequest] = field(default_factory=list)
    streams: list[_Stream] = field(default_factory=list)

    def Download(self, request: coordinator_pb2.DownloadRequest) -> _Stream:
        i = len(self.requests)
        self.requests.append(request)
        end = len(DATA) if not request.limit else min(len(DATA), request.offset + request.limit)
        header = coordinator_pb2.DownloadResponse(
            total_size=len(DATA),
            sha256=self.digests.get(i, SHA),
            mime_type="video/mp4",
            offset=request.offset,
        )
        pieces = [
            coordinator_pb2.DownloadResponse(offset=o, data=DATA[o : min(o + PIECE, end)])
            for o in range(request.offset, end, PIECE)
        ]
        if i in self.short:
            pieces = pieces[: self.short[i]]
        if i in self.errors:
            pieces = []
        stream = _Stream([header, *pieces], self.breaks.get(i), self.errors.get(i))
        self.streams.append(stream)
        return stream


def client_for(stub: _Stub) -> tuple[CoordinatorClient, FakeStubs]:
    stubs = FakeStubs(stub)
    return CoordinatorClient(["a:1", "b:2"], clock=ManualClock(0.0), sleep=lambda s: None, stubs=stubs), stubs


@pytest.mark.parametrize(
    ("offset", "limit", "want"),
    [
        pytest.param(0, 0, DATA, id="the-whole-artifact"),
        pytest.param(250, 0, DATA[250:], id="from-an-offset-to-the-end"),
        pytest.param(150, 420, DATA[150:570], id="a-span-inside"),
        pytest.param(900, 500, DATA[900:], id="a-limit-past-the-end-stops-at-the-end"),
        pytest.param(999, 1, DATA[999:], id="the-last-byte"),
    ],
)
def test_read_yields_exactly_the_bytes_asked_for_in_the_coordinators_chunks(
    offset: int, limit: int, want: bytes
) -> None:
    stub = _Stub()
    client, _ = client_for(stub)
    chunks = list(client.read("j1", offset=offset, limit=limit, sha256=SHA))
    assert b"".join(chunks) == want
    assert all(0 < len(c) <= PIECE for c in chunks)
    assert [(r.offset, r.limit) for r in stub.requests] == [(offset, limit)]


@pytest.mark.parametrize(
    ("stub", "offsets", "limits", "asked"),
    [
        pytest.param(_Stub(breaks={0: 3}), [100, 400], [600, 300], ["a:1", "b:2"], id="a-broken-stream"),
        pytest.param(
            _Stub(short={0: 2}), [100, 300], [600, 400], ["a:1", "b:2"], id="a-stream-that-ends-early"
        ),
        pytest.param(
            _Stub(breaks={0: 1, 1: 2}),
            [100, 200, 400],
            [600, 500, 300],
            ["a:1", "b:2", "a:1"],
            id="two-breaks",
        ),
    ],
)
def test_a_read_cut_short_asks_the_next_coordinator_for_the_rest_only(
    stub: _Stub, offsets: list[int], limits: list[int], asked: list[str]
) -> None:
    client, stubs = client_for(stub)
    assert b"".join(client.read("j1", offset=100, limit=600, sha256=SHA)) == DATA[100:700]
    assert [r.offset for r in stub.requests] == offsets
    assert [r.limit for r in stub.requests] == limits
    assert stubs.asked == asked


def test_an_open_ended_read_that_breaks_resumes_to_the_end_it_learnt_from_the_header() -> None:
    stub = _Stub(breaks={0: 4})
    client, _ = client_for(stub)
    assert b"".join(client.read("j1")) == DATA
    assert [(r.offset, r.limit) for r in stub.requests] == [(0, 0), (400, 600)]


@pytest.mark.parametrize(
    ("stub", "given"),
    [
        pytest.param(_Stub(digests={0: "f" * 64}), SHA, id="not-the-digest-the-job-reported"),
        pytest.param(_Stub(breaks={0: 2}, digests={1: "f" * 64}), "", id="another-artifact-after-a-break"),
    ],
)
def test_a_stream_serving_other_bytes_is_data_loss(stub: _Stub, given: str) -> None:
    client, _ = client_for(stub)
    got = bytearray()
    with pytest.raises(CallError) as err:
        for chunk in client.read("j1", sha256=given):
            got += chunk
    assert err.value.code is grpc.StatusCode.DATA_LOSS and "fetch it again" in err.value.message
    assert DATA.startswith(bytes(got))  # nothing of the other artifact was handed on


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(grpc.StatusCode.PERMISSION_DENIED, id="refused"),
        pytest.param(grpc.StatusCode.FAILED_PRECONDITION, id="not-succeeded"),
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, id="bad-offset"),
    ],
)
def test_a_refusal_is_raised_as_it_came_without_trying_another_coordinator(code: grpc.StatusCode) -> None:
    stub = _Stub(errors={0: FakeRpcError(code, "no")})
    client, stubs = client_for(stub)
    with pytest.raises(CallError) as err:
        list(client.read("j1"))
    assert err.value.code is code and err.value.message == "no"
    assert stubs.asked == ["a:1"]


def test_a_reader_that_stops_early_cancels_the_call() -> None:
    stub = _Stub()
    client, _ = client_for(stub)
    chunks = client.read("j1")
    assert next(chunks) == DATA[:PIECE]
    chunks.close()  # type: ignore[attr-defined]
    assert stub.streams[0].cancelled


def test_an_unknown_artifact_kind_is_refused_before_any_call() -> None:
    stub = _Stub()
    client, _ = client_for(stub)
    with pytest.raises(ValueError, match="what: 'audio'"):
        list(client.read("j1", what="audio"))
    assert stub.requests == []
