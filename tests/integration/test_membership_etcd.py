"""Node membership on a real etcd: registration on a lease, expiry when the node is cut off,
re-registration, duplicate ids, the fenced claim and write-once results."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from i2v_common.artifacts import FileStore
from i2v_common.etcd_kv import EtcdKV
from i2v_contract.keys import ClaimRecord, Keys, LeaderRecord, NodeRecord, ResultRecord
from i2v_contract.kv import KV, Compare, KVUnavailable
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.claims import ClusterHooks
from i2v_node.hooks import JobRejected, JobReport
from i2v_node.membership import DuplicateNode, Membership, NodeInfo
from i2v_node.publishing import NodeState
from tests.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.integration

TTL = 2.0  # short lease so expiry is observable; etcd's minimum with the harness timings is 1 s
WAIT_S = TTL + 5.0  # bound on any wait for an expiry or a re-registration
IDLE = NodeState(busy=False, free_bytes=8 * 1024**3, total_bytes=12 * 1024**3, tier=common_pb2.TIER_LT12)


class CuttableKV(EtcdKV):
    """The node's client: `cut = True` makes its lease calls fail (a partition) without touching etcd."""

    cut = False

    def _check(self) -> None:
        if self.cut:
            raise KVUnavailable("test partition: node cut off from etcd")

    async def grant_lease(self, ttl: int) -> int:
        self._check()
        return await super().grant_lease(ttl)

    async def keepalive_once(self, lease_id: int) -> int:
        self._check()
        return await super().keepalive_once(lease_id)


@dataclass
class Env:
    kv: EtcdKV  # the test's (and coordinator's) own client
    keys: Keys
    store: FileStore
    members: list[Membership]

    async def node(
        self, node_id: str = "n1", addr: str = "127.0.0.1:7001", kv: KV | None = None
    ) -> Membership:
        m = Membership(
            kv or self.kv,
            self.keys,
            node_id,
            NodeInfo(addr=addr, gpu="", models=("tiny",), version="test"),
            lease_ttl=TTL,
        )
        self.members.append(m)
        await m.start(IDLE)
        return m

    async def record(self, node_id: str = "n1") -> tuple[NodeRecord, int] | None:
        kv = await self.kv.get(self.keys.node(node_id))
        return None if kv is None else (NodeRecord.from_json(kv.value), kv.lease)


@pytest.fixture
async def env(etcd: EtcdCluster, tmp_path: Path) -> AsyncIterator[Env]:
    kv = EtcdKV(etcd.endpoints)
    e = Env(kv, Keys(f"/t-{uuid.uuid4().hex[:8]}/"), FileStore(tmp_path / "store"), [])
    try:
        yield e
    finally:
        for m in e.members:
            await m.stop()
        await kv.close()


