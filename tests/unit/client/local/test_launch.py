"""Starting, waiting for and stopping the local cluster's processes, with real child processes."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest

from i2v_client.local import launch, state
from i2v_client.local.launch import Launcher, StartFailed
from i2v_client.local.plan import COORDINATOR, ETCD, NODE, Proc
from i2v_client.local.state import Record, Started

# Says it is up, then on SIGTERM notes the time it heard it (or ignores it) and exits.
CHILD = """
import signal, sys, time
name, mode, notes = sys.argv[1:4]
def term(*_):
    with open(notes, "a") as f:
        f.write(f"{name} {time.monotonic()}\\n")
    if mode != "stubborn":
        sys.exit(0)
signal.signal(signal.SIGTERM, term)
print(name, "up", "NOTIFY_SOCKET" in __import__("os").environ, flush=True)
if mode == "crash":
    sys.exit(3)
while True:
    time.sleep(0.05)
"""


def child(name: str, kind: str, notes: Path, mode: str = "") -> Proc:
    return Proc(name, kind, (sys.executable, "-c", CHILD, name, mode, str(notes)))


@pytest.fixture
def launcher(tmp_path: Path) -> Launcher:
    (tmp_path / "logs").mkdir()
    env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": "/run/systemd/notify"}
    return Launcher(tmp_path, Record(state.me(), detached=False), env)


def wait_for_log(launcher: Launcher, name: str) -> None:
    path = launcher.root / "logs" / f"{name}.log"
    for _ in range(200):
        if path.exists() and "up" in path.read_text():
            assert path.read_text().split()[:3] == [name, "up", "False"], "systemd's socket is not passed on"
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} never started")


def test_each_start_is_recorded_at_once_and_stops_go_nodes_coordinators_etcd(launcher: Launcher) -> None:
    notes = launcher.root / "notes"
    for name, kind in (("etcd", ETCD), ("c1", COORDINATOR), ("n1", NODE), ("n2", NODE)):
        launcher.start(child(name, kind, notes))
        assert [p.name for p in state.read(launcher.root).procs][-1] == name  # type: ignore[union-attr]
    for name in ("etcd", "c1", "n1", "n2"):
        wait_for_log(launcher, name)
    out = io.StringIO()
    ended = launch.stop(launcher.record.procs, launcher.popens, out)
    assert [(p.name, how.split(" in ")[0]) for p, how in ended] == [
        ("n1", "stopped"),
        ("n2", "stopped"),
        ("c1", "stopped"),
        ("etcd", "stopped"),
    ]
    heard = [
        line.split()[0] for line in sorted(notes.read_text().splitlines(), key=lambda s: float(s.split()[1]))
    ]
    assert set(heard[:2]) == {"n1", "n2"} and heard[2:] == ["c1", "etcd"]
    assert out.getvalue() == "stopping n1, n2\nstopping c1\nstopping etcd\n"
    assert all(p.poll() is not None for p in launcher.popens.values()) and not launcher.record.running()


def test_a_process_that_ignores_sigterm_is_killed_after_its_grace(launcher: Launcher) -> None:
    launcher.start(child("n1", NODE, launcher.root / "notes", "stubborn"))
    wait_for_log(launcher, "n1")
    ((proc, how),) = launch.stop(launcher.record.procs, launcher.popens, grace={NODE: 0.3})
    assert how == "killed (SIGKILL) after 0.3 s without exiting" and not proc.alive()


def test_a_reused_pid_is_never_signalled(launcher: Launcher) -> None:
    real = launcher.start(child("n1", NODE, launcher.root / "notes"))
    wait_for_log(launcher, "n1")
    impostor = Started("n1", NODE, real.pid, real.start + 1)  # same pid, another process's start time
    assert launch.stop([impostor]) == [(impostor, "was not running")]
    assert real.alive()
    launch.stop([real], launcher.popens)
    assert not real.alive()


def test_a_process_that_dies_while_starting_fails_the_start_with_its_log(launcher: Launcher) -> None:
    launcher.start(child("c1", COORDINATOR, launcher.root / "notes", "crash"))
    with pytest.raises(
        StartFailed,
        match=r"c1 exited with status 3 while the cluster started; its log \(logs/c1.log\) ends:\nc1 up",
    ):
        launcher.wait("a leader", lambda: "no leader yet", time.monotonic() + 10, io.StringIO())


def test_waiting_is_bounded_and_says_what_is_missing(launcher: Launcher) -> None:
    clock = iter(range(0, 100, 5)).__next__
    out = io.StringIO()
    with pytest.raises(StartFailed, match=r"the nodes not ready in time \(1 of 3 nodes idle\)"):
        launcher.wait("the nodes", lambda: "1 of 3 nodes idle", 40, out, clock=lambda: float(clock()))
    assert "still waiting for the nodes (15 s): 1 of 3 nodes idle" in out.getvalue()


def test_waiting_ends_when_ready(launcher: Launcher) -> None:
    answers = iter(["etcd /health not true yet", None])
    launcher.wait("etcd", lambda: next(answers), time.monotonic() + 10, io.StringIO())
