"""CoordinatorClient.download against a fake Download stream: verified, resumed, started over."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from i2v_client import CallError, CoordinatorClient, GenerateCall
from i2v_client.download import Downloaded, save_downloaded
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.fakes.client import FakeRpcError, FakeStubs
from tests.fakes.clock import ManualClock

ARTIFACT = bytes(range(200)) * 5  # 1000 bytes, sent 100 a message
PIECE = 100
FRAMES = [b"frame zero", b"frame one"]


class _Stream:
    """One Download stream as gRPC hands it out: `messages`, then `error` (raised while iterating,
    as a real call raises); UNAVAILABLE after `breaks_after` pieces when that is set."""

    def __init__(
        self,
        messages: list[coordinator_pb2.DownloadResponse],
        breaks_after: int | None = None,
        error: FakeRpcError | None = None,
    ) -> None:
        self.messages = messages
        self.breaks_after = breaks_after
        self.error = error
        self.cancelled = False

    def __iter__(self) -> Iterator[coordinator_pb2.DownloadResponse]:
        for i, message in enumerate(self.messages):
            if self.breaks_after is not None and i == self.breaks_after + 1:
                raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")
            yield message
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self.cancelled = True


class _DownloadStub:
    """Serves `data` (and FRAMES) like a coordinator; stream i breaks after `breaks[i]` pieces."""

    def __init__(self, data: bytes = ARTIFACT, breaks: tuple[int | None, ...] = (), sha256: str = "") -> None:
        self.data = data
        self.breaks = list(breaks)
        self.sha256 = sha256 or hashlib.sha256(data).hexdigest()
        self.requests: list[coordinator_pb2.DownloadRequest] = []

    def Download(self, request: coordinator_pb2.DownloadRequest) -> _Stream:
        self.requests.append(request)
        data = FRAMES[request.frame] if request.what == coordinator_pb2.ARTIFACT_FRAME else self.data
        sha256 = hashlib.sha256(data).hexdigest() if data is not self.data else self.sha256
        if request.offset > len(data):
            return _Stream([], error=FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "offset: beyond"))
        header = coordinator_pb2.DownloadResponse(
            total_size=len(data), sha256=sha256, mime_type="video/mp4", offset=request.offset
        )
        pieces = [
            coordinator_pb2.DownloadResponse(offset=o, data=data[o : o + PIECE])
            for o in range(request.offset, len(data), PIECE)
        ]
        return _Stream([header, *pieces], self.breaks.pop(0) if self.breaks else None)


def client_for(stub: Any) -> tuple[CoordinatorClient, FakeStubs]:
    stubs = FakeStubs(stub)
    return CoordinatorClient(["a:1", "b:2"], clock=ManualClock(0.0), sleep=lambda s: None, stubs=stubs), stubs


def test_a_download_writes_the_verified_artifact_and_no_part_file(tmp_path: Path) -> None:
    client, _ = client_for(_DownloadStub())
    seen: list[tuple[int, int]] = []
    done = client.download("j1", tmp_path / "out.mp4", on_progress=lambda n, total: seen.append((n, total)))
    assert done == Downloaded(len(ARTIFACT), hashlib.sha256(ARTIFACT).hexdigest(), "video/mp4", 1)
    assert (tmp_path / "out.mp4").read_bytes() == ARTIFACT and not (tmp_path / "out.mp4.part").exists()
    assert seen[0] == (PIECE, len(ARTIFACT)) and seen[-1] == (len(ARTIFACT), len(ARTIFACT))


def test_a_broken_stream_resumes_from_the_bytes_written_on_the_next_coordinator(tmp_path: Path) -> None:
    stub = _DownloadStub(breaks=(3, 2))
    client, stubs = client_for(stub)
    done = client.download("j1", tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == ARTIFACT and done.streams == 3
    assert [r.offset for r in stub.requests] == [0, 300, 500]
    assert stubs.asked == ["a:1", "b:2", "a:1"]


def test_without_resume_a_broken_stream_starts_over(tmp_path: Path) -> None:
    stub = _DownloadStub(breaks=(3,))
    client, _ = client_for(stub)
    out = io.BytesIO()
    out.write(b"kept: ")
    client.download("j1", out, resume=False)
    assert out.getvalue() == b"kept: " + ARTIFACT and [r.offset for r in stub.requests] == [0, 0]


def test_an_open_file_gets_the_bytes_in_order_across_a_break() -> None:
    stub = _DownloadStub(breaks=(1,))
    client, _ = client_for(stub)
    out = io.BytesIO()
    client.download("j1", out)
    assert out.getvalue() == ARTIFACT and [r.offset for r in stub.requests] == [0, 100]


def test_a_part_file_an_earlier_call_left_is_continued(tmp_path: Path) -> None:
    (tmp_path / "out.mp4.part").write_bytes(ARTIFACT[:450])
    stub = _DownloadStub()
    client, _ = client_for(stub)
    done = client.download("j1", tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == ARTIFACT and done.sha256 == stub.sha256
    assert [r.offset for r in stub.requests] == [450]


@pytest.mark.parametrize(
    "left",
    [
        pytest.param(b"x" * 450, id="other-bytes-hash-wrong"),
        pytest.param(b"x" * 2000, id="longer-than-the-artifact"),
    ],
)
def test_a_stale_part_file_is_dropped_and_the_download_starts_over_once(tmp_path: Path, left: bytes) -> None:
    (tmp_path / "out.mp4.part").write_bytes(left)
    stub = _DownloadStub()
    client, _ = client_for(stub)
    client.download("j1", tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == ARTIFACT
    assert [r.offset for r in stub.requests] == [len(left), 0]


def test_bytes_that_do_not_match_the_sha256_are_data_loss_and_leave_nothing(tmp_path: Path) -> None:
    client, _ = client_for(_DownloadStub(sha256="00" * 32))
    with pytest.raises(CallError) as failed:
        client.download("j1", tmp_path / "out.mp4")
    assert failed.value.code == grpc.StatusCode.DATA_LOSS and "download it again" in failed.value.message
    assert list(tmp_path.iterdir()) == []


def test_an_artifact_that_changed_between_streams_is_data_loss(tmp_path: Path) -> None:
    stub = _DownloadStub(breaks=(2,))
    client, _ = client_for(stub)
    original = stub.Download

    def changing(request: coordinator_pb2.DownloadRequest) -> _Stream:
        if request.offset:
            stub.sha256 = "11" * 32
        return original(request)

    stub.Download = changing  # type: ignore[method-assign]
    with pytest.raises(CallError) as failed:
        client.download("j1", io.BytesIO())
    assert (
        failed.value.code == grpc.StatusCode.DATA_LOSS and "changed between streams" in failed.value.message
    )


def test_a_refusal_is_raised_at_once_with_the_servers_words() -> None:
    class _Refusing:
        def Download(self, request: coordinator_pb2.DownloadRequest) -> _Stream:
            refusal = FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "job j1 is RUNNING, not finished")
            return _Stream([], error=refusal)

    client, stubs = client_for(_Refusing())
    with pytest.raises(CallError) as failed:
        client.download("j1", io.BytesIO())
    assert failed.value.code == grpc.StatusCode.FAILED_PRECONDITION and stubs.asked == ["a:1"]
    assert "not finished" in failed.value.message


def test_an_unknown_artifact_kind_is_refused_before_any_call() -> None:
    client, stubs = client_for(_DownloadStub())
    with pytest.raises(ValueError, match="what: 'thumbnail' is not one of video, input, frame"):
        client.download("j1", io.BytesIO(), what="thumbnail")
    assert stubs.asked == []


def test_save_downloaded_fetches_the_video_and_every_stored_frame(tmp_path: Path) -> None:
    stub = _DownloadStub()
    client, _ = client_for(stub)
    result = common_pb2.Result(
        artifact_uri="file:///s/v.mp4", frame_uris=["file:///s/f0.png", "file:///s/f1.png"]
    )
    save_downloaded(client.download, "j1", result, tmp_path / "out" / "v.mp4", tmp_path / "frames")
    assert (tmp_path / "out" / "v.mp4").read_bytes() == ARTIFACT
    assert [(tmp_path / "frames" / f"frame_{i:04d}.png").read_bytes() for i in (0, 1)] == FRAMES
    assert [(r.what, r.frame) for r in stub.requests] == [
        (coordinator_pb2.ARTIFACT_VIDEO, 0),
        (coordinator_pb2.ARTIFACT_FRAME, 0),
        (coordinator_pb2.ARTIFACT_FRAME, 1),
    ]


def _chunk(data: bytes, offset: int, frame: int | None = None) -> common_pb2.GenerateEvent:
    chunk = common_pb2.ResultChunk(offset=offset, data=data)
    if frame is None:
        chunk.video = True
    else:
        chunk.frame = frame
    return common_pb2.GenerateEvent(chunk=chunk)


def test_a_nodes_chunks_come_back_together_in_its_result() -> None:
    video = b"0123456789"
    events = [
        _chunk(video[:6], 0),
        _chunk(video[6:], 6),
        _chunk(b"png0", 0, frame=0),
        _chunk(b"png1", 0, frame=1),
        common_pb2.GenerateEvent(result=common_pb2.Result(sha256=hashlib.sha256(video).hexdigest())),
    ]
    result = GenerateCall(iter(events)).wait()
    assert result.video == video and list(result.frames_png) == [b"png0", b"png1"]


def test_a_lost_chunk_is_data_loss() -> None:
    events = [_chunk(b"abc", 0), _chunk(b"ghi", 6), common_pb2.GenerateEvent(result=common_pb2.Result())]
    with pytest.raises(CallError) as failed:
        GenerateCall(iter(events)).wait()
    assert failed.value.code == grpc.StatusCode.DATA_LOSS