async def eventually(what: str, check: Callable[[], Awaitable[bool]]) -> float:
    """Poll an async predicate until true; bounded by WAIT_S. Returns the seconds it took."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < WAIT_S, f"{what} not within {WAIT_S}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_registers_on_its_lease_and_leaves_at_once_on_stop(env: Env) -> None:
    m = await env.node()
    got = await env.record()
    assert got is not None and got[1] == m.lease_id != 0
    assert got[0].addr == "127.0.0.1:7001" and got[0].models == ("tiny",) and not got[0].busy
    m.publish(NodeState(True, IDLE.free_bytes, IDLE.total_bytes, IDLE.tier))

    async def busy() -> bool:
        rec = await env.record()
        return rec is not None and rec[0].busy

    await eventually("busy published", busy)
    await m.stop()
    assert await env.record() is None  # revoked, not left to expire


async def test_cut_off_node_expires_then_re_registers(env: Env, etcd: EtcdCluster) -> None:
    cut = CuttableKV(etcd.endpoints)
    try:
        m = await env.node(kv=cut)
        first_lease = m.lease_id
        cut.cut = True

        async def gone() -> bool:
            return await env.record() is None

        took = await eventually("nodes/n1 removed by lease expiry", gone)
        assert took <= TTL + 1.5
        assert not m.accepting
        cut.cut = False

        async def back() -> bool:
            rec = await env.record()
            return rec is not None and rec[1] == m.lease_id != first_lease and m.accepting

        await eventually("re-registered on a new lease", back)
    finally:
        await cut.close()


async def test_duplicate_node_id_is_rejected(env: Env) -> None:
    first = await env.node()
    with pytest.raises(DuplicateNode, match=r"already registered at 127\.0\.0\.1:7001"):
        await env.node(addr="127.0.0.1:7002")
    got = await env.record()
    assert got is not None and got[1] == first.lease_id


async def dispatch(env: Env, job_id: str, attempt: int = 1) -> node_pb2.NodeGenerateRequest:
    leader = await env.kv.get(env.keys.leader)
    if leader is None:
        await env.kv.put(env.keys.leader, LeaderRecord(id="c1", addr="127.0.0.1:7000").to_json())
        leader = await env.kv.get(env.keys.leader)
    assert leader is not None
    assign_revision = await env.kv.put(env.keys.job(job_id), b"{}")
    return node_pb2.NodeGenerateRequest(
        request=common_pb2.GenerationRequest(prompt="p", image_uri="file:///in.png"),
        job_id=job_id,
        attempt=attempt,
        epoch=leader.create_revision,
        assign_revision=assign_revision,
    )


async def test_fenced_claim_and_write_once_result(env: Env) -> None:
    m = await env.node()
    other = await env.node("n2", "127.0.0.1:7002")
    hooks, rival = ClusterHooks(m, env.store), ClusterHooks(other, env.store)
    req = await dispatch(env, "j1")

    await hooks.before_run("j1", req, lambda why: None)
    claim = await env.kv.get(env.keys.claim("j1", 1))
    assert claim is not None and claim.lease == m.lease_id
    assert ClaimRecord.from_json(claim.value) == ClaimRecord(node_id="n1", epoch=req.epoch)

    with pytest.raises(JobRejected) as second:
        await rival.before_run("j1", req, lambda why: None)
    assert second.value.code == grpc.StatusCode.FAILED_PRECONDITION

    result = common_pb2.Result(artifact_uri="file:///out.mp4", sha256="00", profile="fast", peak_bytes=7)
    await hooks.after_run(JobReport("j1", req, grpc.StatusCode.OK, "", result))
    stored = await env.kv.get(env.keys.result("j1", 1))
    assert stored is not None and stored.lease == 0
    record = ResultRecord.from_json(stored.value)
    assert (record.status, record.result.artifact_uri, record.result.profile) == (
        "OK",
        "file:///out.mp4",
        "fast",
    )
    guard = Compare(claim.key, "create", "==", claim.create_revision)
    assert await hooks.write_result("j1", 1, ResultRecord("INTERNAL"), guard)
    again = await env.kv.get(env.keys.result("j1", 1))
    assert again is not None and again.mod_revision == stored.mod_revision

    await m.stop()
    assert await env.kv.get(env.keys.claim("j1", 1)) is None  # claim goes with the node's lease


@pytest.mark.parametrize("case", ["wrong_epoch", "job_modified"])
async def test_stale_dispatch_is_refused(env: Env, case: str) -> None:
    m = await env.node()
    req = await dispatch(env, f"j-{case}")
    if case == "wrong_epoch":
        req.epoch += 1
    else:
        await env.kv.put(env.keys.job(req.job_id), b'{"requeued":true}')
    with pytest.raises(JobRejected) as err:
        await ClusterHooks(m, env.store).before_run(req.job_id, req, lambda why: None)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.message.startswith(f"stale dispatch: job {req.job_id} attempt 1 epoch {req.epoch}")
    assert await env.kv.get(env.keys.claim(req.job_id, 1)) is None


@pytest.mark.parametrize("how", ["claim_deleted", "lease_revoked"])
async def test_running_job_is_stopped_when_its_claim_goes(env: Env, how: str) -> None:
    m = await env.node()
    hooks = ClusterHooks(m, env.store)
    req = await dispatch(env, f"j-{how}")
    stopped = asyncio.Event()
    why: list[str] = []

    def stop(reason: str) -> None:
        why.append(reason)
        stopped.set()

    await hooks.before_run(req.job_id, req, stop)
    await asyncio.sleep(0.2)
    assert not stopped.is_set()
    if how == "claim_deleted":
        await env.kv.delete(env.keys.claim(req.job_id, 1))
    else:
        await env.kv.revoke_lease(m.lease_id)
    await asyncio.wait_for(stopped.wait(), 5)
    assert len(why) == 1
    result = common_pb2.Result(artifact_uri="file:///out.mp4", sha256="00", profile="fast")
    await hooks.after_run(JobReport(req.job_id, req, grpc.StatusCode.OK, "", result))
    await hooks.drain()
    assert await env.kv.get(env.keys.result(req.job_id, 1)) is None
