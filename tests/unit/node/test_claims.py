"""ClusterHooks on MemoryKV with a manual clock: the fenced claim, stopping a job whose claim or
lease is gone, and write-once results guarded by the claim."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest

from i2v_common.artifacts import FileStore
from i2v_contract.keys import ClaimRecord, LeaderRecord, ResultRecord
from i2v_contract.kv import Compare, Delete, KVUnavailable, Put, TxnResult
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.claims import CLAIM_GONE, NOT_ACCEPTING, ClusterHooks
from i2v_node.hooks import JobRejected, JobReport
from i2v_node.membership import Membership
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV
from tests.fakes.node import TTL, World

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
    m = await world.started()
    req = await dispatch(world)
    await hooks_for(m, tmp_path).before_run(req.job_id, req, Stops())
    claim = await world.kv.get(world.keys.claim("j1", 1))
    assert claim is not None and claim.lease == m.lease_id
    assert ClaimRecord.from_json(claim.value) == ClaimRecord(node_id="n1", epoch=req.epoch)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("wrong_epoch", id="wrong-epoch"),
        pytest.param("job_modified", id="job-modified"),
        pytest.param("second_claim", id="second-claim"),
        pytest.param("leader_changed", id="leader-changed"),
    ],
)
async def test_stale_dispatch_is_refused(world: World, tmp_path: Path, case: str) -> None:
    m = await world.started()
    other = await world.started("n2", "10.0.0.2:50051")
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
    m = await world.started()
    hooks = hooks_for(m, tmp_path)
    req = node_pb2.NodeGenerateRequest(request=common_pb2.GenerationRequest(prompt="p"))
    revision = world.kv.revision
    await hooks.before_run("local-1", req, Stops())
    await hooks.after_run(JobReport("local-1", req, grpc.StatusCode.OK, "", common_pb2.Result(video=b"v")))
    assert world.kv.revision == revision


async def test_dispatch_without_fencing_values_is_invalid(world: World, tmp_path: Path) -> None:
    m = await world.started()
    req = node_pb2.NodeGenerateRequest(job_id="j1", attempt=1)  # epoch 0 would match "no leader key"
    with pytest.raises(JobRejected) as err:
        await hooks_for(m, tmp_path).before_run("j1", req, Stops())
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "epoch (0) and assign_revision (0) must be > 0" in err.value.message
    assert err.value.details is not None
    assert [v.field for v in err.value.details.field_violations] == ["epoch", "assign_revision"]


async def test_node_with_invalid_lease_takes_no_work(world: World, tmp_path: Path) -> None:
    m = await world.started()
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


@pytest.mark.parametrize("landed", [pytest.param(False, id="never-landed"), pytest.param(True, id="landed")])
async def test_claim_during_outage_is_refused_and_a_landed_claim_handed_back(
    world: World, tmp_path: Path, landed: bool
) -> None:
    m = await world.started()
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
    m = await world.started()
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
    m = await world.started()
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
    caplog.set_level(logging.INFO, "i2v_node.claims")
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
