from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from i2v_client import CallError, GenerateCall, JobPage, cli
from i2v_client.progress import Mode, ProgressDisplay, mode_for, render, stage_name, worth_a_line
from i2v_contract.wire import common_pb2, coordinator_pb2


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


def run_cli(argv: list[str], client: object, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setattr(cli, "connect", lambda args: client)
    monkeypatch.setattr(cli, "coordinator", lambda args: client)
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(argv)
    cli.resolve_where(args, {})
    code: int = args.run(args, out, err)
    return code, out.getvalue(), err.getvalue()


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
        ["generate", "in.png", "--prompt", "p", "-o", "o.mp4"],  # no --node, no --target, no env
        ["generate", "in.png", "--prompt", "p", "--node", "h:1", "--target", "c:1", "-o", "o.mp4"],
        ["status"],  # no --target and no env
        ["jobs", "--target", "c:1", "--state", "queued,bogus"],
        ["jobs", "--target", "c:1", "--limit", "-3"],
        ["get", "--target", "c:1"],  # no job id
        ["status", "--target", " , "],
        ["generate", "in.png", "--node", "h:1", "-o", "o.mp4"],  # no --prompt
        ["generate", "in.png", "--prompt", "p", "--node", "h:1", "-o", "o.mp4", "--frames", "-1"],
        [],  # no subcommand
    ],
)
def test_usage_errors_exit_2(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.TARGETS_ENV, raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


# --- where to run --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "targets"),
    [
        (["--node", "n:1"], {"I2V_TARGETS": "c:1"}, None),  # a node wins over the environment
        (["--target", "c:1,c:2"], {}, ["c:1", "c:2"]),
        ([], {"I2V_TARGETS": "c:3, c:4"}, ["c:3", "c:4"]),
        (["--target", "c:1"], {"I2V_TARGETS": "c:9"}, ["c:1"]),  # the flag wins over the environment
    ],
)
def test_resolve_where(argv: list[str], env: dict[str, str], targets: list[str] | None) -> None:
    args = cli.build_parser().parse_args(["generate", "in.png", "--prompt", "p", "-o", "o.mp4", *argv])
    cli.resolve_where(args, env)
    assert args.targets == targets


def test_cluster_commands_take_targets_from_the_environment() -> None:
    args = cli.build_parser().parse_args(["jobs", "--state", "queued,running", "--limit", "5"])
    cli.resolve_where(args, {"I2V_TARGETS": "c:1"})
    assert args.targets == ["c:1"] and args.limit == 5
    assert args.state == [coordinator_pb2.JOB_QUEUED, coordinator_pb2.JOB_RUNNING]


