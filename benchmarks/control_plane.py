"""Control-plane figures at scale: failover against stored history, ListJobs, a submit burst, retention.

Run from the repository root:
    .venv/bin/python benchmarks/control_plane.py [--finished 0,10000,100000 --queued 0,1000 --rounds 3]

Everything is real but the GPU work: one single-member etcd (tests/etcd_cluster.py), two
`i2v-coordinator` processes per case (tests/chaos/coordinator_procs.py) and simulated nodes from
benchmarks/fleet.py (the node's own Membership and ClusterHooks: lease, fenced claim, claim-guarded
result; a sleep instead of the pipeline). etcd is filled directly with real-shaped records by
benchmarks/fill_etcd.py before the coordinators start.

1. failover: per (finished, queued) case, --rounds times: kill -9 the leader, then retry one Submit
   on the survivor every 20 ms; the figure is the kill to the first claim made under the new epoch
   (of the probe job or of a queued one). The new leader is then watched for 5 s: its epoch must not
   change (a step-down). The load line the new leader logs gives its table load time.
2. ListJobs: the first page (limit 100) on the leader and on the standby, --samples times per case.
3. burst: --burst Submits from 8 client threads against the leader (no nodes, so all stay queued);
   submits/s, the leader's epoch sampled every 50 ms meanwhile (must stay constant), the worst
   event-loop lag it recorded (i2v_event_loop_lag_seconds), the jobs stored.
4. retention soak: a coordinator with --retention-max-age --soak-retention, etcd with periodic
   auto-compaction, simulated nodes, --soak-rate jobs/s for --soak-seconds; every 10 s the finished
   jobs kept and etcd's db size (total and in use, from etcd's /metrics).
Figures are medians with [min..max] over rounds or samples.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from benchmarks.fill_etcd import fill
from benchmarks.fleet import Seen, Workers, submit_all, submit_until_accepted, wait_nodes
from i2v_client import build_request
from i2v_common.etcd_kv import EtcdKV
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.keys import Keys
from i2v_contract.kv import count_prefix
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.media import png

_LOADED = re.compile(r"job table loaded at revision \d+ in ([0-9.]+)s: (\d+) open jobs")
SIM_NODES = 4
T = TypeVar("T")


def request() -> common_pb2.GenerationRequest:
    return build_request(png(), prompt="control plane", width=64, height=64, frames=2, steps=2, fps=4, seed=3)


def spread(values: list[float], scale: float = 1.0, unit: str = "ms") -> str:
    if not values:
        return "n/a"
    v = [x * scale for x in values]
    return f"{statistics.median(v):.1f} {unit} [{min(v):.1f}..{max(v):.1f}]"


def with_kv(endpoints: list[str], use: Callable[[EtcdKV], Awaitable[T]]) -> T:
    """Run `use(kv)` on a fresh EtcdKV in its own event loop (the adapter is bound to one loop)."""

    async def body() -> T:
        kv = EtcdKV(endpoints)
        try:
            return await use(kv)
        finally:
            await kv.close()

    return asyncio.run(body())


def etcd_metric(endpoint: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise KeyError(name)


def max_loop_lag(proc: CoordinatorProcess) -> float:
    """The largest bucket bound that a lag observation fell into (an upper bound of the worst lag)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    worst, previous = 0.0, 0.0
    for line in text.splitlines():
        if line.startswith('i2v_event_loop_lag_seconds_bucket{le="'):
            bound = line.split('"')[1]
            count = float(line.split()[1])
            if count > previous:
                worst = float("inf") if bound == "+Inf" else float(bound)
            previous = count
    return worst


def load_times(proc: CoordinatorProcess) -> list[tuple[float, int]]:
    return [(float(s), int(n)) for s, n in _LOADED.findall(proc.log_path.read_text(errors="replace"))]


