from __future__ import annotations

import asyncio

import pytest

from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.progress import HubClosed, ProgressHub


def state(job_id: str, value: int) -> coordinator_pb2.JobEvent:
    return coordinator_pb2.JobEvent(job_id=job_id, state=value)  # type: ignore[arg-type]


def step(job_id: str, i: int) -> coordinator_pb2.JobEvent:
    return coordinator_pb2.JobEvent(
        job_id=job_id,
        state=coordinator_pb2.JOB_STATE_RUNNING,
        progress=common_pb2.Progress(stage=common_pb2.STAGE_DENOISE, step=i, total_steps=100),
    )


async def drain(sub: object) -> list[coordinator_pb2.JobEvent]:
    return [e async for e in sub]  # type: ignore[attr-defined]


async def test_fan_out_to_every_watcher_of_the_job_only() -> None:
    hub = ProgressHub()
    a, b, other = hub.subscribe("j1"), hub.subscribe("j1"), hub.subscribe("j2")
    hub.publish("j1", state("j1", coordinator_pb2.JOB_STATE_ASSIGNED))
    hub.publish("j1", step("j1", 1))
    hub.publish("j1", state("j1", coordinator_pb2.JOB_STATE_SUCCEEDED), final=True)
    for sub in (a, b):
        events = await asyncio.wait_for(drain(sub), 1)
        assert [e.state for e in events] == [
            coordinator_pb2.JOB_STATE_ASSIGNED,
            coordinator_pb2.JOB_STATE_RUNNING,
            coordinator_pb2.JOB_STATE_SUCCEEDED,
        ]
    assert hub.watchers("j1") == 0  # the final event releases the job's watchers
    assert hub.watchers("j2") == 1
    other.unsubscribe()
    assert hub.watchers("j2") == 0


async def test_slow_watcher_loses_old_progress_but_never_state_or_final() -> None:
    hub = ProgressHub(capacity=4)
    sub = hub.subscribe("j")
    hub.publish("j", state("j", coordinator_pb2.JOB_STATE_RUNNING))
    for i in range(1, 11):
        hub.publish("j", step("j", i))
    hub.publish("j", state("j", coordinator_pb2.JOB_STATE_SUCCEEDED), final=True)
    events = await asyncio.wait_for(drain(sub), 1)
    assert events[0].state == coordinator_pb2.JOB_STATE_RUNNING and not events[0].HasField("progress")
    assert [e.progress.step for e in events[1:-1]] == [8, 9, 10]  # newest progress kept
    assert events[-1].state == coordinator_pb2.JOB_STATE_SUCCEEDED
    assert sub.dropped == 7


async def test_live_watcher_receives_events_as_they_come() -> None:
    hub = ProgressHub()
    sub = hub.subscribe("j")
    got: list[int] = []

    async def consume() -> None:
        async for event in sub:
            got.append(event.progress.step)

    task = asyncio.create_task(consume())
    for i in range(1, 4):
        hub.publish("j", step("j", i))
        await asyncio.sleep(0)
    hub.publish("j", state("j", coordinator_pb2.JOB_STATE_FAILED), final=True)
    await asyncio.wait_for(task, 1)
    assert got == [1, 2, 3, 0]


@pytest.mark.parametrize("subscribe_after_close", [False, True])
async def test_close_all_ends_watchers_with_hub_closed(subscribe_after_close: bool) -> None:
    hub = ProgressHub()
    if subscribe_after_close:
        hub.close_all("lost leadership")
        sub = hub.subscribe("j")
    else:
        sub = hub.subscribe("j")
        hub.publish("j", step("j", 1))
        hub.close_all("lost leadership")
    with pytest.raises(HubClosed, match="lost leadership"):
        await asyncio.wait_for(drain(sub), 1)
    hub.open()
    with hub.subscribe("j") as again:
        assert hub.watchers("j") == 1
        hub.publish("j", state("j", coordinator_pb2.JOB_STATE_CANCELLED), final=True)
        assert [e.state for e in await drain(again)] == [coordinator_pb2.JOB_STATE_CANCELLED]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ProgressHub(capacity=0)


async def test_a_cancelled_wait_loses_and_reorders_nothing() -> None:
    hub = ProgressHub()
    sub = hub.subscribe("j")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await anext(sub)
    hub.publish("j", step("j", 1))
    hub.publish("j", step("j", 2))
    hub.publish("j", state("j", coordinator_pb2.JOB_STATE_SUCCEEDED), final=True)
    assert (await anext(sub)).progress.step == 1
    with pytest.raises(TimeoutError):  # a timeout that races a ready event still leaves it queued
        async with asyncio.timeout(0):
            await asyncio.sleep(0.01)
            await anext(sub)
    events = await asyncio.wait_for(drain(sub), 1)
    assert [(e.state, e.progress.step) for e in events] == [
        (coordinator_pb2.JOB_STATE_RUNNING, 2),
        (coordinator_pb2.JOB_STATE_SUCCEEDED, 0),
    ]
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
