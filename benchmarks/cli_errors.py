"""How fast the `i2v` command answers a user's mistake, and with which exit status.

Run from the repository root (PYTHONPATH naming the tree, as for the tests):
    python benchmarks/cli_errors.py [--reps 3]

Every mistake runs the real console script (`i2v` beside this Python) as a new process against
real servers where one is needed: one etcd, two `i2v-coordinator`s and one tiny `i2v-node`. The
time is from starting the process to its exit (Python start-up included), the median of --reps
runs; Ctrl-C is timed from the signal. Goal: at most 1 s each, except where the user set the
deadline (--timeout) or the job had to run first. The last column is what the command said, with
addresses, job ids and paths replaced by names, so the output holds no machine paths.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from i2v_client import CoordinatorClient, build_request
from i2v_contract.wire import coordinator_pb2
from i2v_node.config import default_cache_dir
from tests.chaos.coordinator_procs import CoordinatorGroup
from tests.etcd_cluster import EtcdCluster, free_port
from tests.integration.node_process import BIN, NodeProcess, node_env
from tests.media import png

GOAL_S = 1.0


@dataclass(frozen=True)
class Servers:
    coordinators: str  # both, as --target takes them
    coordinator: str  # one of them
    node: str
    refused: str  # nothing listens
    silent: str  # accepts and never answers


@dataclass(frozen=True)
class Mistake:
    name: str
    args: Callable[[Servers], list[str]]
    interrupt_after_s: float | None = None  # Ctrl-C this long after the start; timed from the signal
    exempt: str = ""  # why the goal does not apply


def _generate(*more: str) -> list[str]:
    return [
        "generate",
        "in.png",
        "--prompt",
        "a gradient",
        "--steps",
        "2",
        "--frames",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        *more,
    ]


MISTAKES = [
    Mistake("--node without a port", lambda s: _generate("--node", "foo", "-o", "o.mp4")),
    Mistake("--target with a scheme", lambda s: _generate("--target", "http://x:1", "-o", "o.mp4")),
    Mistake("--node port out of range", lambda s: _generate("--node", "127.0.0.1:99999", "-o", "o.mp4")),
    Mistake("--target list with a bad entry", lambda s: ["status", "--target", f"{s.coordinator},oops"]),
    Mistake("--fps 0.5", lambda s: _generate("--fps", "0.5", "--node", s.node, "-o", "o.mp4")),
    Mistake("--guidance 50", lambda s: _generate("--guidance", "50", "--node", s.node, "-o", "o.mp4")),
    Mistake(
        "an image that is not there",
        lambda s: ["generate", "nope.png", "--prompt", "p", "--node", s.node, "-o", "o.mp4"],
    ),
    Mistake("-o is a directory", lambda s: _generate("--node", s.node, "-o", ".")),
    Mistake("-o under a file", lambda s: _generate("--node", s.node, "-o", "in.png/o.mp4")),
    Mistake("--target where nothing listens", lambda s: ["status", "--target", s.refused]),
    Mistake(
        "--target two addresses, nothing listens", lambda s: ["jobs", "--target", f"{s.refused},127.0.0.1:1"]
    ),
    Mistake(
        "--target that accepts and never answers",
        lambda s: ["jobs", "--target", s.silent],
        exempt="bounded by RetryPolicy.connect_timeout_s (2 s)",
    ),
    Mistake(
        "Ctrl-C while no coordinator answers",
        lambda s: _generate("--target", s.silent, "-o", "o.mp4"),
        interrupt_after_s=0.8,
    ),
    Mistake("--node at a coordinator", lambda s: _generate("--node", s.coordinator, "-o", "o.mp4")),
    Mistake("--target at a node (generate)", lambda s: _generate("--target", s.node, "-o", "o.mp4")),
    Mistake("--target at a node (status)", lambda s: ["status", "--target", s.node]),
    Mistake("get of an unknown job", lambda s: ["get", "no-such-job", "--target", s.coordinators]),
    Mistake("get with a 10,000-character id", lambda s: ["get", "x" * 10_000, "--target", s.coordinators]),
    Mistake("watch of an unknown job", lambda s: ["watch", "no-such-job", "--target", s.coordinators]),
    Mistake(
        "a model no node serves",
        lambda s: _generate("--model", "other", "--target", s.coordinators, "-o", "o.mp4"),
    ),
    Mistake(
        "--timeout 2 while the job is queued",
        lambda s: _generate("--timeout", "2", "--target", s.coordinators, "-o", "q.mp4"),
        exempt="the user's deadline",
    ),
    Mistake(
        "-o /dev/full (the write fails after the job)",
        lambda s: _generate("--target", s.coordinators, "-o", "/dev/full"),
        exempt="the job runs first",
    ),
]


def run_once(mistake: Mistake, servers: Servers, cwd: Path) -> tuple[float, int, str]:
    env = node_env(cwd)
    env.pop("I2V_TARGETS", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "i2v"), *mistake.args(servers)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if mistake.interrupt_after_s is not None:
        time.sleep(mistake.interrupt_after_s)
        started = time.perf_counter()
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    took = time.perf_counter() - started
    lines = (err or out).strip().splitlines()
    return took, proc.returncode, lines[-1] if lines else ""


def anonymous(text: str, servers: Servers, cwd: Path) -> str:
    """`text` with this run's addresses, job ids and paths replaced by names."""
    names = [(a, f"COORD{i}") for i, a in enumerate(servers.coordinators.split(","), 1)]
    names += [(servers.node, "NODE"), (servers.refused, "FREE"), (servers.silent, "SILENT")]
    for address, name in names:
        text = text.replace(address, name)
    text = text.replace(str(cwd), "WORK").replace(tempfile.gettempdir(), "TMP")
    text = re.sub(r"\b[0-9a-f]{32}\b", "JOB", text)
    return text if len(text) <= 150 else text[:149] + "…"


