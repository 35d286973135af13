"""Membership and ClusterHooks on MemoryKV with a manual clock: registration, lease loss and
re-registration, coalesced publishing, the fenced claim, stopping a job whose claim or lease is
gone, and write-once results guarded by the claim."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

from i2v_common.artifacts import FileStore
from i2v_common.lease import LeaseKeeper
from i2v_contract.keys import ClaimRecord, Keys, LeaderRecord, NodeRecord, ResultRecord
from i2v_contract.kv import Compare, Delete, KVUnavailable, Put, TxnResult
from i2v_contract.memory import I2VGEN_XL, ArchSpec
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.membership import (
    CLAIM_GONE,
    NOT_ACCEPTING,
    ClusterHooks,
    DuplicateNode,
    Membership,
    NodeInfo,
    NodeState,
    PublishPolicy,
    lease_timing,
    publish_delay,
)
from i2v_node.servicer import JobRejected, JobReport
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

GIB = 1024**3
TTL = 10.0
IDLE = NodeState(busy=False, free_bytes=20 * GIB, total_bytes=24 * GIB, tier=common_pb2.TIER_16_24)
POLICY = PublishPolicy(min_interval_s=0.5, free_bytes_step=GIB)


async def never_wakes(seconds: float) -> None:
    await asyncio.Event().wait()  # tests drive keepalives through keeper.tick()


def info(addr: str = "10.0.0.1:50051") -> NodeInfo:
    return NodeInfo(addr=addr, gpu="NVIDIA RTX 4090", models=("tiny",), version="0.1.0")


@dataclass
class World:
    clock: ManualClock
    kv: MemoryKV
    keys: Keys
    members: list[Membership]

    def node(self, node_id: str = "n1", addr: str = "10.0.0.1:50051") -> Membership:
        m = Membership(
            self.kv,
            self.keys,
            node_id,
            info(addr),
            lease_ttl=TTL,
            policy=POLICY,
            clock=self.clock,
            sleep=never_wakes,
        )
        self.members.append(m)
        return m

    async def record(self, node_id: str = "n1") -> tuple[NodeRecord, int] | None:
        kv = await self.kv.get(self.keys.node(node_id))
        return None if kv is None else (NodeRecord.from_json(kv.value), kv.lease)

    def lapse(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.kv.expire()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = ManualClock()
    w = World(clock, MemoryKV(clock), Keys("/t/"), [])
    yield w
    w.kv.available = True
    for m in w.members:
        await m.stop()


async def started(world: World, node_id: str = "n1", addr: str = "10.0.0.1:50051") -> Membership:
    m = world.node(node_id, addr)
    await m.start(IDLE)
    return m


# --- pure policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("published", "wanted", "last_put_at", "now", "expected"),
    [
        (None, IDLE, 0.0, 0.0, 0.0),  # never written: now
        (IDLE, IDLE, 0.0, 0.0, None),  # unchanged
        (IDLE, replace(IDLE, busy=True), 10.0, 10.1, 0.0),  # busy flip: at once, even right after a put
        (IDLE, replace(IDLE, free_bytes=IDLE.free_bytes - GIB // 2), 0.0, 9.0, None),  # jitter below step
        (IDLE, replace(IDLE, free_bytes=IDLE.free_bytes - GIB), 10.0, 10.1, pytest.approx(0.4)),  # coalesced
        (IDLE, replace(IDLE, free_bytes=IDLE.free_bytes - GIB), 10.0, 10.5, 0.0),  # interval passed
        (IDLE, replace(IDLE, tier=common_pb2.TIER_12_16), 10.0, 10.2, pytest.approx(0.3)),
        (IDLE, replace(IDLE, total_bytes=48 * GIB), 0.0, 5.0, 0.0),
        (IDLE, replace(IDLE, serving=False), 10.0, 10.1, 0.0),  # draining: at once
        (replace(IDLE, arch=None), replace(IDLE, arch=I2VGEN_XL), 10.0, 10.1, 0.0),  # model loaded: at once
    ],
)
def test_publish_delay(
    published: NodeState | None, wanted: NodeState, last_put_at: float, now: float, expected: object
) -> None:
    assert publish_delay(published, wanted, last_put_at, now, POLICY) == expected


@pytest.mark.parametrize("ttl", [2.0, 5.0, 10.0, 30.0])
def test_lease_timing_is_accepted_by_lease_keeper(ttl: float) -> None:
    interval, margin = lease_timing(ttl)
    keeper = LeaseKeeper(MemoryKV(ManualClock()), ttl, interval, margin=margin)
    assert keeper.interval == pytest.approx(ttl / 3)
    assert margin <= 1.5


# --- registration --------------------------------------------------------------------------------


async def test_registration_is_on_the_lease_and_revoked_on_stop(world: World) -> None:
    m = await started(world)
    got = await world.record()
    assert got is not None
    record, lease = got
    assert lease == m.lease_id != 0
    assert world.keys.node("n1") in world.kv.lease_keys(m.lease_id)
    assert record == NodeRecord(
        addr="10.0.0.1:50051",
        gpu="NVIDIA RTX 4090",
        total_bytes=24 * GIB,
        free_bytes=20 * GIB,
        tier=common_pb2.TIER_16_24,
        busy=False,
        models=("tiny",),
        version="0.1.0",
    )
    assert m.accepting
    await m.stop()
    assert await world.record() is None
    assert not m.accepting


async def test_key_disappears_on_lease_expiry_and_node_stops_accepting(world: World) -> None:
    m = await started(world)
    world.lapse(TTL - 1.5)  # past ttl - margin: the node stops acting before etcd expires the lease
    assert not m.accepting
    assert await world.record() is not None
    world.lapse(1.5)
    assert await world.record() is None


async def test_re_registers_on_a_new_lease_after_expiry(world: World) -> None:
    m = await started(world)
    old = m.lease_id
    world.lapse(TTL + 1)
    assert await world.record() is None
    await m.sync()
    got = await world.record()
    assert got is not None and got[1] == m.lease_id != old
    assert m.accepting


async def test_re_registration_waits_for_etcd_and_replaces_own_stale_key(world: World) -> None:
    m = await started(world)
    old = m.lease_id
    world.kv.available = False
    world.clock.advance(TTL - 1)  # lease invalid locally, not yet expired in the store
    assert await m.sync() == pytest.approx(1.0)  # backoff while etcd is away
    assert not m.accepting
    world.kv.available = True
    world.clock.advance(1.0)
    await m.sync()
    got = await world.record()
    assert got is not None and got[1] == m.lease_id != old  # own old key moved onto the new lease
    assert m.accepting


async def test_duplicate_node_id_at_another_address_is_rejected(world: World) -> None:
    first = await started(world)
    second = world.node("n1", addr="10.0.0.2:50051")
    with pytest.raises(DuplicateNode, match=r"'n1' is already registered at 10\.0\.0\.1:50051"):
        await second.start(IDLE)
    got = await world.record()
    assert got is not None and got[1] == first.lease_id
    assert not second.accepting and second.lease_id == 0


async def test_restart_at_same_address_replaces_a_dead_process_key(world: World) -> None:
    dead = world.node()
    await dead.start(IDLE)
    dead_lease = dead.lease_id
    claim = world.keys.claim("j1", 1)
    await world.kv.put(claim, b"{}", lease=dead_lease)  # the dead process's claim
    world.members.remove(dead)  # it never stops cleanly
    fresh = await started(world)
    got = await world.record()
    assert got is not None and got[1] == fresh.lease_id != dead_lease
    assert await world.kv.get(claim) is None  # released at once: the coordinator requeues it


async def test_busy_flip_is_published_at_once_memory_changes_coalesced(world: World) -> None:
    m = await started(world)
    m.publish(replace(IDLE, busy=True))
    await m.sync()
    got = await world.record()
    assert got is not None and got[0].busy
    moved = replace(IDLE, busy=True, free_bytes=10 * GIB, tier=common_pb2.TIER_LT12)
    m.publish(moved)
    assert await m.sync() == pytest.approx(0.5)
    got = await world.record()
    assert got is not None and got[0].free_bytes == 20 * GIB  # not yet: within min interval
    world.clock.advance(0.5)
    await m.sync()
    got = await world.record()
    assert got is not None and (got[0].free_bytes, got[0].tier) == (10 * GIB, common_pb2.TIER_LT12)


async def test_serving_and_model_shape_are_published_and_read_back(world: World) -> None:
    m = world.node()
    await m.start(replace(IDLE, busy=True, serving=False))
    got = await world.record()
    assert got is not None and (got[0].busy, got[0].serving, got[0].arch) == (True, False, {})
    m.publish(replace(IDLE, arch=I2VGEN_XL))
    await m.sync()
    got = await world.record()
    assert got is not None and (got[0].busy, got[0].serving) == (False, True)
    assert ArchSpec.from_dict(json.loads(json.dumps(got[0].arch))) == I2VGEN_XL


def test_a_record_without_the_later_fields_reads_with_defaults() -> None:
    old = {
        "addr": "a:1",
        "gpu": "",
        "total_bytes": 1,
        "free_bytes": 1,
        "tier": 1,
        "busy": False,
        "models": ["tiny"],
        "version": "0",
    }
    record = NodeRecord.from_json(json.dumps(old).encode())
    assert (record.serving, record.arch) == (True, {})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vae": {"params": 1}}, "vae.block_params"),
        ({"unet_channels": "320"}, "unet_channels"),
        ({"unet_channels": True}, "unet_channels"),
        ({"vae_channels": [128]}, "vae_channels"),
        ({"vae_channels": [128, -1]}, "vae_channels[1]"),
        ({"name": None}, "name"),
    ],
)
def test_arch_summary_rejects_malformed_fields(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        ArchSpec.from_dict({**I2VGEN_XL.to_dict(), **change})


async def test_small_free_memory_jitter_is_not_written(world: World) -> None:
    m = await started(world)
    revision = world.kv.revision
    m.publish(replace(IDLE, free_bytes=IDLE.free_bytes - 1024))
    world.clock.advance(5)
    await m.sync()
    assert world.kv.revision == revision


async def test_key_taken_by_another_node_stops_work_until_it_is_free(world: World) -> None:
    m = await started(world)
    await world.kv.revoke_lease(m.lease_id)  # e.g. an operator deleted it; then another node took it
    other = await started(world, addr="10.0.0.9:50051")
    m.publish(replace(IDLE, busy=True))
    await m.sync()  # the write finds its lease gone
    await m.sync()  # new lease; the key is held by the other node
    assert not m.accepting
    await other.stop()
    world.clock.advance(1.0)
    await m.sync()
    got = await world.record()
    assert got is not None and got[0].addr == "10.0.0.1:50051" and got[0].busy
    assert m.accepting


# --- the fenced claim --------------------------------------------------------------------------


async def dispatch(world: World, job_id: str = "j1", attempt: int = 1) -> node_pb2.NodeGenerateRequest:
    """A leader key (epoch = its create revision) and an assigned job (assign_revision = its mod)."""
    if (leader := await world.kv.get(world.keys.leader)) is None:
        await world.kv.put(world.keys.leader, LeaderRecord(id="c1", addr="10.0.0.100:50050").to_json())
        leader = await world.kv.get(world.keys.leader)
    assign_revision = await world.kv.put(world.keys.job(job_id), b'{"state":"ASSIGNED"}')
    assert leader is not None
    return node_pb2.NodeGenerateRequest(
        request=common_pb2.GenerationRequest(image_uri="file:///in.png", prompt="p"),
        job_id=job_id,
        attempt=attempt,
        epoch=leader.create_revision,
        assign_revision=assign_revision,
        output_uri="file:///out.mp4",
    )


class Stops:
    """The servicer's stop(why) for one job: records every call."""

    def __init__(self) -> None:
        self.why: list[str] = []

    def __call__(self, why: str) -> None:
        self.why.append(why)


