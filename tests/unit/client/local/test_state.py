"""The state dir's record: where it is, what it holds, and its lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from i2v_client.local import state
from i2v_client.local.state import Record, Started

CWD = Path("/home/user/project")


@pytest.mark.parametrize(
    ("flag", "env", "want"),
    [
        pytest.param(None, {}, CWD / ".i2v", id="default-in-the-current-directory"),
        pytest.param(None, {"I2V_STATE_DIR": "/var/tmp/i2v"}, Path("/var/tmp/i2v"), id="env"),
        pytest.param("other", {"I2V_STATE_DIR": "/var/tmp/i2v"}, CWD / "other", id="flag-over-env"),
        pytest.param(None, {"I2V_STATE_DIR": "  "}, CWD / ".i2v", id="blank-env"),
    ],
)
def test_state_dir(flag: str | None, env: dict[str, str], want: Path) -> None:
    assert state.state_dir(flag, env, CWD) == want


def test_the_record_round_trips_and_names_its_coordinators(tmp_path: Path) -> None:
    me = state.me()
    record = Record(me, detached=True, model="tiny")
    record.procs += [
        Started("etcd", "etcd", 11, 5, "127.0.0.1:1"),
        Started(
            "c1",
            "coordinator",
            12,
            6,
            "127.0.0.1:2",
            "http://127.0.0.1:3/metrics",
            "coordinator",
            "logs/c1.log",
        ),
    ]
    record.timings["ready_s"] = 3.5
    state.write(tmp_path, record)
    back = state.read(tmp_path)
    assert back == record and back.targets == ["127.0.0.1:2"]
    assert me.pid == os.getpid() and me.alive()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cluster-")]
    state.remove(tmp_path)
    assert state.read(tmp_path) is None
    state.remove(tmp_path)  # already gone: fine


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('{"version": 99, "supervisor": {}}', id="other-version"),
        pytest.param('{"version": 1}', id="missing-fields"),
    ],
)
def test_an_unreadable_record_names_no_process(tmp_path: Path, text: str) -> None:
    (tmp_path / state.RECORD).write_text(text)
    assert state.read(tmp_path) is None


def test_the_lock_refuses_a_second_holder_when_asked_not_to_wait(tmp_path: Path) -> None:
    # flock locks belong to the open file: a second open in this process conflicts too
    with state.locked(tmp_path), pytest.raises(state.Busy), state.locked(tmp_path, blocking=False):
        pass
    with state.locked(tmp_path, blocking=False):
        pass


def test_dead_processes_are_not_running() -> None:
    record = Record(state.me(), detached=False)
    record.procs.append(Started("gone", "node", 2**22 + 12345, 1))
    assert record.running() == []
