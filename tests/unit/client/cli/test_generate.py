from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from i2v_client import CallError, GenerateCall
from i2v_client.cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from i2v_client.errors import JobEnded
from i2v_contract.wire import common_pb2, coordinator_pb2
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


_CANCELLED = coordinator_pb2.Job(job_id="job-42", state=coordinator_pb2.JOB_STATE_CANCELLED)


class _ResultCall:
    """A CoordinatorCall stand-in: replays progress, then returns (or raises) once; `cancel` answers
    `cancel_answer` (a Job, None, or an exception to raise). `during` runs inside wait (the job);
    `save` writes `saved` bytes (or raises `save_raises`) as a download would."""

    def __init__(
        self,
        result: common_pb2.Result | None = None,
        raises: BaseException | None = None,
        cancel_answer: coordinator_pb2.Job | BaseException | None = _CANCELLED,
        during: Callable[[], None] = lambda: None,
        saved: bytes = b"",
        save_raises: BaseException | None = None,
    ) -> None:
        self.result = result
        self.raises = raises
        self.cancel_answer = cancel_answer
        self.during = during
        self.saved = saved
        self.save_raises = save_raises
        self.saves: list[tuple[Path, Path | None]] = []
        self.cancelled = False
        self.job_id = "job-42"

    def wait(
        self, on_progress: Callable[[common_pb2.Progress], None] | None = None, *, on_pause: object = None
    ) -> common_pb2.Result:
        if on_progress is not None:
            on_progress(progress(common_pb2.STAGE_QUEUED))
        self.during()
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

    def cancel(self) -> coordinator_pb2.Job | None:
        self.cancelled = True
        if isinstance(self.cancel_answer, BaseException):
            raise self.cancel_answer
        return self.cancel_answer


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


# --- fail fast, tell the truth ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "says"),
    [
        pytest.param(".", "is a directory; give a file name, such as", id="a-directory"),
        pytest.param("in.png/out.mp4", "in.png is a file, not a directory", id="under-a-file"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_submitting(
    tmp_path: Path, output: str, says: str
) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"png")
    connector = FakeConnector(generator=_Starter(_ResultCall(common_pb2.Result())))
    argv = ["generate", str(image), "--prompt", "p", "--target", "c:1", "-o", str(tmp_path / output)]
    code, out, err = run_cli(argv, connector)
    assert code == EXIT_USAGE and out == "" and says in err and err.startswith("error: -o ")
    assert connector.asked == []  # nothing was submitted


def test_a_failed_write_after_the_job_names_the_job_and_the_command_that_fetches_it(tmp_path: Path) -> None:
    video = b"mp4 bytes"
    result = common_pb2.Result(video=video, sha256=hashlib.sha256(video).hexdigest())
    blocked = tmp_path / "late"
    # The directory was free at the check; something took its name while the job ran.

    def take_the_name() -> None:
        blocked.write_bytes(b"a file now")

    call = _ResultCall(result, during=take_the_name)
    image = tmp_path / "in.png"
    image.write_bytes(b"png")
    out_path = blocked / "out.mp4"
    argv = ["generate", str(image), "--prompt", "p", "--target", "c:1,c:2", "-o", str(out_path)]
    code, out, err = run_cli(argv, FakeConnector(generator=_Starter(call)))
    assert code == EXIT_USAGE and out == ""
    last = err.splitlines()[-1]  # after the progress lines
    assert last.startswith(f"error: cannot write {out_path}: ")
    assert last.endswith(f"job job-42 keeps the video: i2v get job-42 -o {out_path} --target c:1,c:2")


def test_a_failed_write_of_a_node_run_saves_the_video_elsewhere(tmp_path: Path) -> None:
    video = b"node video"
    result = common_pb2.Result(video=video, sha256=hashlib.sha256(video).hexdigest())
    image = tmp_path / "in.png"
    image.write_bytes(b"png")
    out_path = tmp_path / "late" / "out.mp4"

    class _Blocking(_FakeClient):
        def generate(
            self, request: common_pb2.GenerationRequest, *, timeout: float | None = None
        ) -> GenerateCall:
            (tmp_path / "late").write_bytes(b"a file now")
            return super().generate(request, timeout=timeout)

    client = _Blocking(_FakeCall([common_pb2.GenerateEvent(result=result)]))
    argv = ["generate", str(image), "--prompt", "p", "--node", "n:1", "-o", str(out_path)]
    code, _, err = run_cli(argv, FakeConnector(generator=client))
    assert code == EXIT_USAGE and "; saved it to " in err
    saved = Path(err.rstrip().rsplit("; saved it to ", 1)[1].removesuffix(" instead"))
    try:
        assert saved.read_bytes() == video
    finally:
        saved.unlink()


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        pytest.param(_CANCELLED, "interrupted: job job-42 was cancelled", id="cancelled"),
        pytest.param(
            None, "interrupted before any coordinator was reached: no job was submitted", id="never-sent"
        ),
        pytest.param(
            CallError(grpc.StatusCode.NOT_FOUND, "no job 'job-42'"),
            "interrupted: the cluster has no job job-42, so there was nothing to cancel",
            id="never-created",
        ),
        pytest.param(
            CallError(grpc.StatusCode.FAILED_PRECONDITION, "job job-42 already SUCCEEDED (attempt 1)"),
            "interrupted: job job-42 already SUCCEEDED (attempt 1)",
            id="already-over",
        ),
        pytest.param(
            CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "cancel: the deadline passed"),
            "interrupted: could not cancel job job-42 (DEADLINE_EXCEEDED: cancel: the deadline passed); "
            "it may still run: i2v cancel job-42 --target c:1,c:2",
            id="unreachable",
        ),
        pytest.param(
            KeyboardInterrupt(),
            "interrupted again: job job-42 may still run: i2v cancel job-42 --target c:1,c:2",
            id="a-second-ctrl-c",
        ),
    ],
)
def test_ctrl_c_says_what_became_of_the_job(answer: object, says: str, tmp_path: Path) -> None:
    call = _ResultCall(raises=KeyboardInterrupt(), cancel_answer=answer)  # type: ignore[arg-type]
    code, _, err, _ = _generate(tmp_path, call)
    assert code == EXIT_INTERRUPTED and call.cancelled
    assert err.splitlines()[-1] == says and "error" not in err