async def settle() -> None:
    """Let the claim watch task see what the store just did."""
    for _ in range(20):
        await asyncio.sleep(0)


def hooks_for(m: Membership, tmp_path: Path, **kwargs: object) -> ClusterHooks:
    return ClusterHooks(m, FileStore(tmp_path / "store"), **kwargs)  # type: ignore[arg-type]


async def test_claim_is_written_on_the_node_lease(world: World, tmp_path: Path) -> None:
    m = await started(world)
    req = await dispatch(world)
    await hooks_for(m, tmp_path).before_run(req.job_id, req, Stops())
    claim = await world.kv.get(world.keys.claim("j1", 1))
    assert claim is not None and claim.lease == m.lease_id
    assert ClaimRecord.from_json(claim.value) == ClaimRecord(node_id="n1", epoch=req.epoch)


@pytest.mark.parametrize("case", ["wrong_epoch", "job_modified", "second_claim", "leader_changed"])
async def test_stale_dispatch_is_refused(world: World, tmp_path: Path, case: str) -> None:
    m = await started(world)
    other = await started(world, "n2", "10.0.0.2:50051")
    req = await dispatch(world)
    if case == "wrong_epoch":
        req.epoch += 1
    elif case == "job_modified":
        await world.kv.put(world.keys.job("j1"), b'{"state":"QUEUED"}')
    elif case == "second_claim":
        await hooks_for(other, tmp_path).before_run(req.job_id, req, Stops())
    else:
        await world.kv.delete(world.keys.leader)
        await world.kv.put(world.keys.leader, b"{}")
    revision = world.kv.revision
    with pytest.raises(JobRejected) as err:
        await hooks_for(m, tmp_path).before_run(req.job_id, req, Stops())
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.message == (
        f"stale dispatch: job j1 attempt 1 epoch {req.epoch} no longer current "
        "(leader changed or job reassigned); not started"
    )
    assert world.kv.revision == revision  # nothing written
    claim = await world.kv.get(world.keys.claim("j1", 1))
    assert claim is None or ClaimRecord.from_json(claim.value).node_id == "n2"


