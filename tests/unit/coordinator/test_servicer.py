"""Watch and Generate streams send heartbeats while the job is quiet (real ProgressHub, in-memory KV)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from i2v_contract.keys import Keys
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.progress import ProgressHub
from i2v_coordinator.records import JobRecord, encode_job, request_digest
from i2v_coordinator.servicer import CoordinatorServicer, heartbeat_event
from i2v_coordinator.term import Term
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/hb/")
INTERVAL_S = 0.05


TERM = Term(7)


class Leading:
    member_id = "c1"
    addr = "127.0.0.1:1"
    epoch = 7
    term = TERM
    leader = ("c1", "127.0.0.1:1")


class Dispatching:
    term = TERM


def progress(i: int) -> coordinator_pb2.JobEvent:
    return coordinator_pb2.JobEvent(
        job_id="j",
        state=coordinator_pb2.JOB_STATE_RUNNING,
        attempt=1,
        node_id="n1",
        progress=common_pb2.Progress(stage=common_pb2.STAGE_DENOISE, step=i, total_steps=9),
    )


async def servicer_with_queued_job(hub: ProgressHub) -> CoordinatorServicer:
    kv = MemoryKV(ManualClock())
    request = common_pb2.GenerationRequest(prompt="p", width=64, height=64, frames=2, steps=2, seed=5)
    view = dataclasses.replace(jobs.new_job("j", 1, common_pb2.TIER_CPU, "tiny", 1.0), attempt=1)
    await kv.put(
        KEYS.job("j"), encode_job(JobRecord(view, request, "file:///in.png", request_digest(request)))
    )
    store = JobStore(kv, KEYS)
    await store.load()
    unused = cast(Any, None)  # Watch never touches the registry or the artifacts (no inlining)
    return CoordinatorServicer(
        Leading(), unused, store, cast(Any, Dispatching()), hub, unused, heartbeat_interval=INTERVAL_S
    )


async def next_real(stream: AsyncIterator[coordinator_pb2.JobEvent]) -> tuple[coordinator_pb2.JobEvent, int]:
    """The next event that is not a heartbeat, and how many heartbeats came before it."""
    beats = 0
    while (event := await asyncio.wait_for(anext(stream), 5)).heartbeat:
        assert event == heartbeat_event(event)  # job id, state and attempt only
        beats += 1
    return event, beats


async def test_a_quiet_watch_gets_heartbeats_at_the_interval_and_events_in_order() -> None:
    hub = ProgressHub()
    servicer = await servicer_with_queued_job(hub)
    stream = aiter(servicer.Watch(coordinator_pb2.WatchRequest(job_id="j"), cast(Any, None)))
    first = await anext(stream)
    assert first.state == coordinator_pb2.JOB_STATE_QUEUED and not first.heartbeat
    beats = [await asyncio.wait_for(anext(stream), 5) for _ in range(2)]
    assert [(b.heartbeat, b.job_id, b.state, b.attempt) for b in beats] == [
        (True, "j", coordinator_pb2.JOB_STATE_QUEUED, 1)
    ] * 2
    assert not any(b.HasField("progress") for b in beats)
    # Events waiting in the hub go out back to back: a heartbeat never comes between or before them.
    for i in (1, 2, 3):
        hub.publish("j", progress(i))
    got = [await next_real(stream) for _ in range(3)]
    assert [(e.progress.step, beats) for e, beats in got] == [(1, 0), (2, 0), (3, 0)]
    # No busy loop: over a quiet stretch, about one heartbeat per interval (repeating the new state).
    loop = asyncio.get_running_loop()
    started = loop.time()
    quiet = [await asyncio.wait_for(anext(stream), 5) for _ in range(4)]
    assert loop.time() - started >= 3.5 * INTERVAL_S
    assert all(b.heartbeat and b.state == coordinator_pb2.JOB_STATE_RUNNING for b in quiet)
    final = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_SUCCEEDED, attempt=1)
    hub.publish("j", final, final=True)
    last, _ = await next_real(stream)
    assert last.state == coordinator_pb2.JOB_STATE_SUCCEEDED
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


def test_the_heartbeat_interval_must_be_positive() -> None:
    unused = cast(Any, None)
    with pytest.raises(ValueError, match="heartbeat_interval"):
        CoordinatorServicer(unused, unused, unused, unused, unused, unused, heartbeat_interval=0)
