"""The state dir of a local cluster: `cluster.json` names every process `i2v up` started (pid and
start time, so only those are ever signalled), its addresses and timings; `lock` serialises `up` and
`down`; logs, etcd's data, the artifact store and Prometheus's data live beside them."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i2v_client.local import procinfo

STATE_ENV = "I2V_STATE_DIR"
DEFAULT_STATE_DIR = ".i2v"
RECORD = "cluster.json"
VERSION = 1


def state_dir(flag: str | None, env: Mapping[str, str], cwd: Path) -> Path:
    """--state-dir, else $I2V_STATE_DIR, else .i2v in the current directory; absolute."""
    chosen = flag or env.get(STATE_ENV, "").strip() or DEFAULT_STATE_DIR
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else cwd / path


@dataclass(frozen=True)
class Started:
    name: str
    kind: str
    pid: int
    start: int  # /proc start time in clock ticks
    addr: str = ""
    metrics: str = ""
    detail: str = ""
    log: str = ""

    def alive(self) -> bool:
        return procinfo.is_ours(self.pid, self.start)


@dataclass
class Record:
    """cluster.json: written after every start, so a crash part-way leaves what to stop."""

    supervisor: Started  # the `i2v up` process itself (gone after --detach returns)
    detached: bool
    procs: list[Started] = field(default_factory=list)
    model: str = ""
    first_video: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    ready: bool = False

    @property
    def targets(self) -> list[str]:
        return [p.addr for p in self.procs if p.kind == "coordinator"]

    def running(self) -> list[Started]:
        return [p for p in self.procs if p.alive()]

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **dataclasses.asdict(self)}, indent=2) + "\n"

    @staticmethod
    def from_json(text: str) -> Record:
        raw: dict[str, Any] = json.loads(text)
        if raw.pop("version", None) != VERSION:
            raise ValueError(f"{RECORD} is from another version of i2v")
        raw["supervisor"] = Started(**raw["supervisor"])
        raw["procs"] = [Started(**p) for p in raw["procs"]]
        return Record(**raw)


def read(state: Path) -> Record | None:
    """The record, None when there is none; a file that cannot be read counts as none (it names no
    process we could safely signal)."""
    try:
        return Record.from_json((state / RECORD).read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write(state: Path, record: Record) -> None:
    fd, tmp = tempfile.mkstemp(dir=state, prefix=".cluster-")
    with os.fdopen(fd, "w") as f:
        f.write(record.to_json())
    os.replace(tmp, state / RECORD)


def remove(state: Path) -> None:
    (state / RECORD).unlink(missing_ok=True)


class Busy(Exception):
    """Another `i2v up` (starting or running in the foreground) or `i2v down` holds the state dir."""


@contextlib.contextmanager
def locked(state: Path, *, blocking: bool = True) -> Iterator[None]:
    """Holds the state dir's lock, waiting for another `up` or `down` to finish with it (Busy at
    once instead when not `blocking`). A foreground `up` holds it while it runs."""
    state.mkdir(parents=True, exist_ok=True)
    with (state / "lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(str(state)) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def me(name: str = "i2v up") -> Started:
    pid = os.getpid()
    stat = procinfo.read_stat(pid)
    return Started(name, "supervisor", pid, stat.start if stat else 0)