async def test_standalone_request_passes_through(world: World, tmp_path: Path) -> None:
    m = await started(world)
    hooks = hooks_for(m, tmp_path)
    req = node_pb2.NodeGenerateRequest(request=common_pb2.GenerationRequest(prompt="p"))
    revision = world.kv.revision
    await hooks.before_run("local-1", req, Stops())
    await hooks.after_run(JobReport("local-1", req, grpc.StatusCode.OK, "", common_pb2.Result(video=b"v")))
    assert world.kv.revision == revision


async def test_dispatch_without_fencing_values_is_invalid(world: World, tmp_path: Path) -> None:
    m = await started(world)
    req = node_pb2.NodeGenerateRequest(job_id="j1", attempt=1)  # epoch 0 would match "no leader key"
    with pytest.raises(JobRejected) as err:
        await hooks_for(m, tmp_path).before_run("j1", req, Stops())
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "epoch (0) and assign_revision (0) must be > 0" in err.value.message


async def test_node_with_invalid_lease_takes_no_work(world: World, tmp_path: Path) -> None:
    m = await started(world)
    req = await dispatch(world)
    world.clock.advance(TTL - 1.5)
    with pytest.raises(JobRejected) as err:
        await hooks_for(m, tmp_path).before_run(req.job_id, req, Stops())
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert err.value.message.startswith(NOT_ACCEPTING)
    assert await world.kv.get(world.keys.claim("j1", 1)) is None


