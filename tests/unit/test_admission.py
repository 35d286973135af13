"""Exact admission: the queue bound holds under concurrent Submits (MemoryKV, loopback gRPC).

Each Submit awaits the artifact put and the etcd txn after its admission check; without a slot
reserved at the check, concurrent Submits all see the same depth and the queue overshoots.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc

from i2v_contract.artifacts import open_store
from i2v_contract.client import build_request
from i2v_contract.keys import LeaderRecord
from i2v_contract.memory_kv import ManualClock, MemoryKV
from i2v_contract.v1 import coordinator_pb2, coordinator_pb2_grpc
from i2v_coordinator import jobs
from i2v_coordinator.dispatcher import DispatchConfig, Dispatcher
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.progress import ProgressHub
from i2v_coordinator.servicer import CoordinatorServicer
from tests.media import png
from tests.unit.test_dispatcher import KEYS, FakeCalls, FakeLeadership, FakeRegistry, until

MAX_QUEUE, SUBMITS = 20, 200


class Registry(FakeRegistry):
    adverts_revision = 0

    def records(self) -> dict[str, object]:
        return {}


async def submit_all(stub: coordinator_pb2_grpc.CoordinatorStub, count: int) -> Counter[str]:
    request = build_request(png(), prompt="p", width=64, height=64, frames=2, steps=2, fps=4, seed=3)

    async def one(i: int) -> str:
        try:
            await stub.Submit(coordinator_pb2.SubmitRequest(request=request, request_id=f"job-{i}"))
        except grpc.aio.AioRpcError as err:
            return err.code().name
        return "OK"

    return Counter(await asyncio.gather(*(one(i) for i in range(count))))


async def test_two_hundred_concurrent_submits_store_exactly_max_queue(tmp_path: Path) -> None:
    kv = MemoryKV(ManualClock())
    await kv.put(KEYS.leader, LeaderRecord(id="c1", addr="x").to_json())
    leader = await kv.get(KEYS.leader)
    assert leader is not None
    leadership, registry, hub = FakeLeadership(), Registry([]), ProgressHub()
    store, artifacts = JobStore(kv, KEYS), open_store(str(tmp_path))
    # No node: every stored job stays queued, so the queue is exactly what was admitted.
    dispatcher = Dispatcher(
        store, leadership, registry, hub, FakeCalls(kv), artifacts, config=DispatchConfig(max_queue=MAX_QUEUE)
    )
    servicer = CoordinatorServicer(leadership, registry, store, dispatcher, hub, artifacts)  # type: ignore[arg-type]
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    running = asyncio.create_task(dispatcher.run())
    leadership.set(leader.create_revision)
    await until(lambda: dispatcher.epoch == leader.create_revision)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            outcomes = await submit_all(coordinator_pb2_grpc.CoordinatorStub(channel), SUBMITS)
            stored, _ = await kv.range_prefix(KEYS.jobs)
            assert outcomes == Counter({"OK": MAX_QUEUE, "RESOURCE_EXHAUSTED": SUBMITS - MAX_QUEUE})
            assert len(stored) == MAX_QUEUE  # every acknowledged job is stored, nothing more
            assert len([r for r in store.table.jobs.values() if r.view.state == jobs.QUEUED]) == MAX_QUEUE
            # Every reserved slot was released, stored or refused: the count is back to the table alone.
            assert servicer._admitting == 0
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await server.stop(0)
