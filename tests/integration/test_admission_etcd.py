"""Exact admission on real etcd: 200 concurrent Submits against max_queue 20 store exactly 20 jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest

from i2v_client import build_request
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.keys import Keys
from i2v_contract.wire import coordinator_pb2
from i2v_coordinator.dispatcher import DispatchConfig
from tests.etcd_cluster import EtcdCluster
from tests.integration.coordinator_cluster import InProcessCoordinator, artifact_store
from tests.media import png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MAX_QUEUE, SUBMITS = 20, 200


async def test_concurrent_submits_never_overshoot_the_queue_bound(etcd: EtcdCluster, tmp_path: Path) -> None:
    keys = Keys(f"/adm-{uuid.uuid4().hex[:8]}/")
    coordinator = InProcessCoordinator(
        etcd.endpoints,
        keys,
        "c1",
        artifact_store(tmp_path / "artifacts"),
        DispatchConfig(max_queue=MAX_QUEUE),
    )
    await coordinator.start()
    try:
        await coordinator.wait_leading()
        request = build_request(png(), prompt="p", width=64, height=64, frames=2, steps=2, fps=4, seed=3)
        async with grpc.aio.insecure_channel(coordinator.addr) as channel:
            stub = coordinator_pb2_grpc.CoordinatorStub(channel)

            async def one(i: int) -> tuple[str, str]:
                try:
                    await stub.Submit(
                        coordinator_pb2.SubmitRequest(request=request, request_id=f"job-{i}"), timeout=60
                    )
                except grpc.aio.AioRpcError as err:
                    return err.code().name, err.details() or ""
                return "OK", f"job-{i}"

            outcomes = await asyncio.gather(*(one(i) for i in range(SUBMITS)))
        codes = Counter(code for code, _ in outcomes)
        assert codes == Counter({"OK": MAX_QUEUE, "RESOURCE_EXHAUSTED": SUBMITS - MAX_QUEUE}), outcomes
        assert all("queue full" in detail for code, detail in outcomes if code != "OK")
        stored, _ = await coordinator.kv.range_prefix(keys.jobs)
        acknowledged = {f"{keys.jobs}{job_id}" for code, job_id in outcomes if code == "OK"}
        assert {kv.key for kv in stored} == acknowledged  # exactly the acknowledged jobs, none lost
    finally:
        await coordinator.stop()
