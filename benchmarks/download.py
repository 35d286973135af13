"""Download throughput: a large artifact through Coordinator.Download against reading it directly.

Run from the repository root:
    .venv/bin/python benchmarks/download.py [--mib 200 --runs 5 --no-node] [--out FILE]

One single-member etcd (tests/etcd_cluster.py) and one real `i2v-coordinator` process
(tests/chaos/coordinator_procs.py). A finished job is written straight into etcd (its history/
record and done/ pointer, as the finishing txn leaves them) naming a --mib MiB file of random bytes
in the coordinator's artifact store. Per run, in turn:

- direct read: the file read in 1 MiB pieces (what `file://` access costs at best);
- direct copy: read, sha256 and written to a new file (what a client needs: a verified copy);
- SDK: CoordinatorClient.download to a new file (verified, via PATH.part);
- raw stream: the same Download stream read with the bare stub, bytes counted and dropped (the
  transport's share of the SDK's cost);
- Node.js: tests/interop/node/client.mjs --download, with grpc-js's defaults and again with a 16 MiB
  HTTP/2 window (its default 64 KiB window is the limit on loopback); skipped without node or its
  packages (`npm ci --prefix tests/interop/node`).

The file stays in the page cache throughout, so every path reads memory: the figures compare the
transfer, not the disk. Figures: MiB/s median [min..max] over --runs, the CPU time all processes
spent per MiB (this one, the Node.js child with its start-up, the coordinator; median), and the ratio of each
download's median to the direct read's and the direct copy's. --out also writes them to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from i2v_client import CoordinatorClient
from i2v_common.etcd_kv import EtcdKV
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract import states
from i2v_contract.keys import DoneRecord, Keys
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.records import JobRecord, encode_job
from tests.chaos.coordinator_procs import CoordinatorProcess
from tests.etcd_cluster import EtcdCluster

ROOT = Path(__file__).resolve().parents[1]
NODE_CLIENT = ROOT / "tests" / "interop" / "node" / "client.mjs"
PIECE = 1024 * 1024
JOB_ID = "bench-download"
PREFIX = "/bench-dl/"


def random_file(path: Path, mib: int) -> str:
    """`mib` MiB of random bytes at `path`; their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib):
            piece = os.urandom(PIECE)
            digest.update(piece)
            f.write(piece)
    return digest.hexdigest()


async def store_finished_job(endpoints: list[str], uri: str, size: int, sha256: str) -> None:
    """The job as the finishing txn leaves it: history/ record with its result, and done/."""
    keys = Keys(PREFIX)
    result = common_pb2.Result(artifact_uri=uri, mime_type="video/mp4", sha256=sha256, video_size=size)
    request = common_pb2.GenerationRequest(prompt="benchmark", width=512, height=512, frames=32, seed=1)
    view = jobs.new_job(JOB_ID, 1, common_pb2.TIER_CPU, "tiny", time.time())
    view = dataclasses.replace(view, state=states.SUCCEEDED, finished_at=time.time(), artifact_uri=uri)
    record = JobRecord(view, request, "", "d" * 64, result=result)
    entry = keys.history_entry(view.finished_at, JOB_ID)
    kv = EtcdKV(endpoints)
    try:
        await kv.put(entry, encode_job(record))
        await kv.put(keys.done_of(JOB_ID), DoneRecord(entry, view.finished_at).to_json())
    finally:
        await kv.close()


def direct_read(src: Path, dest: Path) -> None:
    with src.open("rb") as f:
        while f.read(PIECE):
            pass


def direct_copy(src: Path, dest: Path) -> None:
    digest = hashlib.sha256()
    with src.open("rb") as f, dest.open("wb") as out:
        while piece := f.read(PIECE):
            digest.update(piece)
            out.write(piece)


def cpu_seconds(pid: int) -> float:
    """CPU time so far of this process (all threads), its finished children and process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + server


def timed(run: Callable[[Path], float | None], scratch: Path, server_pid: int) -> tuple[float, float]:
    """(seconds `run` took, or the seconds it reports itself: the Node.js client times its download
    without its start-up and proto loading; CPU seconds of client and coordinator meanwhile)."""
    dest = scratch / "out.bin"
    dest.unlink(missing_ok=True)
    cpu = cpu_seconds(server_pid)
    started = time.perf_counter()
    reported = run(dest)
    took = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu
    dest.unlink(missing_ok=True)
    return (took if reported is None else reported), cpu


def node_download(target: str, dest: Path, window: int = 0) -> float:
    args = ["node", str(NODE_CLIENT), "--target", target, "--download", JOB_ID, "--out", str(dest)]
    done = subprocess.run(
        args + (["--window", str(window)] if window else []),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"node client failed: {done.stderr.strip()}")
    seconds: float = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def node_ready() -> str:
    """'' when the Node.js client can run, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_CLIENT.parent / "node_modules" / "@grpc" / "grpc-js").exists():
        return "its packages are missing: npm ci --prefix tests/interop/node"
    return ""


