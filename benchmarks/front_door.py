"""The front door's cost: a job call through a standby (forwarded to the leader) against the same call
sent to the leader directly.

Run from the repository root:
    .venv/bin/python benchmarks/front_door.py [--calls 100 --warmup 10]

Set-up: a fresh single-member etcd (tests/etcd_cluster.py) and two `i2v-coordinator` processes
(tests/chaos/coordinator_procs.py), no node, so every Submit stays queued. This process is the
client: one grpc.aio channel to the leader and one to the standby. Calls alternate direct and
forwarded (the order flips every call), one at a time, so both see the same etcd and CPU load:
1. Submit (a 64x64 PNG): each answer means the job is committed in etcd (a fenced txn) first.
2. Get of a queued job: answered from the leader's memory, so the figure is the hop alone.
Printed per call: median and p95 of direct and forwarded latency, and the extra a forwarded call
costs (the difference of the medians, and of the p95s). The 2 CPU cores are shared by etcd, both
coordinators and the client, so absolute figures are pessimistic; the difference is the point.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from i2v_client import build_request
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.wire import coordinator_pb2
from tests.chaos.coordinator_procs import CoordinatorGroup
from tests.etcd_cluster import EtcdCluster
from tests.media import png

Call = Callable[[coordinator_pb2_grpc.CoordinatorStub], Awaitable[object]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


REQUEST = build_request(png(), prompt="a pan", width=64, height=64, frames=2, steps=2, fps=4, seed=1)


async def submit(stub: coordinator_pb2_grpc.CoordinatorStub, job_id: str = "") -> object:
    submitted = coordinator_pb2.SubmitRequest(request=REQUEST, request_id=job_id or uuid.uuid4().hex)
    return await stub.Submit(submitted, timeout=10)


def get_of(job_id: str) -> Call:
    async def get(stub: coordinator_pb2_grpc.CoordinatorStub) -> object:
        return await stub.Get(coordinator_pb2.GetRequest(job_id=job_id), timeout=10)

    return get


async def timed(call: Call, stub: coordinator_pb2_grpc.CoordinatorStub) -> float:
    started = time.perf_counter()
    await call(stub)
    return (time.perf_counter() - started) * 1000


async def compare(
    name: str, call: Call, leader: coordinator_pb2_grpc.CoordinatorStub,
    standby: coordinator_pb2_grpc.CoordinatorStub, calls: int, warmup: int,
) -> str:  # fmt: skip
    direct: list[float] = []
    forwarded: list[float] = []
    for i in range(warmup + calls):
        pairs = [(direct, leader), (forwarded, standby)]
        for sink, stub in pairs if i % 2 else reversed(pairs):
            took = await timed(call, stub)
            if i >= warmup:
                sink.append(took)
    d50, f50 = statistics.median(direct), statistics.median(forwarded)
    d95, f95 = percentile(direct, 0.95), percentile(forwarded, 0.95)
    return (
        f"{name:<7} {calls} calls each: direct median {d50:.2f} ms p95 {d95:.2f} ms; forwarded median "
        f"{f50:.2f} ms p95 {f95:.2f} ms; extra median {f50 - d50:+.2f} ms p95 {f95 - d95:+.2f} ms"
    )


async def measure(leader_addr: str, standby_addr: str, calls: int, warmup: int) -> list[str]:
    async with (
        grpc.aio.insecure_channel(leader_addr) as to_leader,
        grpc.aio.insecure_channel(standby_addr) as to_standby,
    ):
        leader = coordinator_pb2_grpc.CoordinatorStub(to_leader)
        standby = coordinator_pb2_grpc.CoordinatorStub(to_standby)
        lines = [await compare("Submit", submit, leader, standby, calls, warmup)]
        queued = f"bench-get-{uuid.uuid4().hex[:8]}"
        await submit(leader, queued)
        lines.append(await compare("Get", get_of(queued), leader, standby, calls, warmup))
        return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="measured calls per kind and route")
    parser.add_argument("--warmup", type=int, default=10, help="calls per kind and route not counted")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="i2v-front-door-") as tmp:
        work = Path(tmp)
        (work / "etcd").mkdir()
        etcd = EtcdCluster(1, work / "etcd").start()
        group = CoordinatorGroup(etcd.endpoints, work, 2, "--max-queue", "100000")
        try:
            group.wait_started()
            leader, _, _ = group.wait_leader(15.0)
            standby = next(p for p in group.procs if p is not leader)
            lines = asyncio.run(measure(leader.address, standby.address, args.calls, args.warmup))
        finally:
            group.stop_all()
            etcd.stop_all()
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