class OutageSleep:
    """Advances the hooks' own clock; ends the etcd outage after `heal_after` sleeps (None = never)."""

    def __init__(self, kv: MemoryKV, clock: ManualClock, heal_after: int | None) -> None:
        self.kv, self.clock, self.heal_after, self.calls = kv, clock, heal_after, 0

    async def __call__(self, seconds: float) -> None:
        self.calls += 1
        self.clock.advance(seconds)
        if self.heal_after is not None and self.calls >= self.heal_after:
            self.kv.available = True
        await asyncio.sleep(0)


class LostReplyKV:
    """MemoryKV whose next `lose` txns are applied and then reported as failed (a lost reply);
    with `outage_after`, etcd then goes away too."""

    def __init__(self, kv: MemoryKV, lose: int, *, outage_after: bool = False) -> None:
        self._kv, self.lose, self.outage_after = kv, lose, outage_after

    def __getattr__(self, name: str) -> object:
        return getattr(self._kv, name)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        done = await self._kv.txn(compares, success, failure)
        if self.lose > 0:
            self.lose -= 1
            self._kv.available = not self.outage_after
            raise KVUnavailable("reply lost")
        return done


@pytest.mark.parametrize("landed", [False, True])
async def test_claim_during_outage_is_refused_and_a_landed_claim_handed_back(
    world: World, tmp_path: Path, landed: bool
) -> None:
    m = await started(world)
    req = await dispatch(world)
    if landed:
        m.kv = LostReplyKV(world.kv, 1, outage_after=True)  # type: ignore[assignment]
    else:
        world.kv.available = False
    hook_clock = ManualClock()
    sleeper = OutageSleep(world.kv, hook_clock, heal_after=None)
    hooks = hooks_for(m, tmp_path, clock=hook_clock, sleep=sleeper, call_budget_s=1.0)
    with pytest.raises(JobRejected) as err:
        await hooks.before_run(req.job_id, req, Stops())
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert "did not answer the claim within 1s" in err.value.message
    sleeper.heal_after = sleeper.calls + 1  # etcd comes back while the give-back write retries
    await hooks.drain()
    world.kv.available = True
    got = await world.kv.get(world.keys.result("j1", 1))
    if landed:  # the claim may be ours: hand the attempt back so the coordinator requeues it
        assert got is not None and ResultRecord.from_json(got.value).status == "UNAVAILABLE"
    else:  # no claim, nothing to hand back: the coordinator requeues the unclaimed assignment
        assert got is None


