"""Carrying a plan out: start each process as a subprocess of its own session (so a Ctrl-C reaches
only `i2v up`, which then stops them in order), record it in cluster.json at once, wait until each
part is ready (bounded, failing fast with the log of a process that died), and stop them in
STOP_ORDER, SIGTERM then SIGKILL after the kind's grace, by recorded pid only."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from i2v_client.coordinator import CoordinatorClient
from i2v_client.errors import CallError
from i2v_client.local import procinfo, state
from i2v_client.local.plan import STOP_GRACE_S, Proc, stop_groups
from i2v_client.local.state import Record, Started
from i2v_client.retry import RetryPolicy

POLL_S = 0.2
SAY_EVERY_S = 15.0
KILL_WAIT_S = 5.0
LOG_TAIL = 2000


class StartFailed(Exception):
    """The cluster did not come up; the message says which part and why."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP to `i2v up`: stop the cluster as for Ctrl-C."""


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP interrupt like Ctrl-C while inside; the previous handlers come back after."""
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def ignore_stop_signals() -> None:
    """While stopping (bounded): a second Ctrl-C must not leave half of the cluster running."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL:].rstrip()
    except OSError:
        return "(no log)"


class Launcher:
    """Starts processes for `record`, keeping their Popen objects so they are reaped."""

    def __init__(self, root: Path, record: Record, env: Mapping[str, str]) -> None:
        self.root = root
        self.record = record
        # A server that found systemd's socket would report itself as this unit's main process.
        self.env = {k: v for k, v in env.items() if k != "NOTIFY_SOCKET"}
        self.popens: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, proc: Proc) -> Started:
        env = {**self.env, **dict(proc.env), "PYTHONUNBUFFERED": "1"}
        with (self.root / proc.log).open("wb") as log:
            try:
                popen = subprocess.Popen(
                    proc.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.root,
                    start_new_session=True,
                )
            except OSError as err:
                raise StartFailed(f"cannot start {proc.name} ({proc.argv[0]}): {err.strerror}") from None
        stat = procinfo.read_stat(popen.pid)
        started = Started(
            proc.name,
            proc.kind,
            popen.pid,
            stat.start if stat else 0,
            proc.addr,
            proc.metrics,
            proc.detail,
            proc.log,
        )
        self.popens[proc.name] = popen
        self.record.procs.append(started)
        state.write(self.root, self.record)
        return started

    def exited(self) -> list[tuple[Started, int]]:
        """The started processes that have exited, with their exit status."""
        codes = {name: p.poll() for name, p in self.popens.items()}
        return [(s, code) for s in self.record.procs if (code := codes.get(s.name)) is not None]

    def check(self) -> None:
        for proc, code in self.exited():
            raise StartFailed(
                f"{proc.name} exited with status {code} while the cluster started; its log "
                f"({proc.log}) ends:\n{log_tail(self.root / proc.log)}"
            )

    def wait(
        self,
        what: str,
        ready: Callable[[], str | None],
        deadline: float,
        out: TextIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Polls `ready` (None: ready, else what is missing) until `deadline`; StartFailed on time
        out or when a started process exits meanwhile."""
        began = clock()
        said = began
        while True:
            self.check()
            missing = ready()
            if missing is None:
                return
            now = clock()
            if now >= deadline:
                raise StartFailed(f"{what} not ready in time ({missing}); logs in {self.root / 'logs'}")
            if now - said >= SAY_EVERY_S:
                out.write(f"  still waiting for {what} ({now - began:.0f} s): {missing}\n")
                out.flush()
                said = now
            time.sleep(POLL_S)


def http_ok(url: str, want: bytes = b"") -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200 and want in r.read())
    except OSError:
        return False


def etcd_ready(addr: str) -> str | None:
    return None if http_ok(f"http://{addr}/health", b'"true"') else "etcd /health not true yet"


def prometheus_ready(url: str) -> str | None:
    return None if http_ok(f"{url}/-/ready") else "Prometheus /-/ready not answering yet"


def cluster_client(targets: Sequence[str]) -> CoordinatorClient:
    return CoordinatorClient(list(targets), policy=RetryPolicy(reconnect_s=1.0, call_timeout_s=1.0))


def leader_ready(client: CoordinatorClient, members: int) -> str | None:
    try:
        status = client.cluster_status()
    except CallError as exc:
        return f"coordinators not answering ({exc.code.name})"
    if not status.leader_id:
        return "no leader elected yet"
    if len(status.members) < members:
        return f"{len(status.members)} of {members} coordinators registered"
    return None


def nodes_ready(client: CoordinatorClient, names: Sequence[str]) -> str | None:
    """Every node registered and idle (a node is busy while its model loads)."""
    try:
        nodes = {n.node_id: n for n in client.list_nodes().nodes}
    except CallError as exc:
        return f"coordinators not answering ({exc.code.name})"
    missing = [n for n in names if n not in nodes]
    busy = [n for n in names if n in nodes and nodes[n].busy]
    if not missing and not busy:
        return None
    parts = [f"{len(names) - len(missing) - len(busy)} of {len(names)} nodes idle"]
    parts += [f"loading: {', '.join(busy)}"] if busy else []
    parts += [f"not registered: {', '.join(missing)}"] if missing else []
    return "; ".join(parts)


def _signal(proc: Started, sig: signal.Signals) -> None:
    if proc.alive():  # re-checked at the last moment: a reused pid is never signalled
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def _wait_gone(
    procs: Sequence[Started],
    seconds: float,
    reap: Callable[[], object],
    clock: Callable[[], float],
) -> list[Started]:
    deadline = clock() + seconds
    while True:
        reap()
        left = [p for p in procs if p.alive()]
        if not left or clock() >= deadline:
            return left
        time.sleep(POLL_S)


def stop(
    procs: Sequence[Started],
    popens: Mapping[str, subprocess.Popen[bytes]] | None = None,
    out: TextIO | None = None,
    *,
    grace: Mapping[str, float] = STOP_GRACE_S,
    clock: Callable[[], float] = time.monotonic,
) -> list[tuple[Started, str]]:
    """Stops `procs` group by group in STOP_ORDER; how each ended, in stop order."""

    def reap() -> None:
        for p in (popens or {}).values():
            p.poll()

    ended: list[tuple[Started, str]] = []
    for group in stop_groups([p.kind for p in procs]):
        members = [procs[i] for i in group]
        live = [p for p in members if p.alive()]
        ended += [(p, "was not running") for p in members if p not in live]
        if not live:
            continue
        if out is not None:
            out.write(f"stopping {', '.join(p.name for p in live)}\n")
            out.flush()
        began = clock()
        for p in live:
            _signal(p, signal.SIGTERM)
        seconds = max(grace.get(p.kind, 15.0) for p in live)
        left = _wait_gone(live, seconds, reap, clock)
        for p in left:
            _signal(p, signal.SIGKILL)
        still = _wait_gone(left, KILL_WAIT_S, reap, clock)
        took = clock() - began
        for p in live:
            if p in still:
                ended.append((p, "STILL RUNNING after SIGKILL"))
            elif p in left:
                ended.append((p, f"killed (SIGKILL) after {seconds:g} s without exiting"))
            else:
                ended.append((p, f"stopped in {took:.1f} s"))
    reap()
    return ended
