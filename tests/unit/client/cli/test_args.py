from __future__ import annotations

import io
from pathlib import Path

import pytest

from i2v_client import cli
from i2v_client.cli.args import build_parser, resolve_where
from i2v_contract.version import package_version
from i2v_contract.wire import coordinator_pb2
from tests.fakes.client import FakeConnector, run_cli


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["generate", "in.png", "--prompt", "p", "-o", "o.mp4"], id="no-node-no-target-no-env"),
        pytest.param(
            ["generate", "in.png", "--prompt", "p", "--node", "h:1", "--target", "c:1", "-o", "o.mp4"],
            id="node-and-target",
        ),
        pytest.param(["status"], id="status-without-target-or-env"),
        pytest.param(["jobs", "--target", "c:1", "--state", "queued,bogus"], id="unknown-state"),
        pytest.param(["jobs", "--target", "c:1", "--limit", "-3"], id="negative-limit"),
        pytest.param(["get", "--target", "c:1"], id="no-job-id"),
        pytest.param(["status", "--target", " , "], id="blank-targets"),
        pytest.param(["generate", "in.png", "--node", "h:1", "-o", "o.mp4"], id="no-prompt"),
        pytest.param(
            ["generate", "in.png", "--prompt", "p", "--node", "h:1", "-o", "o.mp4", "--frames", "-1"],
            id="negative-frames",
        ),
        pytest.param(
            ["generate", "in.png", "--prompt", "p", "--node", "h:1", "-o", "o.mp4", "--seed", str(2**64)],
            id="seed-above-64-bits",
        ),
        pytest.param([], id="no-subcommand"),
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_cli(argv, FakeConnector())
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("argv", "env", "targets"),
    [
        pytest.param(["--node", "n:1"], {"I2V_TARGETS": "c:1"}, None, id="a-node-wins-over-the-environment"),
        pytest.param(["--target", "c:1,c:2"], {}, ["c:1", "c:2"], id="the-flag"),
        pytest.param([], {"I2V_TARGETS": "c:3, c:4"}, ["c:3", "c:4"], id="the-environment"),
        pytest.param(
            ["--target", "c:1"], {"I2V_TARGETS": "c:9"}, ["c:1"], id="the-flag-wins-over-the-environment"
        ),
    ],
)
def test_resolve_where(argv: list[str], env: dict[str, str], targets: list[str] | None) -> None:
    args = build_parser().parse_args(["generate", "in.png", "--prompt", "p", "-o", "o.mp4", *argv])
    resolve_where(args, env)
    assert args.targets == targets


def test_cluster_commands_take_targets_from_the_environment() -> None:
    args = build_parser().parse_args(["jobs", "--state", "queued,running", "--limit", "5"])
    resolve_where(args, {"I2V_TARGETS": "c:1"})
    assert args.targets == ["c:1"] and args.limit == 5
    assert args.state == [coordinator_pb2.JOB_STATE_QUEUED, coordinator_pb2.JOB_STATE_RUNNING]


def test_missing_target_message_says_what_to_pass() -> None:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit):
        cli.main(["watch", "j1"], {}, FakeConnector(), out=out, err=err)
    assert "--target ADDR[,ADDR...] (or set I2V_TARGETS)" in err.getvalue()


def test_a_seed_may_be_any_64_bit_value() -> None:
    argv = ["generate", "in.png", "--prompt", "p", "--node", "h:1", "-o", "o.mp4", "--seed", str(2**64 - 1)]
    assert build_parser().parse_args(argv).seed == 2**64 - 1


def _refusal(argv: list[str], env: dict[str, str] | None = None) -> str:
    """The one line `i2v argv` refuses with (exit 2), having asked the connector for nothing."""
    connector = FakeConnector()
    err = io.StringIO()
    with pytest.raises(SystemExit) as exc:
        cli.main(argv, env or {}, connector, out=io.StringIO(), err=err)
    assert exc.value.code == 2 and connector.asked == []  # nothing dialled
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


