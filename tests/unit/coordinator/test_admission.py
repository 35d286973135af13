"""Submit's intake: the stored request and image name, and exact admission: the queue bound holds
under concurrent Submits (MemoryKV, loopback gRPC).

Each Submit awaits the artifact put and the etcd txn after its admission check; without a slot
reserved at the check, concurrent Submits all see the same depth and the queue overshoots.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from i2v_client import build_request
from i2v_common.artifacts import open_store
from i2v_common.errors import details_of
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract import states
from i2v_contract.keys import LeaderRecord
from i2v_contract.limits import Normalized
from i2v_contract.wire import coordinator_pb2
from i2v_coordinator.admission import image_ext, stored_request
from i2v_coordinator.dispatcher import DispatchConfig, Dispatcher
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.metrics import CoordinatorMetrics
from i2v_coordinator.progress import ProgressHub
from i2v_coordinator.servicer import CoordinatorServicer
from tests.fakes.clock import ManualClock
from tests.fakes.coordinator import KEYS, CountingMetrics, FakeCalls, FakeLeadership, FakeRegistry, until
from tests.fakes.memory_kv import MemoryKV
from tests.media import png

MAX_QUEUE, SUBMITS = 20, 200
Stub = coordinator_pb2_grpc.CoordinatorStub


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


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, metrics: CoordinatorMetrics | None = None, leadership: FakeLeadership | None = None
) -> AsyncIterator[tuple[MemoryKV, JobStore, CoordinatorServicer, Stub]]:
    """A leading coordinator servicer on MemoryKV with no node (every stored job stays queued)."""
    kv = MemoryKV(ManualClock())
    await kv.put(KEYS.leader, LeaderRecord(id="c1", addr="x").to_json())
    leader = await kv.get(KEYS.leader)
    assert leader is not None
    leadership = leadership or FakeLeadership()
    registry, hub = Registry([]), ProgressHub()
    store, artifacts = JobStore(kv, KEYS), open_store(str(tmp_path))
    dispatcher = Dispatcher(
        store,
        leadership,
        registry,
        hub,
        FakeCalls(kv),
        artifacts,
        config=DispatchConfig(max_queue=MAX_QUEUE),
        metrics=CountingMetrics(),
    )
    servicer = CoordinatorServicer(leadership, registry, store, dispatcher, hub, artifacts, metrics=metrics)  # type: ignore[arg-type]
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    running = asyncio.create_task(dispatcher.run())
    leadership.set(leader.create_revision)
    await until(lambda: dispatcher.epoch == leader.create_revision)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield kv, store, servicer, coordinator_pb2_grpc.CoordinatorStub(channel)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await server.stop(0)


async def test_two_hundred_concurrent_submits_store_exactly_max_queue(tmp_path: Path) -> None:
    async with serving(tmp_path) as (kv, store, servicer, stub):
        outcomes = await submit_all(stub, SUBMITS)
        stored, _ = await kv.range_prefix(KEYS.jobs)
        assert outcomes == Counter({"OK": MAX_QUEUE, "RESOURCE_EXHAUSTED": SUBMITS - MAX_QUEUE})
        assert len(stored) == MAX_QUEUE  # every acknowledged job is stored, nothing more
        assert len([r for r in store.table.jobs.values() if r.view.state == states.QUEUED]) == MAX_QUEUE
        # Every reserved slot was released, stored or refused: the count is back to the table alone.
        assert servicer._intake.admitting == 0


async def test_a_full_queue_still_answers_a_retried_submit_of_a_job_finished_long_ago(tmp_path: Path) -> None:
    async with serving(tmp_path) as (_, store, _, stub):
        request = build_request(png(), prompt="p", width=64, height=64, frames=2, steps=2, fps=4, seed=3)
        submit = coordinator_pb2.SubmitRequest(request=request, request_id="old-job")
        await stub.Submit(submit)
        record = store.table.jobs["old-job"]
        leader = await store.kv.get(KEYS.leader)
        assert leader is not None
        epoch = leader.create_revision
        finished = dataclasses.replace(record.view, state=states.CANCELLED, finished_at=1.0)
        assert await store.write(record, finished, epoch) is not None
        store.table.finished.clear()  # finished long ago: no longer in the leader's memory
        assert Counter(await submit_all(stub, MAX_QUEUE))["OK"] == MAX_QUEUE  # the queue is full now
        again = await stub.Submit(submit)
        assert (again.job_id, again.created, again.state) == (
            "old-job",
            False,
            coordinator_pb2.JOB_STATE_CANCELLED,
        )
        other = coordinator_pb2.SubmitRequest(request=request, request_id="new-job")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Submit(other)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        full = details_of(err.value)
        assert (full.reason, full.retry_after_s) == ("QUEUE_FULL", 5.0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"width": 1002}, "width", id="a-request-field"),
        pytest.param({"request_id": "no spaces"}, "request_id", id="the-request-id"),
        pytest.param(
            {"width": 1280, "height": 1280, "frames": 64, "steps": 200}, "steps", id="over-the-work-budget"
        ),
        pytest.param({"prompt": "nul\x00"}, "prompt", id="a-nul-in-the-prompt"),
    ],
)
async def test_a_bad_submit_names_the_field_in_a_bad_request(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    request_id = overrides.pop("request_id", "job-1")
    request = build_request(png(), prompt="p", width=64, height=64, frames=2, steps=2, fps=4, seed=3)
    for name, value in overrides.items():
        setattr(request, name, value)
    async with serving(tmp_path) as (_, _, _, stub):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Submit(coordinator_pb2.SubmitRequest(request=request, request_id=request_id))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = details_of(err.value)
    assert (bad.reason, bad.metadata) == ("INVALID_FIELD", {"field": field})
    [violation] = bad.field_violations
    assert violation.field == field and err.value.details() == f"{field}: {violation.description}"


async def test_refused_submits_are_counted_by_reason(tmp_path: Path) -> None:
    metrics = CoordinatorMetrics()
    leadership = FakeLeadership()
    async with serving(tmp_path, metrics, leadership) as (_, _, _, stub):
        request = build_request(png(), prompt="p", width=64, height=64, frames=2, steps=2, fps=4, seed=3)
        other = build_request(png(), prompt="q", width=64, height=64, frames=2, steps=2, fps=4, seed=3)
        await stub.Submit(coordinator_pb2.SubmitRequest(request=request, request_id="first"))
        await submit_all(stub, MAX_QUEUE + 2)
        for bad in (
            coordinator_pb2.SubmitRequest(request=request, request_id="no spaces allowed"),
            coordinator_pb2.SubmitRequest(request=other, request_id="first"),  # same id, other request
        ):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Submit(bad)
        leadership.set(None)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Submit(coordinator_pb2.SubmitRequest(request=request, request_id="late"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    counts = {
        reason: metrics.registry.get_sample_value(
            "i2v_coordinator_submit_rejections_total", {"reason": reason}
        )
        for reason in ("queue_full", "invalid", "conflict", "no_leader", "too_large")
    }
    assert counts == {"queue_full": 3, "invalid": 1, "conflict": 1, "no_leader": 1, "too_large": 0}


NORM = Normalized(
    prompt="p",
    negative_prompt="",
    width=512,
    height=512,
    frames=16,
    fps=8,
    steps=50,
    guidance_scale=9.0,
    seed=11,
    allow_degrade=False,
    return_frames=False,
    model="m",
)


def test_stored_request_fixes_every_default_and_points_at_the_stored_image() -> None:
    req = stored_request(NORM, "file:///s/in.png")
    assert req.image_uri == "file:///s/in.png" and not req.image
    assert (req.width, req.frames, req.steps, req.seed, req.model) == (512, 16, 50, 11, "m")
    assert req.HasField("seed")


@pytest.mark.parametrize(
    ("data", "ext"),
    [
        pytest.param(b"\x89PNG\r\n", "png", id="png"),
        pytest.param(b"\xff\xd8\xff", "jpg", id="jpeg"),
        pytest.param(b"RIFF....WEBP", "webp", id="webp"),
        pytest.param(b"??", "img", id="unknown"),
    ],
)
def test_image_ext(data: bytes, ext: str) -> None:
    assert image_ext(data) == ext
