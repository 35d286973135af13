"""The leader's dispatch loop against the in-memory KV, a fake leadership and a fake node client.

The fake node follows the dispatch protocol on the KV exactly as a real node does (fenced claim on
its own lease before "running", write-once result), so these tests exercise the coordinator's side
of the protocol: what is committed, dispatched, requeued and finalised, and what is left alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from benchmarks.fill_etcd import fill
from i2v_common.artifacts import open_store
from i2v_contract.codes import Code
from i2v_contract.keys import ClaimRecord, LeaderRecord
from i2v_contract.kv import count_prefix
from i2v_contract.states import ASSIGNED, CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.dispatcher import DispatchConfig, Dispatcher
from i2v_coordinator.health import HealthPolicy
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.progress import HubClosed, ProgressHub
from i2v_coordinator.records import JobRecord, encode_job, request_digest
from i2v_coordinator.routing import NodeView
from i2v_coordinator.servicer import CoordinatorServicer
from tests.fakes.clock import ManualClock
from tests.fakes.coordinator import (
    KEYS,
    Behaviour,
    CountingMetrics,
    FakeCalls,
    FakeLeadership,
    FakeRegistry,
    until,
    write_result,
)
from tests.fakes.memory_kv import MemoryKV


def node(node_id: str, tier: int = common_pb2.TIER_CPU, free_gib: float = 8) -> NodeView:
    free = int(free_gib * GIB)
    return NodeView(node_id, f"addr-{node_id}", tier, free, busy=False, model="tiny", total_bytes=free)


@dataclasses.dataclass
class Env:
    kv: MemoryKV
    lease_clock: ManualClock
    wall: ManualClock
    leadership: FakeLeadership
    registry: FakeRegistry
    calls: FakeCalls
    hub: ProgressHub
    store: JobStore
    dispatcher: Dispatcher
    metrics: CountingMetrics
    epoch: int = 0

    async def elect(self, holder: str = "c1") -> int:
        await self.kv.delete(KEYS.leader)
        await self.kv.put(KEYS.leader, LeaderRecord(id=holder, addr="x").to_json())
        leader = await self.kv.get(KEYS.leader)
        assert leader is not None
        self.epoch = leader.create_revision
        self.leadership.set(self.epoch)
        await until(lambda: self.dispatcher.epoch == self.epoch)
        return self.epoch

    async def add_node(self, view: NodeView, behaviour: Behaviour, ttl: int = 1000) -> None:
        behaviour.lease = await self.kv.grant_lease(ttl)
        self.calls.nodes[view.addr] = behaviour
        self.registry.set([*self.registry.nodes, view])

    async def submit(self, job_id: str = "job1", required_tier: int = common_pb2.TIER_CPU) -> JobRecord:
        request = common_pb2.GenerationRequest(
            prompt="p", width=64, height=64, frames=2, seed=1, image_uri="u"
        )
        view = jobs.new_job(job_id, GIB, required_tier, "tiny", self.wall())
        rec, _ = await self.store.submit(JobRecord(view, request, "u", request_digest(request)), self.epoch)
        self.dispatcher.wake()
        return rec

    def job(self, job_id: str = "job1") -> jobs.JobView:
        record = self.store.table.get(job_id)  # open, or finished by this leader
        assert record is not None, f"{job_id} is neither open nor finished here"
        return record.view


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    lease_clock, wall = ManualClock(), ManualClock(50_000.0)
    kv = MemoryKV(lease_clock)
    leadership, registry, hub, calls = FakeLeadership(), FakeRegistry([]), ProgressHub(), FakeCalls(kv)
    store = JobStore(kv, KEYS)
    metrics = CountingMetrics()
    config = DispatchConfig(
        claim_timeout_s=5.0,
        sweep_interval_s=0.05,
        first_event_s=0.3,
        stream_idle_s=0.3,
        health=HealthPolicy(first_cooldown_s=60.0, max_cooldown_s=600.0, set_aside_after=3),
    )
    dispatcher = Dispatcher(
        store,
        leadership,
        registry,
        hub,
        calls,
        open_store(str(tmp_path)),
        config=config,
        metrics=metrics,
        clock=wall,
    )
    e = Env(kv, lease_clock, wall, leadership, registry, calls, hub, store, dispatcher, metrics)
    task = asyncio.create_task(dispatcher.run())
    yield e
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def collect(hub: ProgressHub, job_id: str) -> tuple[list[coordinator_pb2.JobEvent], asyncio.Task[None]]:
    events: list[coordinator_pb2.JobEvent] = []
    sub = hub.subscribe(job_id)

    async def run() -> None:
        async for event in sub:
            events.append(event)

    return events, asyncio.create_task(run())


async def test_dispatches_a_job_and_finalises_it_from_the_nodes_result(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1"))
    epoch = await env.elect()
    events, watcher = collect(env.hub, "job1")
    submitted = await env.submit()
    await asyncio.wait_for(watcher, 3)
    view = env.job()
    assert view.state == SUCCEEDED and view.result_attempt == 1 and view.node_id == "n1"
    ((addr, request),) = env.calls.requests
    assert addr == "addr-n1"
    assert (request.job_id, request.attempt, request.epoch) == ("job1", 1, epoch)
    assert request.assign_revision > submitted.mod_revision  # the ASSIGNED write's revision
    assert request.output_uri.endswith("/jobs/job1/attempt-1.mp4")
    assert request.request.image_uri == "u" and not request.request.image
    states = [e.state for e in events]
    assert states[:2] == [QUEUED, ASSIGNED] and states[-1] == SUCCEEDED and RUNNING in states
    assert [e.progress.step for e in events if e.HasField("progress")] == [1, 2]
    assert events[-1].result.artifact_uri == request.output_uri
    assert env.metrics.counts.get("end_to_end") == 1
    assert env.metrics.counts.get(f"finished:{SUCCEEDED}:0") == 1


async def test_a_new_leader_moves_legacy_finished_jobs_out_of_jobs_while_it_dispatches(env: Env) -> None:
    await fill(env.kv, KEYS, 100, 0, layout="jobs", batch=50, concurrency=1, now=40_000.0)
    await env.add_node(node("n1"), Behaviour("n1"))
    await env.elect()
    await env.submit()
    await until(lambda: env.job().state == SUCCEEDED)
    await until(lambda: not env.store.table.jobs)
    assert await count_prefix(env.kv, KEYS.jobs) == 0 and await count_prefix(env.kv, KEYS.results) == 0
    assert await count_prefix(env.kv, KEYS.history) == 101


async def test_refusal_before_the_claim_requeues_to_another_node(env: Env) -> None:
    await env.add_node(node("n1", free_gib=20), Behaviour("n1", refuse=grpc.StatusCode.UNAVAILABLE))
    await env.add_node(node("n2", free_gib=10), Behaviour("n2"))
    await env.elect()
    await env.submit()
    await until(lambda: env.job().state == SUCCEEDED)
    view = env.job()
    assert [a for a, _ in env.calls.requests] == ["addr-n1", "addr-n2"]
    assert (view.node_id, view.attempt, view.result_attempt, view.lost_attempts) == ("n2", 2, 2, 0)
    assert env.metrics.counts.get("dispatch_retry") == 1


async def test_invalid_input_reported_before_the_claim_fails_the_job(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1", refuse=grpc.StatusCode.INVALID_ARGUMENT))
    await env.elect()
    await env.submit()
    await until(lambda: env.job().final)
    view = env.job()
    assert view.state == FAILED and view.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "n1 refused the job" in view.error and len(env.calls.requests) == 1


async def test_stale_refusal_changes_nothing_until_the_claim_timeout(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1", refuse=grpc.StatusCode.FAILED_PRECONDITION))
    await env.elect()
    await env.submit()
    await until(lambda: len(env.calls.requests) == 1)
    await asyncio.sleep(0.2)  # several sweeps
    assert env.job().state == ASSIGNED and env.job().attempt == 1
    env.wall.advance(6.0)  # past claim_timeout_s
    await until(lambda: env.job().attempt == 2 and env.job().state == QUEUED)
    assert env.job().lost_attempts == 1 and env.metrics.counts.get("requeued") == 1
    # The claim timeout cooled n1 down and dropped its channel; after the cooldown it gets the job again.
    assert env.metrics.counts.get("node_failure:claim_timeout") == 1 and env.calls.resets == ["addr-n1"]
    await asyncio.sleep(0.2)
    assert env.job().state == QUEUED and len(env.calls.requests) == 1
    env.wall.advance(61.0)
    await until(lambda: env.job().attempt == 2 and env.job().state == ASSIGNED)


async def test_out_of_memory_moves_the_job_to_a_larger_tier(env: Env) -> None:
    await env.add_node(
        node("small", common_pb2.TIER_LT12, 10), Behaviour("small", status="RESOURCE_EXHAUSTED")
    )
    await env.add_node(node("big", common_pb2.TIER_GE40, 80), Behaviour("big"))
    await env.elect()
    await env.submit(required_tier=common_pb2.TIER_LT12)
    await until(lambda: env.job().final)
    view = env.job()
    assert [a for a, _ in env.calls.requests] == ["addr-small", "addr-big"]
    assert (view.state, view.node_id, view.attempt, view.min_tier) == (
        SUCCEEDED,
        "big",
        2,
        common_pb2.TIER_GE40,
    )


async def test_node_lost_after_its_claim_requeues_on_another_node(env: Env) -> None:
    await env.add_node(node("n1", free_gib=20), Behaviour("n1", hang=True), ttl=10)
    await env.add_node(node("n2", free_gib=10), Behaviour("n2"))
    await env.elect()
    await env.submit()
    await until(lambda: env.job().state == RUNNING)
    env.registry.set([n for n in env.registry.nodes if n.node_id != "n1"])
    env.lease_clock.advance(11)
    env.kv.expire()  # n1's lease ends: its claim goes with it
    await until(lambda: env.job().state == SUCCEEDED)
    view = env.job()
    assert (view.node_id, view.attempt, view.lost_attempts) == ("n2", 2, 1)
    assert env.metrics.counts.get("requeued") == 1


async def test_new_leader_takes_back_old_assignments_and_reattaches_to_running_jobs(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1"))
    await env.add_node(node("n2"), Behaviour("n2", hang=True))
    # What a previous leader (epoch `old`) left behind.
    await env.kv.put(KEYS.leader, LeaderRecord(id="c0", addr="y").to_json())
    old = (await env.kv.get(KEYS.leader)).create_revision  # type: ignore[union-attr]
    request = common_pb2.GenerationRequest(prompt="p", image_uri="u")
    base = jobs.new_job("a", GIB, common_pb2.TIER_CPU, "tiny", env.wall())
    assigned = dataclasses.replace(base, state=ASSIGNED, node_id="n1", epoch=old, assigned_at=env.wall())
    running = dataclasses.replace(
        base, job_id="b", state=RUNNING, node_id="n2", epoch=old, assigned_at=env.wall()
    )
    for view in (assigned, running):
        rec = JobRecord(view, request, "u", "d")
        await env.kv.put(KEYS.job(view.job_id), encode_job(rec))
    await env.kv.put(
        KEYS.claim("b", 1), ClaimRecord(node_id="n2", epoch=old).to_json(), env.calls.nodes["addr-n2"].lease
    )
    await env.elect("c1")
    await until(lambda: env.job("a").state == SUCCEEDED)
    a = env.job("a")
    assert (a.attempt, a.lost_attempts, a.epoch) == (2, 0, env.epoch)  # taken back, not counted as lost
    assert env.job("b").state == RUNNING
    assert [r.job_id for _, r in env.calls.requests] == ["a"]  # b was not dispatched again
    await write_result(env.kv, "b", 1, "OK", "file:///b.mp4")
    await until(lambda: env.job("b").state == SUCCEEDED)
    assert env.job("b").artifact_uri == "file:///b.mp4"


async def test_losing_leadership_stops_streams_watchers_and_writes(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1", hang=True))
    await env.elect()
    await env.submit()
    await until(lambda: env.job().state == RUNNING)
    sub = env.hub.subscribe("job1")
    mod = env.store.table.jobs["job1"].mod_revision
    env.leadership.set(None)
    await until(lambda: env.dispatcher.epoch == 0)
    assert env.calls.streams_cancelled == 1
    with pytest.raises(HubClosed, match="stopped leading"):
        async for _ in sub:
            pass
    await write_result(env.kv, "job1", 1, "OK")
    await asyncio.sleep(0.2)
    assert (await env.kv.get(KEYS.job("job1"))).mod_revision == mod  # type: ignore[union-attr]


async def test_a_new_term_ends_the_old_term_s_work_and_re_attaches_in_the_new_epoch(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1", hang=True))
    first = await env.elect()
    await env.submit()
    await until(lambda: env.job().state == RUNNING)
    old = env.dispatcher.term
    assert old is not None and old.epoch == first
    second = await env.elect()  # a new leader key and term, with no step-down seen in between
    assert second > first and old.ended.is_set() and env.dispatcher.term is not old
    assert env.calls.streams_cancelled == 1 and len(env.calls.requests) == 1  # re-attached, not resent
    await write_result(env.kv, "job1", 1, "OK", "file:///j.mp4")
    await until(lambda: env.job().state == SUCCEEDED)
    assert env.job().epoch == first  # the assignment's epoch; the final write was fenced by `second`


async def test_cancel_marks_the_job_and_stops_it_on_its_node(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1", hang=True))
    await env.elect()
    await env.submit()
    await until(lambda: env.job().state == RUNNING)
    events, watcher = collect(env.hub, "job1")
    cancelled = await env.dispatcher.cancel("job1")
    assert cancelled is not None and cancelled.view.state == CANCELLED
    assert env.calls.cancels == [("addr-n1", "job1")]
    await asyncio.wait_for(watcher, 3)
    assert events[-1].state == CANCELLED and events[-1].error_code == grpc.StatusCode.CANCELLED.value[0]
    assert await env.dispatcher.cancel("nope") is None


async def test_a_silent_stream_before_the_claim_costs_one_attempt_and_cools_the_node(env: Env) -> None:
    await env.add_node(node("n1", free_gib=20), Behaviour("n1", silent=True))
    await env.add_node(node("n2", free_gib=10), Behaviour("n2"))
    await env.elect()
    await env.submit()
    await until(lambda: env.job().state == SUCCEEDED)
    view = env.job()
    assert [a for a, _ in env.calls.requests] == ["addr-n1", "addr-n2"]
    assert (view.node_id, view.attempt, view.lost_attempts) == ("n2", 2, 0)
    assert env.calls.streams_cancelled == 1 and "addr-n1" in env.calls.resets
    assert env.metrics.counts.get("node_failure:dispatch") == 1
    n1 = env.registry.nodes[0]
    health, standing = env.dispatcher.node_health(n1)
    assert health.failures == 1 and standing.cooldown_s == 60.0 and "no event from the node" in health.reason
    assert env.dispatcher.node_health(env.registry.nodes[1])[0].failures == 0
    await until(lambda: getattr(env.metrics, "held_back", None) == (1, 0))


async def test_a_silent_stream_after_the_claim_leaves_the_job_to_the_node_s_result(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1", silent=True, claim_silently=True))
    await env.elect()
    await env.submit()
    await until(lambda: env.calls.streams_cancelled == 1)
    assert env.calls.resets == ["addr-n1"]  # the call is cancelled and the channel rebuilt
    await asyncio.sleep(0.2)
    assert env.job().state == RUNNING and env.job().attempt == 1  # the claim stands
    await write_result(env.kv, "job1", 1, "OK", "file:///j.mp4")
    await until(lambda: env.job().state == SUCCEEDED)
    assert env.dispatcher.node_health(env.registry.nodes[0])[0].failures == 0


@pytest.mark.parametrize("comeback", ["re-registration", "trial"])
async def test_node_side_failures_move_the_job_on_and_set_the_node_aside(env: Env, comeback: str) -> None:
    await env.add_node(node("n1"), Behaviour("n1", status="FAILED_PRECONDITION"))
    env.registry.set([dataclasses.replace(env.registry.nodes[0], registration=1)])
    await env.elect()
    await env.submit()
    for attempt, cooldown in ((2, 60.0), (3, 120.0)):
        await until(lambda: env.job().attempt == attempt and env.job().state == QUEUED)  # noqa: B023
        _, standing = env.dispatcher.node_health(env.registry.nodes[0])
        assert standing.cooldown_s == cooldown
        env.wall.advance(cooldown + 1)
    await until(lambda: env.job().final)
    view = env.job()
    assert (view.state, view.lost_attempts, view.error_code) == (FAILED, 3, Code.ABORTED)
    assert "node n1" in view.error and "FAILED_PRECONDITION" in view.error and "gave up after 3" in view.error
    health, standing = env.dispatcher.node_health(env.registry.nodes[0])
    assert health.set_aside and standing.set_aside and health.failures == 3
    assert env.metrics.counts.get("node_failure:result") == 3 and env.metrics.counts.get("set_aside") == 1
    # A second job waits: the only node is set aside. A re-registration, or the trial after
    # trial_after_s, gives it work again; the success puts it back in full service.
    env.calls.nodes["addr-n1"].status = "OK"
    await env.submit("job2")
    await asyncio.sleep(0.2)
    assert env.job("job2").state == QUEUED
    if comeback == "re-registration":
        env.registry.set([dataclasses.replace(env.registry.nodes[0], registration=2)])
    else:
        env.wall.advance(env.dispatcher.config.health.trial_after_s - 1)
        await asyncio.sleep(0.2)
        assert env.job("job2").state == QUEUED
        env.wall.advance(1)
    await until(lambda: env.job("job2").state == SUCCEEDED)
    health, _ = env.dispatcher.node_health(env.registry.nodes[0])
    assert health.failures == 0 and not health.set_aside


async def test_a_stream_that_stalls_mid_call_is_cancelled_but_heartbeats_keep_it_open(env: Env) -> None:
    await env.add_node(node("n1"), Behaviour("n1", hang=True))
    await env.elect()
    await env.submit("a")
    await until(lambda: env.job("a").state == RUNNING)
    await env.add_node(node("n2"), Behaviour("n2", stall=True))
    await env.submit("b")
    await until(lambda: env.job("b").state == RUNNING)
    await until(lambda: env.calls.streams_cancelled == 1)
    assert env.calls.resets == ["addr-n2"] and env.job("b").node_id == "n2"
    await asyncio.sleep(0.5)  # well past the idle bound: the heartbeating stream stays open
    assert env.calls.streams_cancelled == 1
    assert env.job("a").state == env.job("b").state == RUNNING


async def test_list_nodes_and_cluster_status_show_node_health(env: Env, tmp_path: Path) -> None:
    await env.add_node(node("n1", free_gib=20), Behaviour("n1", silent=True))
    await env.add_node(node("n2", free_gib=10), Behaviour("n2"))
    await env.elect()
    await env.submit()
    await until(lambda: env.job().state == SUCCEEDED)
    servicer = CoordinatorServicer(
        env.leadership,
        env.registry,  # type: ignore[arg-type]
        env.store,
        env.dispatcher,
        env.hub,
        open_store(str(tmp_path)),
    )
    context: Any = None  # neither call aborts here
    listed = await servicer.ListNodes(coordinator_pb2.ListNodesRequest(), context)
    n1, n2 = listed.nodes
    assert (n1.node_id, n1.cooldown_s, n1.consecutive_failures, n1.set_aside) == ("n1", 60.0, 1, False)
    assert n1.health_reason.startswith("UNAVAILABLE: no event from the node for 0.3 s")
    assert (n2.cooldown_s, n2.consecutive_failures, n2.set_aside, n2.health_reason) == (0.0, 0, False, "")
    status = await servicer.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), context)
    assert (status.nodes_cooling, status.nodes_set_aside) == (1, 0)
    env.leadership.set(None)  # a standby knows no dispatch health: it shows none rather than stale
    await until(lambda: env.dispatcher.epoch == 0)
    standby = await servicer.ListNodes(coordinator_pb2.ListNodesRequest(), context)
    assert [n.consecutive_failures for n in standby.nodes] == [0, 0]
    await env.kv.put(KEYS.claim("running-job", 1), ClaimRecord(node_id="n2", epoch=env.epoch).to_json())
    standby = await servicer.ListNodes(coordinator_pb2.ListNodesRequest(), context)
    assert [n.job_id for n in standby.nodes] == ["", "running-job"]  # from claims/ in etcd


async def test_a_cancel_that_lands_with_a_wake_up_still_ends_the_lead_loop_sleep(env: Env) -> None:
    """On Python 3.11 asyncio.wait_for swallows a cancel that arrives as its event is set; the lead
    loop's sleep must not, or a term's loop outlives its cancellation."""
    sleeping = asyncio.create_task(env.dispatcher._sleep(10.0))
    await asyncio.sleep(0.01)
    env.dispatcher.wake()
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping
