"""Real `i2v-coordinator` processes on free loopback ports, for chaos tests and benchmarks.

Every signal goes to a pid we started; stop() always ends the process. Leader state is read from
each coordinator's /metrics (i2v_coordinator_is_leader, i2v_coordinator_epoch), so these tests do
not depend on the client API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.etcd_cluster import free_port

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LeaderState:
    is_leader: bool
    epoch: int


def read_leader_state(metrics_port: int, timeout: float = 0.5) -> LeaderState | None:
    """What a coordinator's /metrics says, or None when it does not answer (dead or paused)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("i2v_coordinator_is_leader", "i2v_coordinator_epoch"):
            values[name] = float(value)
    if len(values) < 2:
        return None
    return LeaderState(values["i2v_coordinator_is_leader"] == 1, int(values["i2v_coordinator_epoch"]))


class CoordinatorProcess:
    def __init__(
        self,
        etcd: Sequence[str],
        workdir: Path,
        member_id: str,
        *extra: str,
        prefix: str = "/i2v/v1/",
    ) -> None:
        self.member_id = member_id
        self.port = free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = workdir / f"{member_id}.log"
        args = [
            str(BIN / "i2v-coordinator"),
            "--etcd", ",".join(etcd),
            "--listen", self.address,
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--artifacts", str(workdir / "artifacts"),
            "--id", member_id,
            "--prefix", prefix,
            *extra,
        ]  # fmt: skip
        self._log = self.log_path.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.paused = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def state(self, timeout: float = 0.5) -> LeaderState | None:
        return None if self.paused else read_leader_state(self.metrics_port, timeout)

    def wait_started(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.state() is None:
            if not self.alive():
                raise AssertionError(
                    f"coordinator {self.member_id} exited {self.proc.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"coordinator {self.member_id} not up in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.paused = False

    def terminate(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


class CoordinatorGroup:
    """N coordinators on one etcd; helpers to find the leader with bounded waits."""

    def __init__(
        self,
        etcd: Sequence[str],
        workdir: Path,
        count: int,
        *extra: str,
        prefix: str = "/i2v/v1/",
        etcd_for: Callable[[str], Sequence[str]] | None = None,
    ):
        self._etcd = list(etcd)
        self._etcd_for = etcd_for  # member id -> the endpoints it dials (e.g. its own proxy)
        self._workdir = workdir
        self._extra = extra
        self._prefix = prefix
        self.procs: list[CoordinatorProcess] = []
        self._next = 0
        for _ in range(count):
            self.add()

    def add(self) -> CoordinatorProcess:
        member_id = f"c{self._next}"
        etcd = self._etcd_for(member_id) if self._etcd_for is not None else self._etcd
        proc = CoordinatorProcess(etcd, self._workdir, member_id, *self._extra, prefix=self._prefix)
        self._next += 1
        self.procs.append(proc)
        return proc

    def wait_started(self, timeout: float = 30.0) -> None:
        for proc in self.procs:
            proc.wait_started(timeout)

    def leaders(self) -> list[tuple[CoordinatorProcess, LeaderState]]:
        found = []
        for proc in self.procs:
            if proc.alive() and not proc.paused:
                state = proc.state()
                if state is not None and state.is_leader:
                    found.append((proc, state))
        return found

    def wait_leader(
        self, timeout: float, *, exclude: CoordinatorProcess | None = None, poll_s: float = 0.01
    ) -> tuple[CoordinatorProcess, LeaderState, float]:
        """The one leader (other than `exclude`) and when it was first seen (monotonic)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [(p, s) for p, s in self.leaders() if p is not exclude]
            if len(found) == 1:
                proc, state = found[0]
                return proc, state, time.monotonic()
            if len(found) > 1:
                ids = [(p.member_id, s.epoch) for p, s in found]
                raise AssertionError(f"split brain: {ids} all report leading")
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.member_id}\n{p.log()}" for p in self.procs)
                raise AssertionError(f"no leader within {timeout}s\n{logs}")
            time.sleep(poll_s)

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()