@contextmanager
def silent_listener() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(
        target=lambda: held.extend(iter(lambda: listener.accept()[0], None)), daemon=True
    ).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


@contextmanager
def cluster(workdir: Path) -> Iterator[tuple[Servers, CoordinatorClient]]:
    """etcd, two coordinators, one tiny node registered with them, and a silent port."""
    (workdir / "etcd").mkdir()
    etcd = EtcdCluster(1, workdir / "etcd").start()
    prefix = f"/bench-{uuid.uuid4().hex[:8]}/"
    group = CoordinatorGroup(etcd.endpoints, workdir, 2, prefix=prefix)
    node = NodeProcess(
        default_cache_dir(),
        workdir / "node.log",
        "--etcd",
        ",".join(etcd.endpoints),
        "--artifacts",
        str(workdir / "artifacts"),
        "--prefix",
        prefix,
        node_id="bench-node",
    )
    try:
        group.wait_started()
        leader, _, _ = group.wait_leader(15.0)
        node.wait_serving(300)
        targets = ",".join(p.address for p in group.procs)
        with silent_listener() as silent, CoordinatorClient(targets) as client:
            deadline = time.monotonic() + 60
            while not any(n.node_id == "bench-node" for n in client.list_nodes().nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the node did not register within 60 s")
                time.sleep(0.1)
            yield Servers(targets, leader.address, node.address, f"127.0.0.1:{free_port()}", silent), client
    finally:
        node.stop()
        group.stop_all()
        etcd.stop_all()


def measure(mistake: Mistake, servers: Servers, client: CoordinatorClient, cwd: Path, reps: int) -> list[str]:
    busy = ""
    if mistake.exempt == "the user's deadline":  # keep the node busy so the job waits in the queue
        long = build_request(png(), prompt="long", width=64, height=64, frames=64, steps=200)
        busy = client.submit(long).job_id
        while client.get(busy).state != coordinator_pb2.JOB_STATE_RUNNING:
            time.sleep(0.05)
    try:
        runs = [run_once(mistake, servers, cwd) for _ in range(reps)]
    finally:
        if busy:
            client.cancel(busy)
            for job in client.list_jobs(states=[coordinator_pb2.JOB_STATE_QUEUED]).jobs:
                client.cancel(job.job_id)
    took = statistics.median(t for t, _, _ in runs)
    codes = sorted({c for _, c, _ in runs})
    mark = "ok " if took <= GOAL_S else ("-- " if mistake.exempt else "SLOW")
    said = anonymous(runs[-1][2], servers, cwd)
    line = f"{mistake.name:<46} {','.join(map(str, codes)):>4} {took:7.2f}  {mark:<4} {said}"
    return [line] + (
        [f"{'':<46} {'':>4} {'':7}  {'':<4} (goal exempt: {mistake.exempt})"] if mistake.exempt else []
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "in.png").write_bytes(png())
        print(
            f"i2v CLI: seconds from start to exit (median of {args.reps}; Ctrl-C: from the signal), "
            f"goal <= {GOAL_S:g} s"
        )
        print(f"{'mistake':<46} {'exit':>4} {'seconds':>7}  {'':<4} said")
        with cluster(workdir) as (servers, client):
            for mistake in MISTAKES:
                for line in measure(mistake, servers, client, workdir, args.reps):
                    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
