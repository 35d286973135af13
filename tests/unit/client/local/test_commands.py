"""`i2v up` and `i2v down` as commands: flags, refusals, and down's stop by recorded pid."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from i2v_client import cli
from i2v_client.local import procinfo, state
from i2v_client.local.plan import GIB, NODE
from i2v_client.local.state import Record, Started


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        code = cli.main(argv, env=env or {}, out=out, err=err)
    except SystemExit as exc:  # bad usage, as argparse does
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_up_and_down_need_no_address_and_take_the_state_dir_from_the_environment(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(["up", "--detach", "--cpu-nodes", "12GiB,0"])
    cli.args.resolve_where(args, {"I2V_STATE_DIR": str(tmp_path)})
    # later commands in the same environment find it without a flag
    assert args.state == tmp_path and args.flags == "" and args.targets is None
    assert args.cpu_nodes == (12 * GIB, 0) and args.detach and args.device == "auto"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["up", "--cpu-nodes", "10GiB,lots"], "'lots' is not a size", id="bad-size"),
        pytest.param(
            ["up", "--cpu-nodes", ",".join(["1GiB"] * 17)], "give 1..16 nodes, got 17", id="too-many"
        ),
        pytest.param(["up", "--device", "tpu"], "invalid choice: 'tpu'", id="bad-device"),
        pytest.param(
            ["down", "--target", "c:1"], "unrecognized arguments: --target c:1", id="down-takes-no-target"
        ),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    code, _, err = run(argv)
    assert code == 2 and message in err


def test_up_without_etcd_says_how_to_get_it(tmp_path: Path) -> None:
    code, _, err = run(["up", "--state-dir", str(tmp_path)], {"PATH": str(tmp_path)})
    assert code == 2 and "etcd not found: install it (apt-get install etcd-server) or set ETCD_BIN" in err
    assert state.read(tmp_path) is None


def recorded(root: Path, *procs: Started) -> Record:
    record = Record(Started("i2v up", "supervisor", 2**22 + 99, 1), detached=True, ready=True)
    record.procs = list(procs)
    state.write(root, record)
    return record


def test_a_second_up_says_one_runs_and_starts_nothing(tmp_path: Path) -> None:
    me = state.me()
    recorded(
        tmp_path,
        Started("etcd", "etcd", me.pid, me.start, "127.0.0.1:1"),
        Started("c1", "coordinator", 2**22 + 1, 1, "127.0.0.1:2"),
    )
    code, _, err = run(["up", "--state-dir", str(tmp_path)])
    assert code == 1
    assert "a local cluster is already running from" in err and "1 of 2 processes alive (etcd)" in err
    assert f"stop it with: i2v down --state-dir {tmp_path}" in err


def test_up_while_another_holds_the_state_dir(tmp_path: Path) -> None:
    with state.locked(tmp_path):
        code, _, err = run(["up", "--state-dir", str(tmp_path)])
    assert code == 1 and "i2v down is busy" in err


def test_down_with_nothing_recorded(tmp_path: Path) -> None:
    code, out, _ = run(["down", "--state-dir", str(tmp_path)])
    assert code == 0 and "nothing to stop" in out


def test_down_stops_the_recorded_processes_and_forgets_them(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        stat = procinfo.read_stat(sleeper.pid)
        assert stat is not None
        recorded(
            tmp_path, Started("n1", NODE, sleeper.pid, stat.start), Started("etcd", "etcd", 2**22 + 2, 1)
        )
        code, out, _ = run(["down", "--state-dir", str(tmp_path)])
        assert code == 0 and sleeper.wait(5) == -15
        assert "stopping n1\n" in out and "etcd         etcd         was not running" in out
        assert state.read(tmp_path) is None
    finally:
        sleeper.kill()


def test_down_asks_a_foreground_up_to_stop_its_own_cluster(tmp_path: Path) -> None:
    # stands in for a foreground `i2v up`: on SIGTERM it stops "its cluster" and forgets it
    script = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        f"    pathlib.Path({str(tmp_path / state.RECORD)!r}).unlink()\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    up = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None and up.stdout.readline() == "up\n"
        stat = procinfo.read_stat(up.pid)
        assert stat is not None
        record = Record(Started("i2v up", "supervisor", up.pid, stat.start), detached=False, ready=True)
        state.write(tmp_path, record)
        code, out, _ = run(["down", "--state-dir", str(tmp_path)])
        assert code == 0 and up.wait(5) == 0
        assert out == f"asking i2v up (pid {up.pid}) to stop the cluster\nstopped by i2v up\n"
    finally:
        up.kill()
