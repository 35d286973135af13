"""The HTTP gateway's costs: per tiny job against the gRPC SDK, SSE fan-out, content download.

Run from the repository root:
    .venv/bin/python benchmarks/gateway.py [--jobs 9 --watchers 100 --mib 100 --runs 5] [--out FILE]

One etcd, two `i2v-coordinator` processes, one tiny `i2v-node` and one `i2v-gateway`
(tests/integration/gateway_process.py), all on loopback, in one run:

- overhead: tiny jobs (64x64, 4 frames, 4 steps) made alternately through the gRPC SDK
  (CoordinatorClient.generate, then download) and over HTTP (POST /v1/videos, its SSE stream to
  `done`, GET the content); the ratio of the medians is the gateway's share of a job's time;
- SSE fan-out: --watchers concurrent streams on one job of 60 denoise steps; events delivered per
  second across them all (from the first event any watcher got to the last), and how many each got;
- download: a --mib MiB artifact (a finished job written into etcd, as benchmarks/download.py does)
  through GET /v1/videos/{id}/content against reading the file directly, and the SDK's Download.

Figures: median [min..max] over the runs; the ratios of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
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
from tests.integration.gateway_process import GatewayCluster, gateway_cluster
from tests.media import png

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


def download(cluster: GatewayCluster, src: Path, mib: int, runs: int) -> list[str]:
    direct: list[float] = []
    http_s: list[float] = []
    sdk: list[float] = []

    def over_http(http: httpx.Client) -> None:
        with http.stream("GET", f"/v1/videos/{JOB_ID}/content") as r:
            r.raise_for_status()
            for _ in r.iter_bytes(PIECE):
                pass

    with (
        httpx.Client(base_url=cluster.url, timeout=300) as http,
        CoordinatorClient(cluster.targets) as client,
    ):
        for _ in range(runs + 1):  # the first of each warms the page cache and the channels
            direct.append(timed(lambda: direct_read(src, src)))
            http_s.append(timed(lambda: over_http(http)))
            sdk.append(timed(lambda: sum(len(c) for c in client.read(JOB_ID))))
    mibps = [[mib / t for t in times[1:]] for times in (direct, http_s, sdk)]
    ratio = statistics.median(mibps[1]) / statistics.median(mibps[0])
    return [
        f"download of {mib} MiB: direct file read {spread(mibps[0], 'MiB/s', 0)}",
        f"  GET /v1/videos/{{id}}/content {spread(mibps[1], 'MiB/s', 0)}; "
        f"ratio to the direct read {ratio:.3f}",
        f"  SDK ranged read (CoordinatorClient.read, the gateway's source) {spread(mibps[2], 'MiB/s', 0)}",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=9, help="tiny jobs each way")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--sse-runs", type=int, default=3)
    p.add_argument("--mib", type=int, default=100)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="i2v-gw-bench-") as tmp:
        work = Path(tmp)
        (work / "etcd").mkdir()
        etcd = EtcdCluster(1, work / "etcd").start()
        try:
            with gateway_cluster(etcd.endpoints, work, work / "cache", prefix=PREFIX) as cluster:
                src = work / "artifacts" / "jobs" / JOB_ID / "attempt-1.mp4"
                sha256 = random_file(src, args.mib)
                asyncio.run(store_finished_job(etcd.endpoints, src.as_uri(), args.mib * PIECE, sha256))
                lines = overhead(cluster, args.jobs)
                lines += sse(cluster, args.watchers, args.sse_runs)
                lines += download(cluster, src, args.mib, args.runs)
        finally:
            etcd.stop_all()
    header = [
        f"gateway benchmark {time.strftime('%Y-%m-%d')}: {args.jobs} tiny jobs each way, "
        f"{args.watchers} SSE watchers x {args.sse_runs}, a {args.mib} MiB download x {args.runs}",
        f"machine: {os.cpu_count()} CPUs visible ({threading.active_count()} threads here), "
        f"{platform.python_implementation()} {platform.python_version()}; every process on loopback",
    ]
    text = "\n".join([*header, *lines]) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