def test_ctrl_c_on_one_node_cancels_the_run(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"png")

    class _Interrupted(_FakeCall):
        def __iter__(self) -> Iterator[common_pb2.GenerateEvent]:
            raise KeyboardInterrupt

    call = _Interrupted([])
    argv = ["generate", str(image), "--prompt", "p", "--node", "n:1", "-o", str(tmp_path / "o.mp4")]
    code, _, err = run_cli(argv, FakeConnector(generator=_FakeClient(call)))
    assert code == EXIT_INTERRUPTED and call.cancelled
    assert err == "interrupted: cancelled the run on node n:1\n"


@pytest.mark.parametrize(
    ("where", "kinds", "says"),
    [
        pytest.param(
            ["--node", "h:1"],
            {"h:1": "coordinator"},
            "error: h:1 is a coordinator, not a node: use --target h:1",
            id="node-flag-at-a-coordinator",
        ),
        pytest.param(
            ["--target", "h:1"],
            {"h:1": "node"},
            "error: h:1 is a node, not a coordinator: use --node h:1",
            id="target-flag-at-a-node",
        ),
        pytest.param(
            ["--node", "h:1"],
            {},
            "error: h:1 is not an i2v node (it answered UNIMPLEMENTED: Method not found!)",
            id="neither",
        ),
    ],
)
def test_the_wrong_kind_of_server_is_named(
    where: list[str], kinds: dict[str, str], says: str, tmp_path: Path
) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"png")
    wrong = CallError(grpc.StatusCode.UNIMPLEMENTED, "Method not found!", address="h:1")
    generator = (
        _Starter(_ResultCall(raises=wrong)) if where[0] == "--target" else _FakeClient(_FakeCall([], wrong))
    )
    connector = FakeConnector(generator=generator, kinds=kinds)
    argv = ["generate", str(image), "--prompt", "p", *where, "-o", str(tmp_path / "o.mp4")]
    code, _, err = run_cli(argv, connector)
    assert code == EXIT_USAGE and err.splitlines()[-1].startswith(says)
    assert ("kind", "h:1") in connector.asked


def test_a_job_cancelled_elsewhere_is_said_plainly(tmp_path: Path) -> None:
    ended = JobEnded(
        grpc.StatusCode.CANCELLED,
        "job job-42 cancelled: cancelled by the client",
        job_id="job-42",
        state=coordinator_pb2.JOB_STATE_CANCELLED,
    )
    code, _, err, _ = _generate(tmp_path, _ResultCall(raises=ended))
    assert code == EXIT_FAILED and err.splitlines()[-1] == "job job-42 was cancelled: cancelled by the client"


def test_the_node_is_given_the_timeout(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"png")
    timeouts: list[float | None] = []

    class _Timed(_FakeClient):
        def generate(
            self, request: common_pb2.GenerationRequest, *, timeout: float | None = None
        ) -> GenerateCall:
            timeouts.append(timeout)
            return super().generate(request, timeout=timeout)

    error = CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    argv = [
        "generate",
        str(image),
        "--prompt",
        "p",
        "--node",
        "n:1",
        "--timeout",
        "2.5",
        "-o",
        str(tmp_path / "o"),
    ]
    code, _, err = run_cli(argv, FakeConnector(generator=_Timed(_FakeCall([], error))))
    assert code == EXIT_FAILED and timeouts == [2.5] and "error: DEADLINE_EXCEEDED" in err