def summary(name: str, runs: list[tuple[float, float]], mib: int) -> tuple[str, float]:
    rates = sorted(mib / seconds for seconds, _ in runs)
    median = statistics.median(rates)
    cpu_ms = statistics.median(cpu for _, cpu in runs) * 1000 / mib
    line = f"{name:<28} {median:6.0f} MiB/s [{rates[0]:.0f}..{rates[-1]:.0f}], CPU {cpu_ms:5.2f} ms/MiB"
    return line, median


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=200, help="artifact size in MiB")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--no-node", action="store_true", help="skip the Node.js client")
    p.add_argument("--out", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="i2v-dl-bench-") as tmp:
        work = Path(tmp)
        (work / "etcd").mkdir()
        etcd = EtcdCluster(1, work / "etcd").start()
        coordinator = CoordinatorProcess(etcd.endpoints, work, "c0", prefix=PREFIX)
        try:
            coordinator.wait_started()
            src = work / "artifacts" / "jobs" / JOB_ID / "attempt-1.mp4"
            sha256 = random_file(src, args.mib)
            asyncio.run(store_finished_job(etcd.endpoints, src.as_uri(), args.mib * PIECE, sha256))
            lines = run_all(args, src, coordinator, work / "scratch")
        finally:
            coordinator.stop()
            etcd.stop_all()
    header = [
        f"download benchmark {time.strftime('%Y-%m-%d')}: a {args.mib} MiB artifact, {args.runs} runs each",
        f"machine: {os.cpu_count()} CPUs visible, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()}; one coordinator process on loopback",
    ]
    text = "\n".join([*header, *lines]) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)
    return 0


def run_all(args: argparse.Namespace, src: Path, coordinator: CoordinatorProcess, scratch: Path) -> list[str]:
    scratch.mkdir()
    target = coordinator.address
    client = CoordinatorClient(target)

    def sdk(dest: Path) -> None:
        client.download(JOB_ID, dest)  # verified against the sha256, written via out.bin.part

    channel = grpc.insecure_channel(target)
    stub = coordinator_pb2_grpc.CoordinatorStub(channel)

    def raw(dest: Path) -> None:
        got = sum(len(m.data) for m in stub.Download(coordinator_pb2.DownloadRequest(job_id=JOB_ID)))
        assert got == args.mib * PIECE, got

    cases: dict[str, Callable[[Path], float | None]] = {
        "direct read": lambda dest: direct_read(src, dest),
        "direct copy + sha256": lambda dest: direct_copy(src, dest),
        "Download, Python SDK": sdk,
        "Download, raw stream": raw,
    }
    why_not = "--no-node given" if args.no_node else node_ready()
    if not why_not:
        cases["Download, Node.js defaults"] = lambda dest: node_download(target, dest)
        cases["Download, Node.js 16M window"] = lambda dest: node_download(target, dest, 16 * PIECE)
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    try:
        for run in cases.values():
            run(scratch / "warm.bin")  # warm the page cache, channels and the node runtime
            (scratch / "warm.bin").unlink(missing_ok=True)
        for _ in range(args.runs):  # interleaved, so a busy spell hits every case alike
            for name, run in cases.items():
                timings[name].append(timed(run, scratch, coordinator.pid))
    finally:
        client.close()
        channel.close()
    lines, medians = [], {}
    for name, runs in timings.items():
        line, medians[name] = summary(name, runs, args.mib)
        lines.append(line)
    if why_not:
        lines.append(f"Download, Node.js client: skipped ({why_not})")
    for name in [n for n in medians if n.startswith("Download")]:
        read = medians[name] / medians["direct read"]
        copy = medians[name] / medians["direct copy + sha256"]
        lines.append(f"ratio {name}: {read:.2f} of direct read, {copy:.2f} of direct copy + sha256")
    return lines


if __name__ == "__main__":
    sys.exit(main())
