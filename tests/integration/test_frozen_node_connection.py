"""A coordinator->node connection that silently stops forwarding costs one attempt, not the job.

Real etcd, a real in-process coordinator, two small fake nodes (real gRPC Node servers that claim,
stream and write results on etcd as a node does). n1 is reached through a TCP proxy that, once
frozen, keeps its open connections but forwards nothing on them (new connections still work): the
half-dead connection seen in production. The job dispatched to n1 over the frozen connection must
be taken back after the first-event bound and finish on n2 well within the claim timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from i2v_client import build_request
from i2v_common.etcd_kv import EtcdKV
from i2v_common.rpc import coordinator_pb2_grpc, node_pb2_grpc
from i2v_contract import states
from i2v_contract.fencing import claim_txn
from i2v_contract.keys import Keys, NodeRecord, ResultRecord
from i2v_contract.kv import Compare, Put
from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2
from i2v_coordinator import jobs
from i2v_coordinator.dispatcher import DispatchConfig
from tests.etcd_cluster import EtcdCluster
from tests.integration.coordinator_cluster import InProcessCoordinator, artifact_store
from tests.media import png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLAIM_TIMEOUT_S = 10.0


class FreezingProxy:
    """TCP proxy; `freeze()` stalls every connection open now (sockets stay open), later ones work."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._open: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        for frozen in self._open:
            frozen.set()
        self._open = []

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        node_r, node_w = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers += [client_w, node_w]
        frozen = asyncio.Event()
        self._open.append(frozen)
        for reader, writer in ((client_r, node_w), (node_r, client_w)):
            task = asyncio.create_task(self._pump(reader, writer, frozen))
            self._tasks.add(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frozen: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if frozen.is_set():
                await asyncio.Event().wait()  # hold the socket open, forward nothing, ever
            writer.write(data)
            await writer.drain()

    async def stop(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()


class FakeNode(node_pb2_grpc.NodeServicer):
    """Claims on etcd (fenced like ClusterHooks), sends an event at once, then writes an OK result."""

    def __init__(self, kv: EtcdKV, keys: Keys, node_id: str, free_gib: int) -> None:
        self.kv, self.keys, self.node_id, self.free = kv, keys, node_id, free_gib * GIB
        self.jobs: list[str] = []

    async def start(self) -> str:
        self.server = grpc.aio.server()
        node_pb2_grpc.add_NodeServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{self.port}"

    async def register(self, addr: str) -> None:
        self.lease = await self.kv.grant_lease(60)
        record = NodeRecord(
            addr=addr,
            gpu="",
            total_bytes=self.free,
            free_bytes=self.free,
            tier=common_pb2.TIER_CPU,
            busy=False,
            models=("tiny",),
            version="test",
        )
        await self.kv.put(self.keys.node(self.node_id), record.to_json(), self.lease)

    async def Generate(
        self, request: node_pb2.NodeGenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.GenerateEvent]:
        txn = claim_txn(
            self.keys,
            request.job_id,
            request.attempt,
            epoch=request.epoch,
            assign_revision=request.assign_revision,
            node_id=self.node_id,
            lease=self.lease,
        )
        claimed = await self.kv.txn(txn.compares, txn.puts)
        if not claimed.succeeded:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "stale dispatch")
        self.jobs.append(request.job_id)
        yield common_pb2.GenerateEvent(heartbeat=common_pb2.Heartbeat(elapsed_s=0.0))
        await asyncio.sleep(0.3)
        key = self.keys.result(request.job_id, request.attempt)
        produced = common_pb2.Result(
            artifact_uri=request.output_uri,
            profile="fast",
            timings=common_pb2.Timings(total_s=0.3),
            peak_bytes=1,
        )
        result = ResultRecord("OK", result=produced)
        await self.kv.txn([Compare(key, "create", "==", 0)], [Put(key, result.to_json())])
        yield common_pb2.GenerateEvent(result=common_pb2.Result(artifact_uri=request.output_uri))


async def wait_final(coordinator: InProcessCoordinator, job_id: str, within_s: float) -> jobs.JobView:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        record = coordinator.store.table.get(job_id)  # finished jobs leave table.jobs
        if record is not None and record.view.final:
            return record.view
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} not final within {within_s} s")


async def test_a_frozen_connection_costs_one_attempt_and_the_job_finishes_elsewhere(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    keys = Keys(f"/frozen-{uuid.uuid4().hex[:8]}/")
    kv = EtcdKV(etcd.endpoints)
    config = DispatchConfig(
        claim_timeout_s=CLAIM_TIMEOUT_S,
        first_event_s=2.0,
        stream_idle_s=3.0,
        recent_window_s=0.001,  # route by free memory alone: n1 (more free) is always preferred
    )
    coordinator = InProcessCoordinator(etcd.endpoints, keys, "c1", artifact_store(tmp_path / "a"), config)
    n1, n2 = FakeNode(kv, keys, "n1", 60), FakeNode(kv, keys, "n2", 40)
    proxy = FreezingProxy(0)
    async with contextlib.AsyncExitStack() as stack:
        await coordinator.start()
        stack.push_async_callback(coordinator.stop)
        await coordinator.wait_leading()
        proxy = FreezingProxy(int((await n1.start()).rsplit(":", 1)[1]))
        await proxy.start()
        stack.push_async_callback(proxy.stop)
        await n1.register(f"127.0.0.1:{proxy.port}")
        await n2.register(await n2.start())
        for node in (n1, n2):
            stack.push_async_callback(node.server.stop, 0)
        request = build_request(png(), prompt="p", width=64, height=64, frames=2, steps=2, fps=4, seed=3)
        async with grpc.aio.insecure_channel(coordinator.addr) as channel:
            stub = coordinator_pb2_grpc.CoordinatorStub(channel)

            async def submit(job_id: str) -> None:
                await stub.Submit(
                    coordinator_pb2.SubmitRequest(request=request, request_id=job_id), timeout=10
                )

            for _ in range(100):  # the registry sees both nodes
                if len(coordinator.registry.snapshot()) == 2:
                    break
                await asyncio.sleep(0.05)
            await submit("warm")  # establishes the coordinator's channel to n1 through the proxy
            warm = await wait_final(coordinator, "warm", 10)
            assert (warm.state, warm.node_id) == (states.SUCCEEDED, "n1")

            proxy.freeze()
            started = time.monotonic()
            await submit("job")
            view = await wait_final(coordinator, "job", 30)
            took = time.monotonic() - started
            nodes = await stub.ListNodes(coordinator_pb2.ListNodesRequest(), timeout=5)
        assert (view.state, view.node_id, view.attempt, view.lost_attempts) == (states.SUCCEEDED, "n2", 2, 0)
        assert took < CLAIM_TIMEOUT_S, f"took {took:.1f} s: the frozen connection cost more than one attempt"
        assert n1.jobs == ["warm"] and n2.jobs == ["job"]
        health = {n.node_id: n for n in nodes.nodes}
        assert (
            health["n1"].consecutive_failures == 1 and "no event from the node" in health["n1"].health_reason
        )
        assert health["n2"].consecutive_failures == 0
    await kv.close()