async def test_claim_settled_by_reading_back_guards_the_result_with_its_create_revision(
    world: World, tmp_path: Path
) -> None:
    m = await started(world)
    req = await dispatch(world)
    m.kv = LostReplyKV(world.kv, 1)  # type: ignore[assignment]
    hooks = hooks_for(m, tmp_path)
    await hooks.before_run(req.job_id, req, Stops())  # the lost reply is settled by the read-back
    await hooks.after_run(JobReport("j1", req, grpc.StatusCode.OK, "", ok_result()))
    got = await result_of(world)
    assert got is not None and got.status == "OK"


# --- results -----------------------------------------------------------------------------------


def ok_result(artifact_uri: str = "file:///out.mp4", video: bytes = b"") -> common_pb2.Result:
    result = common_pb2.Result(
        artifact_uri=artifact_uri, video=video, sha256="ab" * 32, profile="fast", peak_bytes=123,
        width=48, height=32, frames=4, fps=8, steps=3, seed=2**40, degradations=["steps 6->3"],
    )  # fmt: skip
    result.metadata.update({"dtype": "float32", "tier": "cpu"})
    result.timings.denoise_s = 2.5
    result.timings.total_s = 3.0
    return result


async def claimed(
    world: World, tmp_path: Path, stops: Stops | None = None, **kwargs: object
) -> tuple[ClusterHooks, node_pb2.NodeGenerateRequest]:
    m = await started(world)
    req = await dispatch(world)
    hooks = hooks_for(m, tmp_path, **kwargs)
    await hooks.before_run(req.job_id, req, stops or Stops())
    return hooks, req


async def claim_guard(world: World, job_id: str = "j1", attempt: int = 1) -> Compare:
    claim = await world.kv.get(world.keys.claim(job_id, attempt))
    assert claim is not None
    return Compare(claim.key, "create", "==", claim.create_revision)


async def result_of(world: World, job_id: str = "j1", attempt: int = 1) -> ResultRecord | None:
    kv = await world.kv.get(world.keys.result(job_id, attempt))
    if kv is None:
        return None
    assert kv.lease == 0  # results outlive the node
    return ResultRecord.from_json(kv.value)


async def test_result_is_written_once(world: World, tmp_path: Path) -> None:
    hooks, req = await claimed(world, tmp_path)
    await hooks.after_run(JobReport("j1", req, grpc.StatusCode.OK, "", ok_result()))
    first = await result_of(world)
    produced = common_pb2.Result(
        artifact_uri="file:///out.mp4",
        sha256="ab" * 32,
        profile="fast",
        timings=common_pb2.Timings(denoise_s=2.5, total_s=3.0),
        peak_bytes=123,
        width=48,
        height=32,
        frames=4,
        fps=8,
        steps=3,
        seed=2**40,
        degradations=["steps 6->3"],
        metadata={"dtype": "float32", "tier": "cpu"},
    )
    assert first == ResultRecord("OK", result=produced)
    revision = world.kv.revision
    failed = ResultRecord("INTERNAL", "x")
    # An earlier write stands: a no-op, not an error.
    assert await hooks.write_result("j1", 1, failed, await claim_guard(world))
    assert world.kv.revision == revision and await result_of(world) == first


async def test_failure_result_carries_status_and_message(world: World, tmp_path: Path) -> None:
    hooks, req = await claimed(world, tmp_path)
    msg = "out of memory at the leanest profile in denoise"
    await hooks.after_run(JobReport("j1", req, grpc.StatusCode.RESOURCE_EXHAUSTED, msg, None))
    got = await result_of(world)
    assert got is not None and (got.status, got.message, got.result.artifact_uri) == (
        "RESOURCE_EXHAUSTED",
        msg,
        "",
    )


async def test_inline_video_goes_to_the_store_not_etcd(world: World, tmp_path: Path) -> None:
    hooks, req = await claimed(world, tmp_path)
    await hooks.after_run(
        JobReport("j1", req, grpc.StatusCode.OK, "", ok_result(video=b"mp4", artifact_uri=""))
    )
    got = await result_of(world)
    assert got is not None and got.result.artifact_uri.endswith("/jobs/j1/output-1.mp4")
    assert hooks.store.get(got.result.artifact_uri) == b"mp4"


