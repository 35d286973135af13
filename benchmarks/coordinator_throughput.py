"""Coordinator figures on a real etcd: durable submit throughput, submit -> node-start latency, overhead.

Run from the repository root:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/coordinator_throughput.py [--clients 8 --submits 400]

Set-up: a fresh single-member etcd (tests/etcd_cluster.py), and in this process a leading
coordinator assembled from the real parts plus `--nodes` tiny real nodes (registration, fenced claims,
results through etcd), as in tests/integration/coordinator_cluster.py. Clients are grpc.aio stubs
on the same event loop, so every figure includes the client's own cost on the same (shared) CPUs.

1. throughput: `--clients` concurrent clients send `--submits` Submit calls in total with no node
   registered (jobs stay queued); each answer means the job is committed in etcd.
2. latency: on the idle cluster, one job at a time: Submit, then Watch until the first event that
   shows the node working (RUNNING, or any progress); p50 / p99 over `--latency-samples`.
3. overhead: the same tiny job end to end through Coordinator.Generate (then Download) and directly through
   Node.Generate, interleaved; the ratio of the medians is the coordinator's cost per job.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from i2v_client import build_request
from i2v_common.rpc import coordinator_pb2_grpc, node_pb2_grpc
from i2v_contract.keys import Keys
from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2
from i2v_coordinator.dispatcher import DispatchConfig
from i2v_node.config import default_cache_dir
from tests.etcd_cluster import EtcdCluster
from tests.integration.coordinator_cluster import InProcessCoordinator, InProcessNode, artifact_store
from tests.media import png

MIB = 1024 * 1024


def request(steps: int) -> common_pb2.GenerationRequest:
    return build_request(
        png(), prompt="a slow pan", width=64, height=64, frames=2, steps=steps, fps=4, seed=5
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def throughput(stub: coordinator_pb2_grpc.CoordinatorStub, clients: int, total: int) -> float:
    req = request(2)
    per_client = total // clients

    async def client() -> None:
        for _ in range(per_client):
            await stub.Submit(coordinator_pb2.SubmitRequest(request=req, request_id=uuid.uuid4().hex))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return per_client * clients / (time.perf_counter() - started)


async def start_latency(stub: coordinator_pb2_grpc.CoordinatorStub, samples: int) -> list[float]:
    req = request(1)
    out = []
    for _ in range(samples):
        job_id = uuid.uuid4().hex
        started = time.perf_counter()
        await stub.Submit(coordinator_pb2.SubmitRequest(request=req, request_id=job_id))
        seen = None
        async for event in stub.Watch(coordinator_pb2.WatchRequest(job_id=job_id)):
            if seen is None and (
                event.state == coordinator_pb2.JOB_STATE_RUNNING or event.HasField("progress")
            ):
                seen = time.perf_counter() - started
            if event.state in (coordinator_pb2.JOB_STATE_SUCCEEDED, coordinator_pb2.JOB_STATE_FAILED):
                break
        assert seen is not None, f"job {job_id} never started"
        out.append(seen)
    return out


async def overhead(
    stub: coordinator_pb2_grpc.CoordinatorStub, node_stub: node_pb2_grpc.NodeStub, reps: int, steps: int
) -> tuple[list[float], list[float]]:
    req = request(steps)
    via, direct = [], []
    for _ in range(reps):
        started = time.perf_counter()
        async for event in stub.Generate(
            coordinator_pb2.SubmitRequest(request=req, request_id=uuid.uuid4().hex)
        ):
            final = event
        # The result names the video: fetch it, so both paths end with the bytes at the client.
        async for _piece in stub.Download(coordinator_pb2.DownloadRequest(job_id=final.job_id)):
            pass
        via.append(time.perf_counter() - started)
        assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and final.result.artifact_uri, final
        started = time.perf_counter()
        async for _event in node_stub.Generate(node_pb2.NodeGenerateRequest(request=req)):
            pass
        direct.append(time.perf_counter() - started)
    return via, direct


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        etcd = EtcdCluster(1, tmp).start()
        try:
            await run(args, etcd, tmp)
        finally:
            etcd.stop_all()


async def run(args: argparse.Namespace, etcd: EtcdCluster, tmp: Path) -> None:
    keys = Keys(f"/bench-{uuid.uuid4().hex[:6]}/")
    store = artifact_store(tmp / "artifacts")
    config = DispatchConfig(max_queue=args.submits * 2)
    nodes: list[InProcessNode] = []
    coordinator = await InProcessCoordinator(etcd.endpoints, keys, "bench-c1", store, config=config).start()
    channel = grpc.aio.insecure_channel(
        coordinator.addr, options=[("grpc.max_receive_message_length", 80 * MIB)]
    )
    try:
        await coordinator.wait_leading()
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        rate = await throughput(stub, args.clients, args.submits)
        print(f"durable submits/s: {rate:.0f} ({args.clients} concurrent clients, {args.submits} submits)")
        if args.nodes == 0:
            return
        await coordinator.stop()
        # Parts 2 and 3 on a fresh key prefix: tiny nodes and a coordinator sized for the tiny model.
        keys = Keys(f"/bench-{uuid.uuid4().hex[:6]}/")
        for i in range(args.nodes):
            nodes.append(
                await InProcessNode(etcd.endpoints, keys, f"bench-n{i}", store, args.cache_dir).start()
            )
        coordinator = await InProcessCoordinator(
            etcd.endpoints, keys, "bench-c2", store, config=config
        ).start()
        await coordinator.wait_leading()
        await channel.close()
        channel = grpc.aio.insecure_channel(
            coordinator.addr, options=[("grpc.max_receive_message_length", 80 * MIB)]
        )
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        for _ in range(100):
            if len(coordinator.registry.snapshot()) == args.nodes:
                break
            await asyncio.sleep(0.05)
        await start_latency(stub, 2)  # warm-up
        latencies = await start_latency(stub, args.latency_samples)
        print(
            f"submit -> node start (idle cluster of {args.nodes} tiny nodes, n={len(latencies)}): "
            f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms"
        )
        async with grpc.aio.insecure_channel(
            nodes[0].server.address, options=[("grpc.max_receive_message_length", 80 * MIB)]
        ) as node_channel:
            via, direct = await overhead(
                stub, node_pb2_grpc.NodeStub(node_channel), args.overhead_samples, args.overhead_steps
            )
        v, d = statistics.median(via), statistics.median(direct)
        print(
            f"end to end, tiny job ({args.overhead_steps} steps, n={len(via)}): "
            f"via coordinator {v * 1000:.0f} ms, "
            f"direct to node {d * 1000:.0f} ms, ratio {v / d:.2f} (+{(v - d) * 1000:.0f} ms per job)"
        )
    finally:
        await channel.close()
        await coordinator.stop()
        for node in nodes:
            await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--submits", type=int, default=400)
    parser.add_argument("--nodes", type=int, default=2, help="tiny nodes for parts 2 and 3 (0 = skip them)")
    parser.add_argument("--latency-samples", type=int, default=30)
    parser.add_argument("--overhead-samples", type=int, default=7)
    parser.add_argument("--overhead-steps", type=int, default=10)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