class EpochWatch:
    """Samples a coordinator's epoch in a thread; `changes` counts epoch changes while leading."""

    def __init__(self, proc: CoordinatorProcess, poll_s: float = 0.05) -> None:
        self.proc = proc
        self.epochs: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(poll_s,), daemon=True)
        self._thread.start()

    def _run(self, poll_s: float) -> None:
        while not self._stop.is_set():
            state = self.proc.state(timeout=1.0)
            if state is not None:
                self.epochs.append(state.epoch if state.is_leader else 0)
            self._stop.wait(poll_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return sum(1 for a, b in zip(self.epochs, self.epochs[1:], strict=False) if a != b)


def list_first_page(addr: str, samples: int) -> list[float]:
    out = []
    with grpc.insecure_channel(addr) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        for _ in range(samples):
            started = time.perf_counter()
            stub.ListJobs(coordinator_pb2.ListJobsRequest(limit=100), timeout=10)
            out.append(time.perf_counter() - started)
    return out


def first_claim_after(seen: Seen, epoch: int, since: float, timeout: float) -> float:
    def found() -> float | None:
        times = [t for t, e in seen.claims.values() if e > epoch and t >= since]
        return min(times) if times else None

    seen.wait("a claim under the new epoch", lambda: found() is not None, timeout)
    value = found()
    assert value is not None
    return value


@dataclass
class Case:
    finished: int
    queued: int
    fill_s: float = 0.0
    failover: list[float] = field(default_factory=list)
    step_downs: int = 0
    loads: list[float] = field(default_factory=list)
    list_leader: list[float] = field(default_factory=list)
    list_standby: list[float] = field(default_factory=list)


def coordinators(etcd: EtcdCluster, workdir: Path, prefix: str, *extra: str) -> CoordinatorGroup:
    group = CoordinatorGroup(etcd.endpoints, workdir, 2, "--log-level", "INFO", *extra, prefix=prefix)
    group.wait_started()
    return group


def workers_args(job_seconds: float) -> argparse.Namespace:
    return argparse.Namespace(procs=1, job_seconds=job_seconds, node_lease_ttl=10.0)


def run_case(args: argparse.Namespace, etcd: EtcdCluster, workdir: Path, finished: int, queued: int) -> Case:
    case = Case(finished, queued)
    prefix = f"/cp-{finished}-{queued}-{uuid.uuid4().hex[:6]}/"
    started = time.perf_counter()
    with_kv(etcd.endpoints, lambda kv: fill(kv, Keys(prefix), finished, queued))
    case.fill_s = time.perf_counter() - started
    group = coordinators(etcd, workdir, prefix, "--max-queue", str(max(1000, 2 * queued)))
    workers = Workers(
        workers_args(args.job_seconds), etcd.endpoints, prefix, workdir / "artifacts", SIM_NODES
    )
    try:
        seen = workers.seen
        seen.wait("nodes registered", lambda: seen.ready == SIM_NODES, 60)
        leader, _, _ = group.wait_leader(30)
        wait_nodes(leader.address, SIM_NODES, 60)
        standby = next(p for p in group.procs if p is not leader)
        case.list_leader = list_first_page(leader.address, args.samples)
        case.list_standby = list_first_page(standby.address, args.samples)
        for r in range(args.rounds):
            leader, state, _ = group.wait_leader(30)
            survivors = [p for p in group.procs if p is not leader]
            killed_at = time.monotonic()
            leader.kill()
            probe = coordinator_pb2.SubmitRequest(
                request=request(), request_id=f"probe-{r}-{uuid.uuid4().hex[:6]}"
            )
            submit_until_accepted(survivors, probe, killed_at + 30)
            claimed = first_claim_after(seen, state.epoch, killed_at, 30)
            case.failover.append(claimed - killed_at)
            new_leader, _, _ = group.wait_leader(15, exclude=leader)
            watch = EpochWatch(new_leader)
            time.sleep(5)
            case.step_downs += watch.stop()
            case.loads.extend(s for s, _ in load_times(new_leader)[-1:])
            group.procs.remove(leader)
            leader.stop()
            group.add().wait_started()
            print(
                f"  finished={finished} queued={queued} round {r + 1}: kill -9 -> first dispatch "
                f"{case.failover[-1] * 1000:.0f} ms",
                flush=True,
            )
        return case
    finally:
        workers.stop()
        group.stop_all()


@dataclass
class Burst:
    jobs: int
    submits_per_s: float
    epoch_changes: int
    worst_lag_s: float
    stored: int


def run_burst(args: argparse.Namespace, etcd: EtcdCluster, workdir: Path) -> Burst:
    prefix = f"/cp-burst-{uuid.uuid4().hex[:6]}/"
    group = coordinators(etcd, workdir, prefix, "--max-queue", str(args.burst + 1000))
    try:
        leader, _, _ = group.wait_leader(30)
        watch = EpochWatch(leader)
        job_ids = [f"burst-{i}-{uuid.uuid4().hex[:8]}" for i in range(args.burst)]
        submitted, done = submit_all(leader.address, job_ids, request())
        rate = len(job_ids) / (done - min(submitted.values()))
        time.sleep(2)  # the watch of our own writes drains after the last answer
        changes = watch.stop()
        stored = with_kv(etcd.endpoints, lambda kv: count_prefix(kv, Keys(prefix).jobs))
        return Burst(len(job_ids), rate, changes, max_loop_lag(leader), stored)
    finally:
        group.stop_all()


def run_soak(args: argparse.Namespace, workdir: Path) -> list[tuple[float, int, float, float]]:
    """(elapsed s, finished jobs kept, db MiB, db in use MiB) every 10 s."""
    soak_dir = workdir / "soak"
    soak_dir.mkdir()
    etcd = EtcdCluster(1, soak_dir, auto_compaction=("periodic", args.soak_compaction)).start()
    prefix = "/cp-soak/"
    retention = f"{args.soak_retention:g}s"
    group = coordinators(
        etcd, soak_dir, prefix, "--retention-max-age", retention, "--retention-interval", "2s"
    )
    workers = Workers(workers_args(0.02), etcd.endpoints, prefix, soak_dir / "artifacts", SIM_NODES)
    samples: list[tuple[float, int, float, float]] = []
    stop = threading.Event()
    try:
        seen = workers.seen
        seen.wait("nodes registered", lambda: seen.ready == SIM_NODES, 60)
        leader, _, _ = group.wait_leader(30)
        wait_nodes(leader.address, SIM_NODES, 60)
        req = request()

        def submitter() -> None:
            with grpc.insecure_channel(leader.address) as channel:
                stub = coordinator_pb2_grpc.CoordinatorStub(channel)
                i = 0
                while not stop.is_set():
                    with_id = coordinator_pb2.SubmitRequest(request=req, request_id=f"soak-{i}")
                    try:
                        stub.Submit(with_id, timeout=5)
                    except grpc.RpcError as err:
                        print(f"  soak submit {i}: {err.code().name}", flush=True)
                    i += 1
                    stop.wait(1 / args.soak_rate)

        thread = threading.Thread(target=submitter, daemon=True)
        started = time.monotonic()
        thread.start()
        history = Keys(prefix).history
        endpoint = etcd.endpoints[0]
        try:
            while (elapsed := time.monotonic() - started) < args.soak_seconds:
                time.sleep(10)
                kept = with_kv(etcd.endpoints, lambda kv: count_prefix(kv, history))
                total = etcd_metric(endpoint, "etcd_mvcc_db_total_size_in_bytes") / 2**20
                in_use = etcd_metric(endpoint, "etcd_mvcc_db_total_size_in_use_in_bytes") / 2**20
                samples.append((elapsed + 10, kept, total, in_use))
                print(
                    f"  soak t={elapsed + 10:4.0f}s finished kept {kept:5d}  db {total:6.1f} MiB  "
                    f"in use {in_use:6.1f} MiB",
                    flush=True,
                )
        finally:
            stop.set()
            thread.join(10)
        return samples
    finally:
        workers.stop()
        group.stop_all()
        etcd.stop_all()


def report(cases: list[Case], burst: Burst | None, soak: list[tuple[float, int, float, float]]) -> None:
    print("\n== failover against stored history (2 coordinators, TTL 5 s, 4 simulated nodes) ==")
    print(
        f"{'finished':>9} {'queued':>7}  {'fill':>7}  {'kill -9 -> first dispatch':<30}"
        f"{'step-downs':>10}  {'new leader load':<26}"
    )
    for c in cases:
        print(
            f"{c.finished:>9} {c.queued:>7}  {c.fill_s:6.1f}s  {spread(c.failover, 1000):<30}"
            f"{c.step_downs:>10}  {spread(c.loads, 1000):<26}"
        )
    print("\n== ListJobs first page (limit 100) ==")
    for c in cases:
        print(
            f"{c.finished:>9} finished {c.queued:>5} queued: leader {spread(c.list_leader, 1000)}   "
            f"standby {spread(c.list_standby, 1000)}"
        )
    if burst is not None:
        print("\n== submit burst (8 client threads, no nodes) ==")
        print(
            f"{burst.jobs} submits: {burst.submits_per_s:.0f} submits/s, {burst.stored} stored, "
            f"leader epoch changes {burst.epoch_changes}, worst event-loop lag <= {burst.worst_lag_s:g} s"
        )
    if soak:
        print("\n== retention soak ==")
        print(f"{'t (s)':>6} {'finished kept':>14} {'db MiB':>8} {'in use MiB':>11}")
        for t, kept, total, in_use in soak:
            print(f"{t:6.0f} {kept:14d} {total:8.1f} {in_use:11.1f}")


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--finished", type=ints, default=[0, 10_000, 100_000], help="finished jobs stored")
    p.add_argument("--queued", type=ints, default=[0, 1000], help="queued jobs stored")
    p.add_argument("--rounds", type=int, default=3, help="kill -9 failovers per case")
    p.add_argument("--samples", type=int, default=20, help="ListJobs calls per coordinator per case")
    p.add_argument("--job-seconds", type=float, default=0.5, help="simulated job time in failover cases")
    p.add_argument("--burst", type=int, default=20_000, help="Submits in the burst (0 = skip)")
    p.add_argument("--soak-seconds", type=float, default=150.0, help="0 = skip the retention soak")
    p.add_argument("--soak-rate", type=float, default=20.0, help="jobs per second in the soak")
    p.add_argument("--soak-retention", type=float, default=30.0, help="seconds finished jobs are kept")
    p.add_argument("--soak-compaction", default="30s", help="etcd periodic auto-compaction retention")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="i2v-cp-") as tmp:
        workdir = Path(tmp)
        etcd = EtcdCluster(1, workdir).start()
        cases: list[Case] = []
        burst = None
        try:
            for finished in args.finished:
                for queued in args.queued:
                    cases.append(run_case(args, etcd, workdir, finished, queued))
            if args.burst:
                burst = run_burst(args, etcd, workdir)
        finally:
            etcd.stop_all()
        soak = run_soak(args, workdir) if args.soak_seconds > 0 else []
    report(cases, burst, soak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