async def test_result_write_retries_through_an_etcd_blip(world: World, tmp_path: Path) -> None:
    hook_clock = ManualClock()
    sleeper = OutageSleep(world.kv, hook_clock, heal_after=3)
    hooks, req = await claimed(world, tmp_path, clock=hook_clock, sleep=sleeper)
    world.kv.available = False
    await hooks.after_run(JobReport("j1", req, grpc.StatusCode.OK, "", ok_result()))
    assert sleeper.calls == 3
    got = await result_of(world)
    assert got is not None and got.status == "OK"


async def test_result_write_gives_up_after_its_bound(world: World, tmp_path: Path) -> None:
    hook_clock = ManualClock()
    hooks, _ = await claimed(
        world, tmp_path, clock=hook_clock, sleep=OutageSleep(world.kv, hook_clock, None), result_budget_s=3.0
    )
    guard = await claim_guard(world)
    world.kv.available = False
    record = ResultRecord("OK", result=common_pb2.Result(artifact_uri="u"))
    start = hook_clock()
    assert await hooks.write_result("j1", 1, record, guard) is False
    assert hook_clock() - start <= 3.0
    world.kv.available = True
    assert await result_of(world) is None


# --- stale work stops and stays out ------------------------------------------------------------


async def test_deleted_claim_stops_the_job_and_no_result_is_written(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "i2v_node.membership")
    stops = Stops()
    hooks, req = await claimed(world, tmp_path, stops)
    await settle()
    assert stops.why == []  # the watch starts after the claim: its own put is no reason to stop
    await world.kv.delete(world.keys.claim("j1", 1))  # the leader finalised or cancelled the job
    await settle()
    assert len(stops.why) == 1 and "claim /t/claims/j1/1 deleted" in stops.why[0]
    await hooks.after_run(JobReport("j1", req, grpc.StatusCode.UNAVAILABLE, "stopped", None))
    await hooks.drain()
    assert await result_of(world) is None
    assert CLAIM_GONE in caplog.text


async def test_lease_lapse_stops_the_job_and_no_result_is_written(world: World, tmp_path: Path) -> None:
    stops = Stops()
    hooks, req = await claimed(world, tmp_path, stops)
    m = hooks.m
    keeper = m.keeper
    assert keeper is not None
    world.clock.advance(TTL - 1.5)  # no keepalive answered: the lease is past its local validity
    await keeper.tick()
    assert len(stops.why) == 1 and f"node lease {keeper.lease_id:x} stopped being valid" in stops.why[0]
    assert await world.kv.get(world.keys.claim("j1", 1)) is not None  # etcd has not expired it yet
    await hooks.after_run(JobReport("j1", req, grpc.StatusCode.OK, "", ok_result()))
    await hooks.drain()
    assert await result_of(world) is None  # the finished work is not this node's to report any more


async def test_lease_lapse_found_by_the_membership_loop_stops_the_job(world: World, tmp_path: Path) -> None:
    stops = Stops()
    hooks, _ = await claimed(world, tmp_path, stops)
    world.clock.advance(TTL - 1.5)
    await hooks.m.sync()  # before any keeper tick noticed: re-registration drops the old lease
    assert len(stops.why) == 1 and "stopped being valid" in stops.why[0]


async def test_revoked_lease_takes_the_claim_and_stops_the_job(world: World, tmp_path: Path) -> None:
    stops = Stops()
    hooks, _ = await claimed(world, tmp_path, stops)
    await world.kv.revoke_lease(hooks.m.lease_id)
    await settle()
    assert len(stops.why) == 1 and "deleted" in stops.why[0]


async def test_claim_re_created_by_another_node_keeps_the_old_result_out(
    world: World, tmp_path: Path
) -> None:
    hooks, req = await claimed(world, tmp_path)
    guard = await claim_guard(world)
    claim_key = world.keys.claim("j1", 1)
    await world.kv.delete(claim_key)
    await world.kv.put(claim_key, ClaimRecord(node_id="n2", epoch=req.epoch).to_json())
    record = ResultRecord("OK", result=common_pb2.Result(artifact_uri="u"))
    assert await hooks.write_result("j1", 1, record, guard) is False
    assert await result_of(world) is None


async def test_finished_job_stops_watching_its_claim(world: World, tmp_path: Path) -> None:
    stops = Stops()
    hooks, req = await claimed(world, tmp_path, stops)
    await hooks.after_run(JobReport("j1", req, grpc.StatusCode.OK, "", ok_result()))
    await world.kv.delete(world.keys.claim("j1", 1))  # the leader finalises after the result
    await settle()
    assert stops.why == [] and await result_of(world) is not None
