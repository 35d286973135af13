from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from i2v_contract import cli
from i2v_contract.client import CallError, GenerateCall, build_request, checked
from i2v_contract.progress import Mode, ProgressDisplay, mode_for, render, stage_name, worth_a_line
from i2v_contract.v1 import common_pb2


def progress(
    stage: int, step: int = 0, total: int = 0, elapsed: float = 1.0, **kw: str
) -> common_pb2.Progress:
    return common_pb2.Progress(stage=stage, step=step, total_steps=total, elapsed_s=elapsed, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stage", "name"),
    [
        (common_pb2.STAGE_DENOISE, "denoise"),
        (common_pb2.STAGE_ENCODE_VIDEO, "encode_video"),
        (999, "unspecified"),
    ],
)
def test_stage_name(stage: int, name: str) -> None:
    assert stage_name(stage) == name


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (
            progress(common_pb2.STAGE_DENOISE, 5, 10, 3.25),
            ["denoise", "[" + "#" * 12 + "." * 12 + "] 5/10", "3.2s"],
        ),
        (progress(common_pb2.STAGE_DECODE, profile="chunked"), ["decode", "profile chunked"]),
        (progress(common_pb2.STAGE_RETRY, message="out of memory"), ["retry", "out of memory"]),
    ],
)
def test_render(p: common_pb2.Progress, expected: list[str]) -> None:
    line = render(p)
    for part in expected:
        assert part in line


def test_render_has_bar_only_while_denoising() -> None:
    assert "[" not in render(progress(common_pb2.STAGE_ENCODE_PROMPT))
    assert "[" not in render(progress(common_pb2.STAGE_DECODE, 0, 10))


@pytest.mark.parametrize(
    ("step", "total", "previous_stage", "expected"),
    [
        (1, 50, None, True),  # first event
        (1, 50, common_pb2.STAGE_ENCODE_IMAGE, True),  # stage change
        (3, 50, common_pb2.STAGE_DENOISE, False),
        (5, 50, common_pb2.STAGE_DENOISE, True),  # every tenth
        (50, 50, common_pb2.STAGE_DENOISE, True),
        (3, 7, common_pb2.STAGE_DENOISE, True),  # few steps: each
    ],
)
def test_worth_a_line(step: int, total: int, previous_stage: int | None, expected: bool) -> None:
    previous = None if previous_stage is None else progress(previous_stage, max(0, step - 1), total)
    assert worth_a_line(progress(common_pb2.STAGE_DENOISE, step, total), previous) is expected


def test_mode_for() -> None:
    assert mode_for(io.StringIO(), quiet=False) is Mode.LINES
    assert mode_for(io.StringIO(), quiet=True) is Mode.QUIET


def test_display_lines_and_bar() -> None:
    events = [progress(common_pb2.STAGE_ENCODE_PROMPT)] + [
        progress(common_pb2.STAGE_DENOISE, i, 20) for i in range(1, 21)
    ]
    lines, bar, quiet = io.StringIO(), io.StringIO(), io.StringIO()
    for mode, stream in ((Mode.LINES, lines), (Mode.BAR, bar), (Mode.QUIET, quiet)):
        display = ProgressDisplay(stream, mode)
        for e in events:
            display.update(e)
        display.close()
    # encode_prompt, the first denoise step (a stage change), then every second step
    assert len(lines.getvalue().splitlines()) == 1 + 1 + 10
    assert bar.getvalue().count("\r") == len(events)
    assert bar.getvalue().endswith("\n")
    assert quiet.getvalue() == ""


def test_build_request_defaults_and_seed() -> None:
    req = build_request(b"img", prompt="a cat")
    assert not req.HasField("seed")
    assert req.width == 0
    assert build_request(b"img", prompt="a cat", seed=0).HasField("seed")


def test_checked_rejects_corrupt_video() -> None:
    good = common_pb2.Result(video=b"abc", sha256=hashlib.sha256(b"abc").hexdigest())
    assert checked(good) is good
    with pytest.raises(CallError) as exc:
        checked(common_pb2.Result(video=b"abd", sha256=good.sha256))
    assert exc.value.code is grpc.StatusCode.DATA_LOSS


class _FakeCall:
    def __init__(self, events: list[common_pb2.GenerateEvent], error: CallError | None = None) -> None:
        self.events_ = events
        self.error = error
        self.cancelled = False

    def __iter__(self) -> Iterator[common_pb2.GenerateEvent]:
        yield from self.events_
        if self.error is not None:
            raise _RpcError(self.error)

    def cancel(self) -> None:
        self.cancelled = True


class _RpcError(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, err: CallError) -> None:
        self.err = err

    def code(self) -> grpc.StatusCode:
        return self.err.code

    def details(self) -> str:
        return self.err.message


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


def run_cli(argv: list[str], client: _FakeClient, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setattr(cli, "connect", lambda args: client)
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(argv)
    return args.run(args, out, err), out.getvalue(), err.getvalue()


def test_generate_writes_video_and_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    out_path = tmp_path / "sub" / "out.mp4"
    argv = ["generate", str(image), "--prompt", "waves", "--frames", "8", "--width", "64", "--height", "64"]
    argv += ["--steps", "10", "--seed", "7", "--fps", "8", "--node", "127.0.0.1:1", "-o", str(out_path)]
    code, out, err = run_cli(argv, client, monkeypatch)
    assert code == 0, err
    assert out_path.read_bytes() == video
    assert "8 frames 64x64 @ 8 fps" in out
    assert "seed 7" in out and "profile fast" in out and "peak 3.0 MiB" in out
    assert "denoise" in err  # plain progress lines when stderr is not a terminal
    sent = client.requests[0]
    assert (sent.width, sent.height, sent.frames, sent.steps, sent.fps, sent.seed) == (64, 64, 8, 10, 8, 7)
    assert sent.image == b"png bytes"


def test_generate_reports_server_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"x")
    error = CallError(grpc.StatusCode.INVALID_ARGUMENT, "width: 65 is not a multiple of 8")
    client = _FakeClient(_FakeCall([], error))
    out_path = tmp_path / "out.mp4"
    code, _, err = run_cli(
        ["generate", str(image), "--prompt", "p", "--node", "h:1", "-o", str(out_path)], client, monkeypatch
    )
    assert code == cli.EXIT_FAILED
    assert "error: INVALID_ARGUMENT: width: 65 is not a multiple of 8" in err
    assert not out_path.exists()


def test_generate_missing_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    code, _, err = run_cli(argv, client, monkeypatch)
    assert code == cli.EXIT_USAGE
    assert "cannot read image" in err
    assert client.requests == []


def test_stream_without_result_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"x")
    client = _FakeClient(
        _FakeCall([common_pb2.GenerateEvent(progress=progress(common_pb2.STAGE_DENOISE, 1, 2))])
    )
    code, _, err = run_cli(
        ["generate", str(image), "--prompt", "p", "--node", "h:1", "-o", str(tmp_path / "o.mp4")],
        client,
        monkeypatch,
    )
    assert code == cli.EXIT_FAILED
    assert "UNKNOWN: the stream ended without a result" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "in.png", "--prompt", "p", "-o", "o.mp4"],  # no --node
        ["generate", "in.png", "--node", "h:1", "-o", "o.mp4"],  # no --prompt
        ["generate", "in.png", "--prompt", "p", "--node", "h:1", "-o", "o.mp4", "--frames", "-1"],
        [],  # no subcommand
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
