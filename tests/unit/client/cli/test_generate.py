from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from i2v_client import CallError, GenerateCall
from i2v_client.cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from i2v_contract.wire import common_pb2
from tests.fakes.client import FakeConnector, FakeRpcError, progress, run_cli
from tests.fakes.clock import ManualClock

# --- generate on one node ------------------------------------------------------------------------


class _FakeCall:
    """A node's Generate stream: the given events, then the given error."""

    def __init__(self, events: list[common_pb2.GenerateEvent], error: CallError | None = None) -> None:
        self.events_ = events
        self.error = error
        self.cancelled = False

    def __iter__(self) -> Iterator[common_pb2.GenerateEvent]:
        yield from self.events_
        if self.error is not None:
            raise FakeRpcError(self.error.code, self.error.message)

    def cancel(self) -> None:
        self.cancelled = True


class _FakeClient:
    def __init__(self, call: _FakeCall) -> None:
        self.call = call
        self.requests: list[common_pb2.GenerationRequest] = []

    def generate(
        self, request: common_pb2.GenerationRequest, *, timeout: float | None = None
    ) -> GenerateCall:
        self.requests.append(request)
        return GenerateCall(self.call)

    def close(self) -> None:
        return None


def test_generate_writes_video_and_summary(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"png bytes")
    video = b"\x00\x00\x00\x18ftypmp42 fake"
    result = common_pb2.Result(
        video=video, sha256=hashlib.sha256(video).hexdigest(), frames=8, fps=8, width=64, height=64, seed=7,
        steps=10, profile="fast", peak_bytes=3 * 1024 * 1024,
    )  # fmt: skip
    call = _FakeCall(
        [
            common_pb2.GenerateEvent(progress=progress(common_pb2.STAGE_DENOISE, 1, 10)),
            common_pb2.GenerateEvent(result=result),
        ]
    )
    client = _FakeClient(call)
    connector = FakeConnector(generator=client)
    out_path = tmp_path / "sub" / "out.mp4"
    argv = ["generate", str(image), "--prompt", "waves", "--frames", "8", "--width", "64", "--height", "64"]
    argv += ["--steps", "10", "--seed", "7", "--fps", "8", "--node", "127.0.0.1:1", "-o", str(out_path)]
    code, out, err = run_cli(argv, connector, clock=ManualClock(5.0))
    assert code == 0, err
    assert connector.asked == [("node", "127.0.0.1:1")]
    assert out_path.read_bytes() == video
    assert "8 frames 64x64 @ 8 fps" in out
    assert "seed 7" in out and "profile fast" in out and "peak 3.0 MiB" in out
    assert "; 0.00s here" in out  # the wall time is the injected clock's
    assert "denoise" in err  # plain progress lines when stderr is not a terminal
    sent = client.requests[0]
    assert (sent.width, sent.height, sent.frames, sent.steps, sent.fps, sent.seed) == (64, 64, 8, 10, 8, 7)
    assert sent.image == b"png bytes"


def test_generate_reports_server_error(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"x")
    error = CallError(grpc.StatusCode.INVALID_ARGUMENT, "width: 65 is not a multiple of 8")
    client = _FakeClient(_FakeCall([], error))
    out_path = tmp_path / "out.mp4"
    code, _, err = run_cli(
        ["generate", str(image), "--prompt", "p", "--node", "h:1", "-o", str(out_path)],
        FakeConnector(generator=client),
    )
    assert code == EXIT_FAILED
    assert "error: INVALID_ARGUMENT: width: 65 is not a multiple of 8" in err
    assert not out_path.exists()


def test_generate_missing_image(tmp_path: Path) -> None:
    client = _FakeClient(_FakeCall([]))
    argv = [
        "generate",
        str(tmp_path / "nope.png"),
        "--prompt",
        "p",
        "--node",
        "h:1",
        "-o",
        str(tmp_path / "o.mp4"),
    ]
    code, _, err = run_cli(argv, FakeConnector(generator=client))
    assert code == EXIT_USAGE
    assert "cannot read image" in err
    assert client.requests == []


def test_stream_without_result_is_an_error(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"x")
    client = _FakeClient(
        _FakeCall([common_pb2.GenerateEvent(progress=progress(common_pb2.STAGE_DENOISE, 1, 2))])
    )
    code, _, err = run_cli(
        ["generate", str(image), "--prompt", "p", "--node", "h:1", "-o", str(tmp_path / "o.mp4")],
        FakeConnector(generator=client),
    )
    assert code == EXIT_FAILED
    assert "UNKNOWN: the stream ended without a result" in err


