"""The HTTP gateway's costs: per tiny job against the gRPC SDK, SSE fan-out, content download.

Run from the repository root:
    .venv/bin/python benchmarks/gateway.py [--jobs 9 --watchers 100 --mib 100 --runs 5] [--out FILE]
    .venv/bin/python benchmarks/gateway.py --only download --baseline main --runs 9

One etcd, two `i2v-coordinator` processes, one tiny `i2v-node` and one `i2v-gateway`
(tests/integration/gateway_process.py), all on loopback, in one run:

- overhead: tiny jobs (64x64, 4 frames, 4 steps) made alternately through the gRPC SDK
  (CoordinatorClient.generate, then download) and over HTTP (POST /v1/videos, its SSE stream to
  `done`, GET the content); the ratio of the medians is the gateway's share of a job's time;
- SSE fan-out: --watchers concurrent streams on one job of 60 denoise steps; events delivered per
  second across them all (from the first event any watcher got to the last), and how many each got;
- download: a --mib MiB artifact (a finished job written into etcd, as benchmarks/download.py does)
  through GET /v1/videos/{id}/content (read by httpx as the openai SDK reads, by httpx in 1 MiB
  pieces, and by curl) against reading the file directly and the SDK's ranged read, the gateway's
  own source; each case once per round, the rounds interleaved, with the CPU time every process
  spent. `--only download --baseline main` adds the same cases through a second gateway running
  the gateway package as it is at that git ref (the rest of the tree as it is here), so a change
  to the gateway is measured before and after in one run.

Figures: median [min..max] over the runs; the ratios of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks.download import JOB_ID, PIECE, PREFIX, direct_read, random_file, store_finished_job
from i2v_client import CoordinatorClient, build_request
from tests.etcd_cluster import EtcdCluster
from tests.integration.gateway_process import GatewayCluster, GatewayProcess, gateway_cluster
from tests.media import png

ROOT = Path(__file__).resolve().parents[1]
TINY = {"size": "64x64", "frames": "4", "steps": "4", "fps": "8", "seed": "1"}


def spread(values: list[float], unit: str = "s", digits: int = 3) -> str:
    return (
        f"{statistics.median(values):.{digits}f} {unit} [{min(values):.{digits}f}..{max(values):.{digits}f}]"
    )


def grpc_job(client: CoordinatorClient, image: bytes) -> float:
    began = time.perf_counter()
    request = build_request(image, prompt="bench", width=64, height=64, frames=4, steps=4, fps=8, seed=1)
    final = client.generate(request)
    with tempfile.TemporaryFile() as f:
        client.download(final.job_id, f)
    return time.perf_counter() - began


def http_job(http: httpx.Client, image: bytes) -> float:
    began = time.perf_counter()
    made = http.post(
        "/v1/videos", data={"prompt": "bench", **TINY}, files={"input_reference": ("a.png", image)}
    )
    made.raise_for_status()
    video_id = made.json()["id"]
    with http.stream("GET", f"/v1/videos/{video_id}/events") as events:
        for line in events.iter_lines():
            if line == "event: done":
                break
    content = http.get(f"/v1/videos/{video_id}/content")
    content.raise_for_status()
    return time.perf_counter() - began


def overhead(cluster: GatewayCluster, jobs: int) -> list[str]:
    image = png()
    grpc_s: list[float] = []
    http_s: list[float] = []
    with (
        CoordinatorClient(cluster.targets) as client,
        httpx.Client(base_url=cluster.url, timeout=120) as http,
    ):
        grpc_job(client, image)  # warm both paths (channels, the node's pipeline)
        http_job(http, image)
        for _ in range(jobs):
            grpc_s.append(grpc_job(client, image))
            http_s.append(http_job(http, image))
    ratio = statistics.median(http_s) / statistics.median(grpc_s)
    return [
        f"tiny job, gRPC SDK (generate + download): {spread(grpc_s)}",
        f"tiny job, HTTP (POST + SSE to done + GET content): {spread(http_s)}",
        f"ratio HTTP / gRPC (medians): {ratio:.3f} (goal <= 1.05)",
    ]


async def _watch(client: httpx.AsyncClient, url: str, times: list[float], counts: list[int]) -> None:
    got = 0
    async with client.stream("GET", url) as events:
        async for line in events.aiter_lines():
            if line.startswith("event: "):
                got += 1
                times.append(time.perf_counter())
                if line == "event: done":
                    break
    counts.append(got)


async def _fan_out(url: str, video_id: str, watchers: int) -> tuple[float, int, list[int]]:
    times: list[float] = []
    counts: list[int] = []
    limits = httpx.Limits(max_connections=watchers + 10)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await asyncio.gather(
            *(_watch(client, f"/v1/videos/{video_id}/events", times, counts) for _ in range(watchers))
        )
    took = max(times) - min(times)
    return len(times) / took, len(times), counts


def sse(cluster: GatewayCluster, watchers: int, runs: int) -> list[str]:
    rates: list[float] = []
    per: list[int] = []
    with httpx.Client(base_url=cluster.url, timeout=120) as http:
        for _ in range(runs):
            fields = {"prompt": "fan-out", "size": "64x64", "frames": "4", "steps": "60", "seed": "1"}
            made = http.post("/v1/videos", data=fields, files={"input_reference": ("a.png", png())})
            made.raise_for_status()
            rate, _, counts = asyncio.run(_fan_out(cluster.url, made.json()["id"], watchers))
            rates.append(rate)
            per.extend(counts)
    return [
        f"SSE to {watchers} concurrent watchers of one 60-step job: {spread(rates, 'events/s', 0)} delivered",
        f"  events per watcher: median {statistics.median(per):.0f} [{min(per)}..{max(per)}]",
    ]


def timed(run: Callable[[], None]) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def _over_httpx(http: httpx.Client, piece: int | None) -> None:
    with http.stream("GET", f"/v1/videos/{JOB_ID}/content") as r:
        r.raise_for_status()
        for _ in r.iter_bytes(piece):
            pass


def _over_curl(url: str) -> float:
    """Seconds curl took to fetch the content (its own timing, without its start-up)."""
    done = subprocess.run(
        ["curl", "-sSf", "-o", "/dev/null", "-w", "%{time_total}", f"{url}/v1/videos/{JOB_ID}/content"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return float(done.stdout)


def _http_cases(name: str, url: str, http: httpx.Client) -> dict[str, Callable[[], float]]:
    cases: dict[str, Callable[[], float]] = {
        f"{name}, httpx iter_bytes() (as the openai SDK reads)": lambda: timed(
            lambda: _over_httpx(http, None)
        ),
        f"{name}, httpx iter_bytes(1 MiB)": lambda: timed(lambda: _over_httpx(http, PIECE)),
    }
    if shutil.which("curl"):
        cases[f"{name}, curl"] = lambda: _over_curl(url)
    return cases


def download(
    cluster: GatewayCluster, src: Path, mib: int, runs: int, baseline: GatewayProcess | None
) -> list[str]:
    """Each case once per round, the rounds interleaved, so load on the machine falls on all alike."""
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(CoordinatorClient(cluster.targets))
        cases: dict[str, Callable[[], float]] = {
            "direct file read": lambda: timed(lambda: direct_read(src, src)),
            "SDK ranged read (CoordinatorClient.read, the gateway's source)": lambda: timed(
                lambda: sum(len(c) for c in client.read(JOB_ID))
            ),
        }
        gateways = [("GET /v1/videos/{id}/content", cluster.url)]
        if baseline is not None:
            gateways.append(("baseline gateway", baseline.url))
        for name, url in gateways:
            http = stack.enter_context(httpx.Client(base_url=url, timeout=300))
            cases.update(_http_cases(name, url, http))
        servers = [p.pid for p in cluster.group.procs] + [cluster.gateway.proc.pid]
        servers += [baseline.proc.pid] if baseline is not None else []
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs + 1):  # the first round warms the page cache and the channels
            for name, run in cases.items():
                began = _cpu(servers)
                seconds[name].append(run())
                cpu[name].append(_cpu(servers) - began)
    mibps = {name: [mib / t for t in times[1:]] for name, times in seconds.items()}
    direct = statistics.median(mibps["direct file read"])
    lines = [
        f"download of {mib} MiB, {runs} interleaved rounds: MiB/s; ratio of medians to the direct read; "
        "CPU seconds per GiB of every process (coordinators, gateways, this client, curl)"
    ]
    for name, rates in mibps.items():
        per_gib = statistics.median(cpu[name][1:]) * 1024 / mib
        ratio = statistics.median(rates) / direct
        lines.append(f"  {name}: {spread(rates, 'MiB/s', 0)}; {ratio:.3f}; {per_gib:.2f} CPU s")
    return lines


def _cpu(pids: list[int]) -> float:
    """CPU seconds so far of this process, its finished children (curl) and the processes `pids`."""
    tick = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += children.ru_utime + children.ru_stime
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _baseline_gateway(ref: str, cluster: GatewayCluster, work: Path) -> GatewayProcess:
    """A second gateway running the gateway package as it is at git `ref`, on the same coordinators."""
    root = work / "baseline"
    root.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "gateway/i2v_gateway"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    gw = GatewayProcess(
        cluster.targets, work / "baseline.log", env=dict(os.environ), path_first=[str(root / "gateway")]
    )
    gw.wait_ready()
    return gw


PARTS = ("overhead", "sse", "download")


def _measure(args: argparse.Namespace, work: Path, etcd: EtcdCluster) -> list[str]:
    with gateway_cluster(etcd.endpoints, work, work / "cache", prefix=PREFIX) as cluster:
        src = work / "artifacts" / "jobs" / JOB_ID / "attempt-1.mp4"
        sha256 = random_file(src, args.mib)
        asyncio.run(store_finished_job(etcd.endpoints, src.as_uri(), args.mib * PIECE, sha256))
        lines: list[str] = []
        if "overhead" in args.only:
            lines += overhead(cluster, args.jobs)
        if "sse" in args.only:
            lines += sse(cluster, args.watchers, args.sse_runs)
        if "download" in args.only:
            baseline = _baseline_gateway(args.baseline, cluster, work) if args.baseline else None
            try:
                lines += download(cluster, src, args.mib, args.runs, baseline)
            finally:
                if baseline is not None:
                    baseline.stop()
        return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=9, help="tiny jobs each way")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--sse-runs", type=int, default=3)
    p.add_argument("--mib", type=int, default=100)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument(
        "--only", action="append", choices=PARTS, default=None, help="measure only this (repeatable)"
    )
    p.add_argument(
        "--baseline", metavar="GIT_REF", default=None,
        help="also measure downloads through a second gateway running the gateway package at GIT_REF",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    args.only = args.only or list(PARTS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="i2v-gw-bench-") as tmp:
        work = Path(tmp)
        (work / "etcd").mkdir()
        etcd = EtcdCluster(1, work / "etcd").start()
        try:
            lines = _measure(args, work, etcd)
        finally:
            etcd.stop_all()
    header = [
        f"gateway benchmark {time.strftime('%Y-%m-%d')}: {', '.join(args.only)}; "
        f"{args.jobs} tiny jobs each way, {args.watchers} SSE watchers x {args.sse_runs}, "
        f"a {args.mib} MiB download x {args.runs}"
        + (f"; baseline gateway at {args.baseline}" if args.baseline else ""),
        f"machine: {os.cpu_count()} CPUs visible ({threading.active_count()} threads here), "
        f"{platform.python_implementation()} {platform.python_version()}; every process on loopback; "
        f"load average {os.getloadavg()[0]:.1f} at the end",
    ]
    text = "\n".join([*header, *lines]) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
