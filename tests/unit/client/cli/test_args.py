from __future__ import annotations

import io

import pytest

from i2v_client import cli
from i2v_client.cli.args import build_parser, resolve_where
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
