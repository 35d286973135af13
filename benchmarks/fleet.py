"""Fleet-size figures: what 1,000 registered nodes cost the leader, against 10.

Run from the repository root:
    .venv/bin/python benchmarks/fleet.py [--nodes 10,1000 --jobs 100 --job-seconds 0.2 --rounds 3]

Set-up, per fleet size K: a fresh key prefix on one real single-member etcd (tests/etcd_cluster.py),
two real `i2v-coordinator` processes (tests/chaos/coordinator_procs.py), and K simulated nodes hosted
by a few worker processes (this file with --worker). A simulated node is the real node's cluster
half without the pipeline: the artifact store agreement (store_identity.agree, once per worker
process), its own etcd lease and nodes/{id} record through i2v_node's Membership, the real fenced
claim, claim watch and claim-guarded write-once result through ClusterHooks, its own grpc.aio
server for the Node service. Generate claims, streams two progress events and a heartbeat, sleeps
--job-seconds, stores a canned video at the dispatch's output_uri and returns an OK result. It
advertises the CPU tier, memory to spare and a small model shape, so admission takes the tiny jobs.

Per round, on the shared monotonic clock (a claim's time is when the node's process saw its claim
txn succeed):
- idle submit -> claim p50 / p99: --idle-samples single jobs, one at a time, on the idle fleet: the
  leader's own path (durable submit, routing over K nodes, dispatch call, claim txn);
- burst: --jobs Submits from 8 client threads; submits/s, dispatches/s = jobs / (last claim - first
  submit), and submit -> claim p50 / p99. Dispatches/s is bounded by the node capacity K /
  --job-seconds (printed) and by the submit rate, so at small K it measures the nodes, not the leader;
- leader CPU per burst job (submit to last claim) and idle CPU % (2 s with the fleet registered and
  nothing to do), from /proc/<pid>/stat; leader RSS: VmRSS after the burst (/proc/<pid>/status);
- failover: kill -9 of the leader, then a Submit retried on the survivor every 20 ms; the time from
  the kill to that job's claim under the new epoch (election + load + registry + dispatch).
The killed coordinator is replaced so every round starts with two. Figures are medians over the
rounds with [min..max]; the last column is the median at the largest K over the one at the smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from i2v_client import build_request
from i2v_common.artifacts import FileStore
from i2v_common.etcd_kv import EtcdKV
from i2v_common.rpc import coordinator_pb2_grpc, node_pb2_grpc
from i2v_common.store_identity import agree
from i2v_contract.keys import Keys
from i2v_contract.memory import ArchSpec, ComponentSize
from i2v_contract.version import package_version
from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2
from i2v_node.claims import ClusterHooks
from i2v_node.hooks import JobRejected, JobReport
from i2v_node.membership import Membership, NodeInfo
from i2v_node.publishing import NodeState
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.media import png

GIB = 1024**3
SIM_MODEL = "tiny"
# A small model shape (the tiny pipeline's order of magnitude), so the jobs' memory need is small.
SIM_ARCH = ArchSpec(
    name="sim-tiny",
    unet=ComponentSize(2_000_000, 600_000, 60_000),
    text_encoder=ComponentSize(500_000, 500_000, 50_000),
    image_encoder=ComponentSize(500_000, 500_000, 50_000),
    vae=ComponentSize(300_000, 300_000, 30_000),
    unet_channels=32,
    vae_channels=(32, 32),
    vae_layers_per_block=1,
    vae_scale_factor=8,
    vae_tile=64,
)
CANNED_VIDEO = b"\x00\x00\x00\x18ftypmp42sim-fleet-canned-video"
SUBMIT_THREADS = 8
IDLE_WINDOW_S = 2.0  # how long the leader's idle CPU use is sampled each round
NODES_PER_START_BATCH = 50  # registrations in flight at once in one worker


# --- the simulated node (worker processes) ------------------------------------------------------


def emit(**fields: Any) -> None:
    """One JSON line to the parent; the clock is time.monotonic(), shared by all local processes."""
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def sim_state(busy: bool) -> NodeState:
    return NodeState(
        busy=busy, free_bytes=8 * GIB, total_bytes=8 * GIB, tier=common_pb2.TIER_CPU, arch=SIM_ARCH
    )


class SimNode(node_pb2_grpc.NodeServicer):
    """The Node service without a pipeline: real claim, progress, heartbeat, canned result."""

    def __init__(
        self, node_id: str, kv: EtcdKV, keys: Keys, store: FileStore, job_s: float, lease_ttl: float
    ) -> None:
        self.node_id = node_id
        self.kv, self.keys, self.store = kv, keys, store
        self.job_s = job_s
        self.lease_ttl = lease_ttl
        self.job: asyncio.Task[None] | None = None
        self.job_id = ""
        self.stopped_why = ""  # set by the hooks' stop(): the claim or the lease went
        self.server = grpc.aio.server()
        node_pb2_grpc.add_NodeServicer_to_server(self, self.server)
        self.addr = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.membership: Membership | None = None
        self.hooks: ClusterHooks | None = None

    async def start(self) -> None:
        await self.server.start()
        info = NodeInfo(addr=self.addr, gpu="", models=(SIM_MODEL,), version=package_version())
        self.membership = Membership(self.kv, self.keys, self.node_id, info, lease_ttl=self.lease_ttl)
        self.hooks = ClusterHooks(self.membership, self.store)
        await self.membership.start(sim_state(busy=False))

    async def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()
        if self.hooks is not None:
            await self.hooks.drain()
        if self.membership is not None:
            await self.membership.stop()
        await self.server.stop(0)

    def _stop(self, why: str) -> None:
        """ClusterHooks' stop(why): the job is no longer this node's to finish; no result follows."""
        self.stopped_why = why
        if self.job is not None:
            self.job.cancel()

    def _release(self) -> None:
        self.job, self.job_id, self.stopped_why = None, "", ""
        assert self.membership is not None
        self.membership.publish(sim_state(busy=False))

    async def Generate(
        self, request: node_pb2.NodeGenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.GenerateEvent]:
        assert self.membership is not None and self.hooks is not None
        if self.job is not None or self.job_id:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"node {self.node_id} is busy")
        self.job_id = request.job_id or uuid.uuid4().hex
        self.membership.publish(sim_state(busy=True))
        try:
            await self.hooks.before_run(self.job_id, request, self._stop)
        except JobRejected as exc:
            self._release()
            await context.abort(exc.code, exc.message)
        emit(ev="claim", job=request.job_id, attempt=request.attempt, epoch=request.epoch, t=time.monotonic())
        events: asyncio.Queue[common_pb2.GenerateEvent | None] = asyncio.Queue()
        # The job runs on in its own task when the caller's stream drops (a leader crash), as on a real node.
        self.job = asyncio.get_running_loop().create_task(self._run(request, events))
        if self.stopped_why:  # the lease lapsed while the claim txn was in flight
            self.job.cancel()
        while (event := await events.get()) is not None:
            yield event

    async def _run(
        self, request: node_pb2.NodeGenerateRequest, events: asyncio.Queue[common_pb2.GenerateEvent | None]
    ) -> None:
        assert self.hooks is not None
        started = time.monotonic()
        code, message, result = grpc.StatusCode.OK, "", None
        try:
            for step in (1, 2):
                events.put_nowait(self._progress(request, step, time.monotonic() - started))
                await asyncio.sleep(self.job_s / 2)
                if step == 1:
                    hb = common_pb2.Heartbeat(
                        elapsed_s=time.monotonic() - started, stage=common_pb2.STAGE_DENOISE
                    )
                    events.put_nowait(common_pb2.GenerateEvent(heartbeat=hb))
            result = self._result(request, time.monotonic() - started)
            events.put_nowait(common_pb2.GenerateEvent(result=result))
        except asyncio.CancelledError:
            code, message = grpc.StatusCode.CANCELLED, self.stopped_why or f"cancelled on node {self.node_id}"
        finally:
            events.put_nowait(None)
            await self.hooks.after_run(JobReport(self.job_id, request, code, message, result))
            emit(ev="result", job=request.job_id, attempt=request.attempt, code=code.name, t=time.monotonic())
            self._release()

    def _progress(
        self, request: node_pb2.NodeGenerateRequest, step: int, elapsed: float
    ) -> common_pb2.GenerateEvent:
        progress = common_pb2.Progress(
            stage=common_pb2.STAGE_DENOISE,
            step=step,
            total_steps=2,
            elapsed_s=elapsed,
            profile="sim",
            node_id=self.node_id,
            attempt=request.attempt,
        )
        return common_pb2.GenerateEvent(progress=progress)

    def _result(self, request: node_pb2.NodeGenerateRequest, elapsed: float) -> common_pb2.Result:
        uri = request.output_uri
        if uri:
            name = uri.removeprefix(self.store.root_url.rstrip("/") + "/")
            uri = self.store.put(name, CANNED_VIDEO)
        req = request.request
        return common_pb2.Result(
            artifact_uri=uri,
            video=b"" if uri else CANNED_VIDEO,
            mime_type="video/mp4",
            frames=req.frames,
            fps=req.fps,
            width=req.width,
            height=req.height,
            steps=req.steps,
            seed=req.seed,
            profile="sim",
            peak_bytes=1,
            timings=common_pb2.Timings(denoise_s=elapsed, total_s=elapsed),
            sha256=hashlib.sha256(CANNED_VIDEO).hexdigest(),
        )

    async def Cancel(
        self, request: node_pb2.NodeCancelRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.NodeCancelResponse:
        running = self.job is not None and request.job_id in ("", self.job_id)
        if running and self.job is not None:
            self.job.cancel()
        return node_pb2.NodeCancelResponse(cancelled=running)

    async def Status(
        self, request: node_pb2.NodeStatusRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.NodeStatus:
        return node_pb2.NodeStatus(
            node_id=self.node_id,
            model=SIM_MODEL,
            tier=common_pb2.TIER_CPU,
            device="cpu (simulated)",
            total_bytes=8 * GIB,
            free_bytes=8 * GIB,
            busy=self.job is not None,
            job_id=self.job_id,
            profile="sim",
            version=package_version(),
            serving=True,
            profiles=["sim"],
        )


async def worker_main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kv = EtcdKV(args.etcd.split(","))
    keys = Keys(args.prefix)
    store = FileStore(Path(args.artifacts))
    nodes = [
        SimNode(f"{args.name}-{i}", kv, keys, store, args.job_seconds, args.node_lease_ttl)
        for i in range(args.first, args.first + args.count)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # The real node's first step: agree with the coordinators on the artifact store (once per
    # process here: its nodes share one store).
    await agree(kv, keys, store, args.artifacts, f"{args.name}-from-{args.first}")
    for i in range(0, len(nodes), NODES_PER_START_BATCH):
        await asyncio.gather(*(n.start() for n in nodes[i : i + NODES_PER_START_BATCH]))
    emit(ev="ready", nodes=len(nodes), t=time.monotonic())
    await stop.wait()
    await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
    await kv.close()


# --- the benchmark (parent process) -------------------------------------------------------------


@dataclass
class Seen:
    """What the workers reported, keyed by job id (first attempt that claimed)."""

    claims: dict[str, tuple[float, int]] = field(default_factory=dict)  # job -> (t, epoch)
    results: dict[str, float] = field(default_factory=dict)
    ready: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    @staticmethod
    def all_in(table: dict[str, Any], job_ids: list[str]) -> bool:
        return all(j in table for j in job_ids)

    def wait(self, what: str, done: Any, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(done, timeout):
                raise TimeoutError(f"{what} not seen within {timeout:g}s")


class Workers:
    """Worker processes hosting the simulated nodes; their JSON lines feed `seen`."""

    def __init__(
        self, args: argparse.Namespace, etcd: list[str], prefix: str, artifacts: Path, k: int
    ) -> None:
        self.seen = Seen()
        self.procs: list[subprocess.Popen[str]] = []
        count = min(args.procs, k)
        per = math.ceil(k / count)
        for first in range(0, k, per):
            cmd = [
                sys.executable, __file__, "--worker",
                "--etcd", ",".join(etcd), "--prefix", prefix, "--artifacts", str(artifacts),
                "--name", f"sim{k}", "--first", str(first), "--count", str(min(per, k - first)),
                "--job-seconds", str(args.job_seconds), "--node-lease-ttl", str(args.node_lease_ttl),
            ]  # fmt: skip
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")
            )
            self.procs.append(proc)
            assert proc.stdout is not None
            threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.seen.cond:
                if ev["ev"] == "ready":
                    self.seen.ready += ev["nodes"]
                elif ev["ev"] == "claim":
                    self.seen.claims.setdefault(ev["job"], (ev["t"], ev["epoch"]))
                elif ev["ev"] == "result" and ev["code"] == "OK":
                    self.seen.results[ev["job"]] = ev["t"]
                self.seen.cond.notify_all()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Round:
    dispatch_rate: float  # burst jobs / (last claim - first submit)
    submit_rate: float  # burst jobs / (last Submit answered - first sent)
    burst: list[float]  # submit -> claim of the burst's jobs (includes waiting for a free node)
    idle: list[float]  # submit -> claim of single jobs on an idle fleet
    rss: int
    idle_cpu: float  # leader CPU seconds per second with the fleet registered and no job
    cpu_per_job_s: float  # leader CPU seconds per burst job, submit to claim
    failover_s: float


@contextlib.contextmanager
def stub_for(addr: str) -> Iterator[coordinator_pb2_grpc.CoordinatorStub]:
    with grpc.insecure_channel(addr) as channel:
        yield coordinator_pb2_grpc.CoordinatorStub(channel)


def registered_nodes(stub: coordinator_pb2_grpc.CoordinatorStub) -> int:
    try:
        status = stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=2)
    except grpc.RpcError:
        return -1
    return sum(t.nodes for t in status.tiers)


def wait_nodes(addr: str, k: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with stub_for(addr) as stub:
        while (n := registered_nodes(stub)) != k:
            if time.monotonic() > deadline:
                raise TimeoutError(f"leader at {addr} sees {n} of {k} nodes after {timeout:g}s")
            time.sleep(0.2)


def submit_all(
    addr: str, job_ids: list[str], req: common_pb2.GenerationRequest
) -> tuple[dict[str, float], float]:
    """Submit every job from SUBMIT_THREADS threads: (job -> when its Submit was sent, when all returned)."""
    submitted: dict[str, float] = {}
    with grpc.insecure_channel(addr) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)

        def one(job_id: str) -> None:
            submitted[job_id] = time.monotonic()
            stub.Submit(coordinator_pb2.SubmitRequest(request=req, request_id=job_id), timeout=10)

        with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
            list(pool.map(one, job_ids))
    return submitted, time.monotonic()


def idle_latencies(
    addr: str, seen: Seen, req: common_pb2.GenerationRequest, tag: str, samples: int
) -> list[float]:
    """One job at a time on an idle fleet: Submit sent -> claimed, in seconds."""
    out = []
    with grpc.insecure_channel(addr) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        for i in range(samples):
            job_id = f"idle-{tag}-{i}"
            sent = time.monotonic()
            stub.Submit(coordinator_pb2.SubmitRequest(request=req, request_id=job_id), timeout=10)
            seen.wait(f"claim of {job_id}", partial(seen.all_in, seen.claims, [job_id]), 30)
            out.append(seen.claims[job_id][0] - sent)
    return out


def submit_until_accepted(
    coordinators: list[CoordinatorProcess], submit: coordinator_pb2.SubmitRequest, deadline: float
) -> None:
    """Send `submit` round the coordinators every 20 ms until one takes it (a leader), or time out."""
    channels = [grpc.insecure_channel(p.address) for p in coordinators]
    try:
        while time.monotonic() < deadline:
            for channel in channels:
                try:
                    coordinator_pb2_grpc.CoordinatorStub(channel).Submit(submit, timeout=0.5)
                    return
                except grpc.RpcError:
                    pass
            time.sleep(0.02)
    finally:
        for channel in channels:
            channel.close()
    raise TimeoutError(f"no coordinator took Submit {submit.request_id} before the deadline")


def failover(group: CoordinatorGroup, seen: Seen, req: common_pb2.GenerationRequest, tag: str) -> float:
    """kill -9 the leader; seconds until a job submitted afterwards is claimed under the new epoch."""
    leader, state, _ = group.wait_leader(15)
    survivors = [p for p in group.procs if p is not leader]
    job_id = f"failover-{tag}"
    killed_at = time.monotonic()
    leader.kill()
    deadline = killed_at + 30
    submit_until_accepted(survivors, coordinator_pb2.SubmitRequest(request=req, request_id=job_id), deadline)
    seen.wait(f"claim of {job_id}", lambda: job_id in seen.claims, max(1.0, deadline - time.monotonic()))
    claimed_at, epoch = seen.claims[job_id]
    if epoch <= state.epoch:
        raise AssertionError(f"{job_id} claimed under epoch {epoch}, not after {state.epoch}")
    group.procs.remove(leader)
    leader.stop()
    group.add().wait_started()
    return claimed_at - killed_at


def run_size(args: argparse.Namespace, etcd: EtcdCluster, workdir: Path, k: int) -> list[Round]:
    prefix = f"/fleet-{k}-{uuid.uuid4().hex[:6]}/"
    artifacts = workdir / "artifacts"
    group = CoordinatorGroup(
        etcd.endpoints, workdir, 2, "--lease-ttl", str(args.coordinator_lease_ttl), "--log-level", "WARNING",
        prefix=prefix,
    )  # fmt: skip
    workers: Workers | None = None
    try:
        group.wait_started()
        started = time.monotonic()
        workers = Workers(args, etcd.endpoints, prefix, artifacts, k)
        seen = workers.seen
        seen.wait(f"{k} nodes registered", lambda: seen.ready == k, args.start_timeout)
        leader, _, _ = group.wait_leader(15)
        wait_nodes(leader.address, k, args.start_timeout)
        print(
            f"K={k}: {k} nodes registered and seen by the leader in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        req = build_request(png(), prompt="fleet", width=64, height=64, frames=2, steps=2, fps=4, seed=3)
        rounds = []
        for r in range(args.rounds):
            leader, _, _ = group.wait_leader(15)
            cpu_before = cpu_seconds(leader.pid)
            time.sleep(IDLE_WINDOW_S)
            idle_cpu = (cpu_seconds(leader.pid) - cpu_before) / IDLE_WINDOW_S
            idle = idle_latencies(leader.address, seen, req, f"k{k}-r{r}", args.idle_samples)
            job_ids = [f"k{k}-r{r}-{i}-{uuid.uuid4().hex[:6]}" for i in range(args.jobs)]
            cpu_before = cpu_seconds(leader.pid)
            submitted, submits_done = submit_all(leader.address, job_ids, req)
            timeout = 60 + 4 * args.jobs * args.job_seconds
            seen.wait("every job claimed", partial(seen.all_in, seen.claims, job_ids), timeout)
            cpu_per_job = (cpu_seconds(leader.pid) - cpu_before) / len(job_ids)
            seen.wait("every result", partial(seen.all_in, seen.results, job_ids), timeout)
            first = min(submitted.values())
            burst = [seen.claims[j][0] - submitted[j] for j in job_ids]
            rate = len(job_ids) / (max(seen.claims[j][0] for j in job_ids) - first)
            submit_rate = len(job_ids) / (submits_done - first)
            rss = rss_bytes(leader.pid)
            took = failover(group, seen, req, f"k{k}-r{r}")
            rounds.append(Round(rate, submit_rate, burst, idle, rss, idle_cpu, cpu_per_job, took))
            print(
                f"K={k} round {r + 1}: idle submit->claim p50 {lat_ms(percentile(idle, 0.5))} "
                f"p99 {lat_ms(percentile(idle, 0.99))}; burst of {args.jobs}: {submit_rate:.0f} submits/s, "
                f"{rate:.1f} dispatches/s, submit->claim p50 {lat_ms(percentile(burst, 0.5))} "
                f"p99 {lat_ms(percentile(burst, 0.99))}, leader CPU {cpu_per_job * 1000:.1f} ms/job; "
                f"leader RSS {rss / 2**20:.0f} MiB, idle CPU {idle_cpu * 100:.1f}%; "
                f"kill -9 -> first dispatch {took * 1000:.0f} ms",
                flush=True,
            )
            wait_nodes(group.wait_leader(15)[0].address, k, args.start_timeout)
        return rounds
    finally:
        if workers is not None:
            workers.stop()
        group.stop_all()


def lat_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}..{fmt.format(max(values))}]"


def report(results: dict[int, list[Round]], args: argparse.Namespace) -> None:
    sizes = sorted(results)
    metrics = (
        ("idle submit->claim p50", lambda r: percentile(r.idle, 0.5) * 1000, "{:.1f}"),
        ("idle submit->claim p99", lambda r: percentile(r.idle, 0.99) * 1000, "{:.1f}"),
        ("burst submits/s", lambda r: r.submit_rate, "{:.1f}"),
        ("burst dispatches/s", lambda r: r.dispatch_rate, "{:.1f}"),
        ("burst submit->claim p50", lambda r: percentile(r.burst, 0.5) * 1000, "{:.1f}"),
        ("burst submit->claim p99", lambda r: percentile(r.burst, 0.99) * 1000, "{:.1f}"),
        ("leader CPU ms per job", lambda r: r.cpu_per_job_s * 1000, "{:.1f}"),
        ("leader RSS (MiB)", lambda r: r.rss / 2**20, "{:.0f}"),
        ("leader idle CPU (%)", lambda r: r.idle_cpu * 100, "{:.1f}"),
        ("kill -9 failover (ms)", lambda r: r.failover_s * 1000, "{:.0f}"),
    )
    print()
    print(
        f"{args.jobs} jobs x {args.rounds} rounds per size, job {args.job_seconds:g} s, 2 coordinators, "
        f"single-member etcd, {args.procs} worker processes; median [min..max] over rounds; times in ms"
    )
    print(
        "node capacity (K / job seconds, a bound on burst dispatches/s): "
        + ", ".join(f"K={k}: {k / args.job_seconds:.0f}/s" for k in sizes)
    )
    header = f"{'':<24}" + "".join(f"{f'K={k}':>28}" for k in sizes)
    if len(sizes) > 1:
        header += f"{f'K={sizes[-1]} / K={sizes[0]}':>18}"
    print(header)
    for name, get, fmt in metrics:
        row = f"{name:<24}" + "".join(f"{spread([get(r) for r in results[k]], fmt):>28}" for k in sizes)
        if len(sizes) > 1:
            lo = statistics.median(get(r) for r in results[sizes[0]])
            hi = statistics.median(get(r) for r in results[sizes[-1]])
            row += f"{hi / lo:>18.2f}" if lo else f"{'-':>18}"
        print(row)


def bench_main(args: argparse.Namespace) -> int:
    sizes = sorted({int(s) for s in args.nodes.split(",")})
    if not sizes or min(sizes) < 1 or args.jobs < 1 or args.rounds < 1:
        raise SystemExit("need --nodes of sizes >= 1, --jobs >= 1, --rounds >= 1")
    with tempfile.TemporaryDirectory(prefix="i2v-fleet-") as tmp:
        workdir = Path(tmp)
        etcd = EtcdCluster(1, workdir).start()
        try:
            results = {k: run_size(args, etcd, workdir, k) for k in sizes}
        finally:
            etcd.stop_all()
    report(results, args)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", default="10,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--jobs", type=int, default=100, help="jobs per round")
    parser.add_argument("--job-seconds", type=float, default=0.2, help="how long a simulated job runs")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per fleet size (one failover each)")
    parser.add_argument(
        "--idle-samples", type=int, default=20, help="single jobs per round on the idle fleet"
    )
    parser.add_argument("--procs", type=int, default=4, help="worker processes hosting the nodes")
    parser.add_argument("--node-lease-ttl", type=float, default=10.0, help="simulated nodes' lease TTL (s)")
    parser.add_argument("--coordinator-lease-ttl", type=float, default=5.0)
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds for a fleet to register")
    # worker mode (started by the benchmark itself)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--etcd", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--artifacts", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args))
        return 0
    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