# --- generate through the coordinators -----------------------------------------------------------


class _ResultCall:
    """A CoordinatorCall stand-in: replays progress, then returns (or raises) once; `save` writes
    `saved` bytes (or raises `save_raises`) as a download would."""

    def __init__(
        self,
        result: common_pb2.Result | None = None,
        raises: BaseException | None = None,
        saved: bytes = b"",
        save_raises: BaseException | None = None,
    ) -> None:
        self.result = result
        self.raises = raises
        self.saved = saved
        self.save_raises = save_raises
        self.saves: list[tuple[Path, Path | None]] = []
        self.cancelled = False
        self.job_id = "job-42"

    def wait(self, on_progress: Callable[[common_pb2.Progress], None] | None = None) -> common_pb2.Result:
        if on_progress is not None:
            on_progress(progress(common_pb2.STAGE_QUEUED))
        if self.raises is not None:
            raise self.raises
        assert self.result is not None
        return self.result

    def save(self, result: common_pb2.Result, output: Path, frames_dir: Path | None = None) -> None:
        assert result is self.result
        self.saves.append((output, frames_dir))
        if self.save_raises is not None:
            raise self.save_raises
        output.write_bytes(self.saved)

    def cancel(self) -> None:
        self.cancelled = True


class _Starter:
    def __init__(self, call: _ResultCall) -> None:
        self.call = call

    def generate(self, request: common_pb2.GenerationRequest, *, timeout: float | None = None) -> _ResultCall:
        return self.call

    def close(self) -> None:
        return None


def _generate(tmp_path: Path, call: _ResultCall) -> tuple[int, str, str, Path]:
    image = tmp_path / "in.png"
    image.write_bytes(b"png")
    out_path = tmp_path / "out.mp4"
    argv = ["generate", str(image), "--prompt", "p", "--target", "c:1,c:2", "-o", str(out_path)]
    connector = FakeConnector(generator=_Starter(call))
    code, out, err = run_cli(argv, connector)
    assert connector.asked == [("cluster_generator", ["c:1", "c:2"])]
    return code, out, err, out_path


def _stored(uri: str, video: bytes) -> common_pb2.Result:
    return common_pb2.Result(
        artifact_uri=uri,
        sha256=hashlib.sha256(video).hexdigest(),
        video_size=len(video),
        frames=2,
        width=64,
        height=64,
        fps=4,
    )


def test_generate_via_coordinator_saves_the_video_the_result_names(tmp_path: Path) -> None:
    call = _ResultCall(_stored("s3://bucket/jobs/j/out-1.mp4", b"mp4 bytes"), saved=b"mp4 bytes")
    code, out, _, out_path = _generate(tmp_path, call)
    assert code == 0 and call.saves == [(out_path, None)]
    assert out_path.read_bytes() == b"mp4 bytes"
    assert f"wrote {out_path}: 2 frames 64x64 @ 4 fps, 9 bytes" in out and "job job-42" in out


@pytest.mark.parametrize(
    ("raises", "code", "words"),
    [
        pytest.param(
            CallError(grpc.StatusCode.DATA_LOSS, "hash mismatch"),
            EXIT_FAILED,
            "error: DATA_LOSS: hash mismatch",
            id="failed-download",
        ),
        pytest.param(
            KeyboardInterrupt(), EXIT_INTERRUPTED, "not written; job job-42 keeps its video", id="ctrl-c"
        ),
    ],
)
def test_generate_via_coordinator_says_when_the_video_could_not_be_saved(
    tmp_path: Path, raises: BaseException, code: int, words: str
) -> None:
    call = _ResultCall(_stored("file:///s/out-1.mp4", b"v"), save_raises=raises)
    got, _, err, out_path = _generate(tmp_path, call)
    assert got == code and words in err and not out_path.exists() and not call.cancelled


def test_ctrl_c_on_generate_cancels_the_job(tmp_path: Path) -> None:
    call = _ResultCall(raises=KeyboardInterrupt())
    code, _, err, _ = _generate(tmp_path, call)
    assert code == EXIT_INTERRUPTED and call.cancelled
    assert "interrupted: job job-42 was cancelled" in err