def test_missing_target_message_says_what_to_pass(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(cli.TARGETS_ENV, raising=False)
    with pytest.raises(SystemExit):
        cli.main(["watch", "j1"])
    assert "--target ADDR[,ADDR...] (or set I2V_TARGETS)" in capsys.readouterr().err


# --- generate through the coordinators -----------------------------------------------------------


class _ResultCall:
    """A CoordinatorCall stand-in: replays progress, then returns (or raises) once."""

    def __init__(self, result: common_pb2.Result | None = None, raises: BaseException | None = None) -> None:
        self.result = result
        self.raises = raises
        self.cancelled = False
        self.job_id = "job-42"

    def wait(self, on_progress: Callable[[common_pb2.Progress], None] | None = None) -> common_pb2.Result:
        if on_progress is not None:
            on_progress(progress(common_pb2.STAGE_QUEUED))
        if self.raises is not None:
            raise self.raises
        assert self.result is not None
        return self.result

    def cancel(self) -> None:
        self.cancelled = True


class _Starter:
    def __init__(self, call: _ResultCall) -> None:
        self.call = call

    def generate(self, request: common_pb2.GenerationRequest, *, timeout: float | None = None) -> _ResultCall:
        return self.call

    def close(self) -> None:
        return None


def _generate(
    tmp_path: Path, call: _ResultCall, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str, Path]:
    image = tmp_path / "in.png"
    image.write_bytes(b"png")
    out_path = tmp_path / "out.mp4"
    argv = ["generate", str(image), "--prompt", "p", "--target", "c:1,c:2", "-o", str(out_path)]
    code, out, err = run_cli(argv, _Starter(call), monkeypatch)
    return code, out, err, out_path


def _stored(uri: str, video: bytes) -> common_pb2.Result:
    return common_pb2.Result(
        artifact_uri=uri, sha256=hashlib.sha256(video).hexdigest(), frames=2, width=64, height=64, fps=4
    )


def test_generate_via_coordinator_fetches_a_local_file_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = tmp_path / "store" / "out-1.mp4"
    stored.parent.mkdir()
    stored.write_bytes(b"mp4 bytes")
    code, out, _, out_path = _generate(
        tmp_path, _ResultCall(_stored(stored.as_uri(), b"mp4 bytes")), monkeypatch
    )
    assert code == 0
    assert out_path.read_bytes() == b"mp4 bytes"
    assert f"wrote {out_path}: 2 frames 64x64 @ 4 fps, 9 bytes" in out and "job job-42" in out


def test_generate_via_coordinator_prints_a_remote_uri_instead_of_an_empty_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = _ResultCall(_stored("s3://bucket/jobs/j/out-1.mp4", b"elsewhere"))
    code, out, _, out_path = _generate(tmp_path, call, monkeypatch)
    assert code == 0 and not out_path.exists()
    assert "video stored at s3://bucket/jobs/j/out-1.mp4 (not written to" in out


def test_generate_via_coordinator_checks_a_fetched_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = tmp_path / "out-1.mp4"
    stored.write_bytes(b"truncated")
    code, _, err, out_path = _generate(
        tmp_path, _ResultCall(_stored(stored.as_uri(), b"the real video")), monkeypatch
    )
    assert code == cli.EXIT_FAILED and "error: DATA_LOSS" in err and not out_path.exists()


def test_ctrl_c_on_generate_cancels_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    call = _ResultCall(raises=KeyboardInterrupt())
    code, _, err, _ = _generate(tmp_path, call, monkeypatch)
    assert code == cli.EXIT_INTERRUPTED and call.cancelled
    assert "interrupted: job job-42 was cancelled" in err


@pytest.mark.parametrize(
    ("uri", "readable"),
    [("file:///definitely/not/here.mp4", False), ("s3://b/k", False), ("file://otherhost/x.mp4", False)],
)
def test_read_local_artifact_only_reads_local_files(uri: str, readable: bool) -> None:
    assert (cli.read_local_artifact(uri) is not None) is readable


# --- status / jobs / get / cancel / watch -------------------------------------------------------


def _job(job_id: str, state: int, **kw: object) -> coordinator_pb2.Job:
    return coordinator_pb2.Job(job_id=job_id, state=state, attempt=1, **kw)  # type: ignore[arg-type]


class _FakeCoordinator:
    def __init__(
        self, error: CallError | None = None, events: list[coordinator_pb2.JobEvent] | None = None
    ) -> None:
        self.error = error
        self.events = events or []
        self.calls: list[tuple[str, object]] = []
        self.closed = False

    def _answer(self, name: str, arg: object, value: object) -> object:
        self.calls.append((name, arg))
        if self.error is not None:
            raise self.error
        return value

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse:
        status = coordinator_pb2.ClusterStatusResponse(
            leader_id="c1", leader_addr="h:1", epoch=9, answered_by="c2", nodes_set_aside=1
        )
        return self._answer("status", None, status)  # type: ignore[return-value]

    def list_nodes(self) -> coordinator_pb2.ListNodesResponse:
        node = coordinator_pb2.NodeInfo(node_id="n1", addr="h:7", tier=common_pb2.TIER_CPU, model="tiny")
        aside = coordinator_pb2.NodeInfo(
            node_id="n2", addr="h:8", set_aside=True, consecutive_failures=3, health_reason="INTERNAL: disk"
        )
        return self._answer("nodes", None, coordinator_pb2.ListNodesResponse(nodes=[node, aside]))  # type: ignore[return-value]

    def list_jobs(self, states: list[int], limit: int, page_token: str) -> JobPage:
        jobs = (
            _job("j2", coordinator_pb2.JOB_RUNNING, node_id="n1"),
            _job("j1", coordinator_pb2.JOB_SUCCEEDED),
        )
        return self._answer("jobs", (states, limit, page_token), JobPage(jobs, ""))  # type: ignore[return-value]

    def get(self, job_id: str) -> coordinator_pb2.Job:
        return self._answer("get", job_id, _job(job_id, coordinator_pb2.JOB_QUEUED))  # type: ignore[return-value]

    def cancel(self, job_id: str) -> coordinator_pb2.Job:
        return self._answer("cancel", job_id, _job(job_id, coordinator_pb2.JOB_CANCELLED))  # type: ignore[return-value]

    def watch(
        self,
        job_id: str,
        on_event: Callable[[coordinator_pb2.JobEvent], None],
        *,
        on_pause: Callable[[str], None],
    ) -> coordinator_pb2.JobEvent:
        self._answer("watch", job_id, None)
        for event in self.events[:-1]:
            on_event(event)
        on_pause("c:1 answered UNAVAILABLE; re-attaching via c:2")
        on_event(self.events[-1])
        return self.events[-1]

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("argv", "call", "expected"),
    [
        (
            ["status"],
            ("nodes", None),
            [
                "leader c1 at h:1, epoch 9 (answered by c2)",
                "n1",
                "tiny",
                "held back: 0 cooling down, 1 set aside",
                "SET ASIDE after 3 failed: INTERNAL: disk",
            ],
        ),
        (
            ["jobs", "--state", "running,succeeded", "--limit", "7"],
            ("jobs", ([3, 4], 7, "")),
            ["j2", "running", "n1", "j1"],
        ),
        (["get", "j5"], ("get", "j5"), ["j5 queued attempt 1"]),
        (["cancel", "j6"], ("cancel", "j6"), ["j6 cancelled attempt 1"]),
    ],
)
def test_cluster_commands_print_what_the_coordinator_says(
    argv: list[str], call: tuple[str, object], expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeCoordinator()
    code, out, err = run_cli([*argv, "--target", "c:1"], fake, monkeypatch)
    assert code == 0, err
    assert call in fake.calls and fake.closed
    for words in expected:
        assert words in out


class _PagedCoordinator(_FakeCoordinator):
    """ListJobs over `count` jobs, newest first; `skipping` ids come back as empty, short pages (as when a
    state filter skipped them). Tokens are the index of the next job."""

    def __init__(self, count: int, skipping: range = range(0)) -> None:
        super().__init__()
        self.ids = [f"j{i}" for i in reversed(range(count))]
        self.skipping = {f"j{i}" for i in skipping}

    def list_jobs(self, states: list[int], limit: int, page_token: str) -> JobPage:
        start = int(page_token or 0)
        scanned = self.ids[start : start + min(limit or 100, 1000)]
        jobs = tuple(_job(j, coordinator_pb2.JOB_SUCCEEDED) for j in scanned if j not in self.skipping)
        end = start + len(scanned)
        self.calls.append(("jobs", (limit, page_token)))
        return JobPage(jobs, str(end) if end < len(self.ids) else "")


def _listed(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_jobs_shows_twenty_by_default_and_says_how_to_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _PagedCoordinator(45)
    code, out, err = run_cli(["jobs", "--target", "c:1"], fake, monkeypatch)
    assert code == 0 and _listed(out) == [f"j{i}" for i in range(44, 24, -1)]
    assert err == "more jobs: go on with --page-token 20 (same --state), or --all\n"
    code, out, err = run_cli(["jobs", "--target", "c:1", "--page-token", "40"], fake, monkeypatch)
    assert code == 0 and _listed(out) == ["j4", "j3", "j2", "j1", "j0"] and err == ""


def test_jobs_limit_follows_short_filtered_pages_until_it_has_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _PagedCoordinator(30, skipping=range(10, 25))
    code, out, err = run_cli(["jobs", "--target", "c:1", "--limit", "8"], fake, monkeypatch)
    assert code == 0 and _listed(out) == ["j29", "j28", "j27", "j26", "j25", "j9", "j8", "j7"]
    assert [arg for _, arg in fake.calls] == [(8, ""), (3, "8"), (3, "11"), (3, "14"), (3, "17"), (3, "20")]
    assert "--page-token 23" in err


def test_jobs_all_follows_every_token_to_the_end_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _PagedCoordinator(2500)
    code, out, err = run_cli(["jobs", "--target", "c:1", "--all"], fake, monkeypatch)
    assert code == 0 and len(_listed(out)) == 2500 and err == ""
    assert [arg for _, arg in fake.calls] == [(1000, ""), (1000, "1000"), (1000, "2000")]
    monkeypatch.setattr(cli, "JOBS_ALL_MAX", 1500)
    code, out, err = run_cli(["jobs", "--target", "c:1", "--all"], _PagedCoordinator(2500), monkeypatch)
    assert code == 0 and len(_listed(out)) == 1500
    assert err == "more jobs: go on with --page-token 1500 (same --state)\n"


def test_jobs_stops_after_a_bounded_number_of_requests_and_says_where(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "PAGES_MAX", 4)
    fake = _PagedCoordinator(100, skipping=range(0, 95))  # a rare state over a long history
    code, out, err = run_cli(["jobs", "--target", "c:1", "--limit", "10"], fake, monkeypatch)
    assert code == 0 and _listed(out) == [f"j{i}" for i in range(99, 94, -1)] and len(fake.calls) == 4
    assert "--page-token 25" in err


def test_jobs_refuses_a_token_that_does_not_move(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stuck(_PagedCoordinator):
        def list_jobs(self, states: list[int], limit: int, page_token: str) -> JobPage:
            return JobPage((), "x")

    code, out, err = run_cli(["jobs", "--target", "c:1", "--page-token", "x"], Stuck(1), monkeypatch)
    assert code == cli.EXIT_FAILED and out == "" and "same page token" in err


def test_jobs_limit_and_all_exclude_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        run_cli(["jobs", "--target", "c:1", "--all", "--limit", "3"], _PagedCoordinator(1), monkeypatch)


def test_cluster_command_errors_exit_1_with_code_and_message(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeCoordinator(CallError(grpc.StatusCode.FAILED_PRECONDITION, "job j1 already SUCCEEDED"))
    code, out, err = run_cli(["cancel", "j1", "--target", "c:1"], fake, monkeypatch)
    assert code == cli.EXIT_FAILED and out == ""
    assert err == "error: FAILED_PRECONDITION: job j1 already SUCCEEDED\n"


def test_watch_shows_states_progress_and_a_pause_then_the_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    done = coordinator_pb2.JobEvent(job_id="j1", state=coordinator_pb2.JOB_SUCCEEDED)
    done.result.artifact_uri = "file:///s/o.mp4"
    events = [
        coordinator_pb2.JobEvent(job_id="j1", state=coordinator_pb2.JOB_ASSIGNED, node_id="n1", attempt=1),
        coordinator_pb2.JobEvent(
            job_id="j1", state=coordinator_pb2.JOB_RUNNING, progress=progress(common_pb2.STAGE_DENOISE, 1, 2)
        ),
        done,
    ]
    code, out, err = run_cli(["watch", "j1", "--target", "c:1"], _FakeCoordinator(events=events), monkeypatch)
    assert code == 0 and out == "job j1 succeeded: file:///s/o.mp4\n"
    lines = err.splitlines()
    assert lines[0].startswith("assigned") and "on n1, attempt 1" in lines[0]
    assert lines[1].startswith("denoise") and "1/2" in lines[1]
    # The pause repeats the bar where it stood, with why: not an error.
    assert (
        lines[2].startswith("denoise")
        and "1/2" in lines[2]
        and "paused: c:1 answered UNAVAILABLE" in lines[2]
    )
    assert "error" not in err


def test_watch_of_a_failed_job_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = coordinator_pb2.JobEvent(
        job_id="j1", state=coordinator_pb2.JOB_FAILED, error="oom", error_code=8
    )
    code, _, err = run_cli(["watch", "j1", "--target", "c:1"], _FakeCoordinator(events=[failed]), monkeypatch)
    assert code == cli.EXIT_FAILED and "error: RESOURCE_EXHAUSTED: job j1 failed: oom" in err