GEN = ["generate", "in.png", "--prompt", "p", "-o", "o.mp4"]


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        pytest.param([*GEN, "--node", "foo"], {}, "--node 'foo': expected HOST:PORT", id="node-without-port"),
        pytest.param(
            [*GEN, "--target", "http://x:1"],
            {},
            "--target 'http://x:1': give HOST:PORT without a scheme",
            id="target-with-a-scheme",
        ),
        pytest.param(
            [*GEN, "--node", "127.0.0.1:99999"],
            {},
            "port 99999 is out of range; use 1..65535",
            id="port-range",
        ),
        pytest.param(
            ["status"], {"I2V_TARGETS": "c:1,oops"}, "$I2V_TARGETS 'oops': expected HOST:PORT", id="env-entry"
        ),
        pytest.param(
            ["watch", "j1", "--target", "c:1,c:2:3:4"], {}, "IPv6 host in brackets", id="cluster-command"
        ),
    ],
)
def test_addresses_are_checked_before_anything_is_dialled(
    argv: list[str], env: dict[str, str], says: str
) -> None:
    line = _refusal(argv, env)
    assert line.startswith(f"i2v {argv[0]}: error: ") and says in line


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        pytest.param(
            "--fps", "0.5", "argument --fps: '0.5' is not a whole number; use 1..60, or 0 for", id="fps-half"
        ),
        pytest.param("--fps", "61", "argument --fps: 61 is out of range; use 1..60", id="fps-high"),
        pytest.param(
            "--frames", "-1", "argument --frames: -1 is out of range; use 1..64", id="frames-negative"
        ),
        pytest.param(
            "--steps", "many", "argument --steps: 'many' is not a whole number; use 1..200", id="steps-word"
        ),
        pytest.param(
            "--guidance",
            "0.5",
            "argument --guidance: 0.5 is out of range; use 1..30, or 0",
            id="guidance-low",
        ),
        pytest.param("--guidance", "nan", "argument --guidance: 'nan' is not a number", id="guidance-nan"),
        pytest.param(
            "--width",
            "2000",
            "argument --width: 2000 is out of range; use 64..1280 in steps of 8",
            id="width",
        ),
        pytest.param(
            "--seed", "-1", "argument --seed: -1 is out of range; use 0..18446744073709551615", id="seed"
        ),
        pytest.param(
            "--timeout", "-5", "argument --timeout: -5 is out of range; use more than 0", id="timeout"
        ),
    ],
)
def test_values_are_refused_naming_the_flag_and_the_range(flag: str, value: str, says: str) -> None:
    assert says in _refusal([*GEN, "--node", "n:1", flag, value])


def test_a_refusal_never_echoes_unbounded_input() -> None:
    assert len(_refusal([*GEN, "--node", "n:1", "--fps", "9" * 5000 + "x"])) < 400
    assert len(_refusal(["x" * 5000])) < 400  # argparse's own "invalid choice"


def test_frames_dir_through_the_coordinators_is_accepted_and_makes_nothing_yet(tmp_path: Path) -> None:
    # The coordinators store a job's frames and Download serves them, so --target takes --frames-dir.
    frames = tmp_path / "frames"
    args = build_parser().parse_args([*GEN, "--target", "c:1", "--frames-dir", str(frames)])
    resolve_where(args, {})
    assert args.targets == ["c:1"] and args.frames_dir == frames and not frames.exists()


def test_version_is_the_installed_package_version() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"], {}, FakeConnector(), out=out, err=io.StringIO())
    assert exc.value.code == 0 and out.getvalue() == f"i2v {package_version()}\n"


def test_generate_help_groups_the_flags_and_shows_ranges_and_defaults() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"], {}, FakeConnector(), out=out, err=io.StringIO())
    text = " ".join(out.getvalue().split())
    groups = ["request (0 or omitted: the server's default):", "output:", "connection (one of"]
    assert [text.index(g) for g in groups] == sorted(text.index(g) for g in groups)
    assert "1..60 (default 8)" in text and "64..1280 in steps of 8 (default 512)" in text
    assert "1..200 (default 50)" in text and "time queued included" in text
