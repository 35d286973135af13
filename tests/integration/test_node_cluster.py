"""A real `i2v-node --model tiny --etcd ...` in a real etcd: store agreement, registration, the
fenced claim, results, and jobs that stop when their claim or lease goes.

The test plays the coordinator by hand: it publishes the artifact store identity (after the node
started, as when nodes come up before any coordinator), writes the leader key and an ASSIGNED job
record the way the leader does (keys.py records, fenced txns), then calls Node.Generate with the
dispatch fields, and reads claims/ and results/ back from etcd.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from i2v_common.artifacts import FileStore
from i2v_common.etcd_kv import EtcdKV
from i2v_common.rpc import node_pb2_grpc
from i2v_common.store_identity import publish
from i2v_contract import fencing
from i2v_contract.keys import (
    ClaimRecord,
    Keys,
    LeaderRecord,
    NodeRecord,
    ResultRecord,
    StoreRecord,
)
from i2v_contract.kv import Compare, KeyValue, Put
from i2v_contract.memory import ArchSpec
from i2v_contract.states import ASSIGNED
from i2v_contract.wire import common_pb2, node_pb2
from i2v_coordinator.jobs import JobView
from i2v_coordinator.records import JobRecord, encode_job
from tests.chaos.coordinator_procs import CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.integration.node_process import NodeProcess
from tests.media import decode, png

pytestmark = pytest.mark.integration

GIB = 1024**3
NODE_ID = "n-cluster"
LONG_STEPS = 120
WAIT_S = 60.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same cache path as test_node_server's: the tiny pipeline is built once per session."""
    path = tmp_path_factory.getbasetemp() / "i2v-cache"
    path.mkdir(exist_ok=True)
    return path


@dataclass
class Site:
    """The module's cluster: key prefix, artifact store, etcd, and its node."""

    keys: Keys
    store_dir: Path
    vram_file: Path
    endpoints: str
    node: NodeProcess | None = None

    @property
    def main(self) -> NodeProcess:
        assert self.node is not None
        return self.node


def start_node(cache_dir: Path, logs: Path, site: Site, node_id: str, *extra: str) -> NodeProcess:
    args = ["--etcd", site.endpoints, "--artifacts", str(site.store_dir), "--prefix", site.keys.prefix]
    return NodeProcess(cache_dir, logs / f"{node_id}.log", *args, *extra, node_id=node_id)


@pytest.fixture(scope="module")
def site(etcd: EtcdCluster, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("cluster")
    (root / "logs").mkdir()
    keys = Keys(f"/nc-{uuid.uuid4().hex[:8]}/")
    vram = root / "free_vram"
    vram.write_text("6GiB")
    site = Site(keys, root / "store", vram, ",".join(etcd.endpoints))
    node = start_node(cache_dir, root / "logs", site, NODE_ID, "--simulate-free-vram-file", str(vram))
    try:
        # No coordinator yet: the node waits for the store identity and registers only after it.
        wait_for_log(node, "waiting for a coordinator to publish the artifact store identity")
        assert asyncio.run(get_key(site, keys.node(NODE_ID))) is None
        asyncio.run(publish_store(site))
        node.wait_serving()
        asyncio.run(eventually("node registered", partial(get_key, site, keys.node(NODE_ID))))
        site.node = node
        yield site
    finally:
        node.stop()


def wait_for_log(node: NodeProcess, text: str, within: float = WAIT_S) -> None:
    deadline = time.monotonic() + within
    while text not in node.log():
        assert node.proc.poll() is None, f"node exited with {node.proc.returncode}:\n{node.log()}"
        assert time.monotonic() < deadline, f"{text!r} not logged within {within} s:\n{node.log()}"
        time.sleep(0.1)


async def get_key(site: Site, key: str) -> KeyValue | None:
    kv = EtcdKV(site.endpoints.split(","))
    try:
        return await kv.get(key)
    finally:
        await kv.close()


async def publish_store(site: Site) -> None:
    """What the first coordinator does at start: the store's id into the store and coord/store."""
    kv = EtcdKV(site.endpoints.split(","))
    try:
        await publish(kv, site.keys, FileStore(site.store_dir), str(site.store_dir))
    finally:
        await kv.close()


@dataclass
class Coordinator:
    """The test's stand-in for the leader: its etcd client and the artifact store."""

    site: Site
    kv: EtcdKV
    store: FileStore
    stub: node_pb2_grpc.NodeStub

    @property
    def keys(self) -> Keys:
        return self.site.keys

    async def epoch(self) -> int:
        """Become leader once (create-if-absent); the epoch is the leader key's create revision."""
        leader = LeaderRecord(id="test-coordinator", addr="127.0.0.1:1").to_json()
        await self.kv.txn([Compare(self.keys.leader, "create", "==", 0)], [Put(self.keys.leader, leader)])
        got = await self.kv.get(self.keys.leader)
        assert got is not None
        return got.create_revision

    async def dispatch(self, *, steps: int = 2, image_uri: str = "") -> node_pb2.NodeGenerateRequest:
        """Write jobs/{id} = ASSIGNED(node, attempt 1, epoch) fenced by the epoch, as the leader does."""
        job_id = f"job-{uuid.uuid4().hex[:10]}"
        epoch = await self.epoch()
        image_uri = image_uri or self.store.put(f"jobs/{job_id}/input.png", png())
        request = common_pb2.GenerationRequest(
            image_uri=image_uri,
            prompt="a gradient drifting",
            width=64,
            height=64,
            frames=8,
            fps=8,
            steps=steps,
            seed=3,
        )
        view = JobView(job_id, ASSIGNED, attempt=1, node_id=NODE_ID, epoch=epoch)
        job_key = self.keys.job(job_id)
        done = await self.kv.txn(
            [fencing.fence(self.keys, epoch), fencing.absent(job_key)],
            [Put(job_key, encode_job(JobRecord(view, request, image_uri, "")))],
        )
        assert done.succeeded
        return node_pb2.NodeGenerateRequest(
            request=request,
            job_id=job_id,
            attempt=1,
            epoch=epoch,
            assign_revision=done.revision,
            output_uri=self.store.uri_for(f"jobs/{job_id}/output-1.mp4"),
        )

    async def node_key(self, node_id: str = NODE_ID) -> KeyValue | None:
        return await self.kv.get(self.keys.node(node_id))

    async def result(self, job_id: str) -> KeyValue:
        return await eventually(f"result of {job_id}", lambda: self.kv.get(self.keys.result(job_id, 1)))


async def eventually(what: str, probe: Callable[[], Awaitable[T | None]], within: float = WAIT_S) -> T:
    deadline = time.monotonic() + within
    while (value := await probe()) is None:
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.05)
    return value


@pytest.fixture
async def coord(site: Site) -> AsyncIterator[Coordinator]:
    kv = EtcdKV(site.endpoints.split(","))
    channel = grpc.aio.insecure_channel(site.main.address)
    try:
        yield Coordinator(site, kv, FileStore(site.store_dir), node_pb2_grpc.NodeStub(channel))
    finally:
        await channel.close()
        await kv.close()


async def generate(coord: Coordinator, req: node_pb2.NodeGenerateRequest) -> common_pb2.Result:
    results: list[common_pb2.Result] = []
    async for event in coord.stub.Generate(req, timeout=WAIT_S):
        if event.HasField("result"):
            results.append(event.result)
    assert len(results) == 1
    return results[0]


async def first_denoise_step(call: Any) -> None:
    async for event in call:
        if (
            event.HasField("progress")
            and event.progress.stage == common_pb2.STAGE_DENOISE
            and event.progress.step
        ):
            return
    raise AssertionError("no denoise progress")


def jobs_total(text: str) -> float:
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "i2v_jobs_total"
    )


async def wait_idle(coord: Coordinator) -> None:
    async def idle() -> bool | None:
        status = await coord.stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
        return True if not status.busy else None

    await eventually("node idle", idle, 30)


# --- registration ------------------------------------------------------------------------------


async def test_node_registers_on_its_lease_with_state_and_model_shape(coord: Coordinator) -> None:
    kv = await coord.node_key()
    assert kv is not None and kv.lease != 0
    record = NodeRecord.from_json(kv.value)
    assert record.addr == coord.site.main.address
    assert (record.tier, record.free_bytes, record.total_bytes) == (common_pb2.TIER_LT12, 6 * GIB, 6 * GIB)
    assert record.serving and not record.busy
    assert record.models == ("tiny",)
    arch = ArchSpec.from_dict(record.arch)
    assert 0 < arch.total_params < 10_000_000, "the tiny model's shape, not the full-size default"


async def test_free_vram_change_reaches_etcd_without_a_job(coord: Coordinator) -> None:
    async def tier_is(tier: int) -> bool | None:
        kv = await coord.node_key()
        return True if kv is not None and NodeRecord.from_json(kv.value).tier == tier else None

    try:
        coord.site.vram_file.write_text("20GiB")
        await eventually("tier 16-24 in etcd", lambda: tier_is(common_pb2.TIER_16_24), 10)
    finally:
        coord.site.vram_file.write_text("6GiB")
    await eventually("tier lt12 in etcd again", lambda: tier_is(common_pb2.TIER_LT12), 10)


async def test_duplicate_node_id_exits_2(coord: Coordinator, cache_dir: Path, tmp_path: Path) -> None:
    site = coord.site
    dup = start_node(cache_dir, tmp_path, site, NODE_ID)
    try:
        assert await asyncio.to_thread(dup.proc.wait, 60) == 2
    finally:
        dup.stop()
    assert "already registered at" in dup.log() and "--node-id" in dup.log()
    kv = await coord.node_key()
    assert kv is not None and NodeRecord.from_json(kv.value).addr == site.main.address


async def test_node_with_another_artifact_store_exits_2_without_registering(
    coord: Coordinator, cache_dir: Path, tmp_path: Path
) -> None:
    site = coord.site
    args = [
        "--etcd",
        site.endpoints,
        "--artifacts",
        str(tmp_path / "elsewhere"),
        "--prefix",
        site.keys.prefix,
    ]
    node = NodeProcess(cache_dir, tmp_path / "n-elsewhere.log", *args, node_id="n-elsewhere")
    try:
        assert await asyncio.to_thread(node.proc.wait, 60) == 2
    finally:
        node.stop()
    published = StoreRecord.from_json((await coord.kv.get(coord.keys.store)).value)  # type: ignore[union-attr]
    assert (
        f"artifact store mismatch: --artifacts {tmp_path / 'elsewhere'} holds no store id but the cluster's "
        f"coordinators use {published.id} at URI {published.uri}; give this process the same store"
    ) in node.log()
    assert await coord.node_key("n-elsewhere") is None


async def test_coordinator_with_another_artifact_store_exits_2(coord: Coordinator, tmp_path: Path) -> None:
    site = coord.site
    proc = CoordinatorProcess(site.endpoints.split(","), tmp_path, "c-elsewhere", prefix=site.keys.prefix)
    try:
        assert await asyncio.to_thread(proc.proc.wait, 60) == 2
    finally:
        proc.stop()
    assert f"artifact store mismatch: --artifacts {tmp_path / 'artifacts'} holds no store id" in proc.log()
    assert await coord.kv.get(coord.keys.member("c-elsewhere")) is None


# --- dispatch ----------------------------------------------------------------------------------


async def test_fenced_dispatch_claims_runs_and_records_the_result_once(coord: Coordinator) -> None:
    req = await coord.dispatch()
    result = await generate(coord, req)
    assert result.artifact_uri == req.output_uri and not result.video

    claim = await coord.kv.get(coord.keys.claim(req.job_id, 1))
    node = await coord.node_key()
    assert claim is not None and node is not None and claim.lease == node.lease
    assert ClaimRecord.from_json(claim.value) == ClaimRecord(node_id=NODE_ID, epoch=req.epoch)

    stored = await coord.result(req.job_id)
    assert stored.version == 1 and stored.lease == 0
    record = ResultRecord.from_json(stored.value)
    assert (record.status, record.result.artifact_uri, record.result.sha256) == (
        "OK",
        req.output_uri,
        result.sha256,
    )
    assert record.result.profile == result.profile and record.result.timings.total_s > 0
    assert decode(coord.store.get(record.result.artifact_uri)) == (8, 8.0, 64, 64)

    again = await coord.stub.Generate(req, timeout=10).code()
    assert again == grpc.StatusCode.FAILED_PRECONDITION, "a second dispatch of the same attempt is stale"
    assert (await coord.kv.get(coord.keys.result(req.job_id, 1))).mod_revision == stored.mod_revision  # type: ignore[union-attr]


async def test_stale_epoch_is_refused_before_any_work(coord: Coordinator) -> None:
    before = coord.site.main.metrics()
    req = await coord.dispatch()
    req.epoch += 1  # a leader that no longer holds the key
    call = coord.stub.Generate(req, timeout=10)
    assert await call.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await call.details() or "").startswith(f"stale dispatch: job {req.job_id}")
    assert await coord.kv.get(coord.keys.claim(req.job_id, 1)) is None
    assert await coord.kv.get(coord.keys.result(req.job_id, 1)) is None
    assert jobs_total(coord.site.main.metrics()) == jobs_total(before)


async def test_bad_input_after_the_claim_is_recorded_as_invalid_argument(coord: Coordinator) -> None:
    req = await coord.dispatch(image_uri=coord.store.uri_for("jobs/missing/input.png"))
    call = coord.stub.Generate(req, timeout=10)
    assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await coord.kv.get(coord.keys.claim(req.job_id, 1)) is not None
    record = ResultRecord.from_json((await coord.result(req.job_id)).value)
    assert record.status == "INVALID_ARGUMENT" and "image_uri" in record.message
    assert not record.result.artifact_uri


async def test_job_outlives_its_dropped_stream(coord: Coordinator) -> None:
    req = await coord.dispatch(steps=LONG_STEPS)
    call = coord.stub.Generate(req, timeout=WAIT_S)
    await first_denoise_step(call)
    call.cancel()  # the leader crashed
    record = ResultRecord.from_json((await coord.result(req.job_id)).value)
    assert record.status == "OK", record.message
    assert decode(coord.store.get(record.result.artifact_uri))[0] == 8
    await wait_idle(coord)


async def test_cancel_rpc_records_cancelled(coord: Coordinator) -> None:
    req = await coord.dispatch(steps=LONG_STEPS)
    call = coord.stub.Generate(req, timeout=WAIT_S)
    await first_denoise_step(call)
    answer = await coord.stub.Cancel(node_pb2.NodeCancelRequest(job_id=req.job_id), timeout=10)
    assert answer.cancelled
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async for _ in call:  # the status arrives after the progress still in flight is read
            pass
    assert ended.value.code() == grpc.StatusCode.CANCELLED
    record = ResultRecord.from_json((await coord.result(req.job_id)).value)
    assert record.status == "CANCELLED" and req.job_id in record.message
    await wait_idle(coord)


async def progress_until_error(call: Any) -> tuple[list[int], grpc.aio.AioRpcError]:
    """The denoise steps the stream still reports, and the status it ends with."""
    steps: list[int] = []
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async for event in call:
            if event.HasField("progress") and event.progress.stage == common_pb2.STAGE_DENOISE:
                steps.append(event.progress.step)
    return steps, ended.value


async def test_deleted_claim_stops_the_job_within_a_step_and_no_result_appears(coord: Coordinator) -> None:
    req = await coord.dispatch(steps=LONG_STEPS)
    call = coord.stub.Generate(req, timeout=WAIT_S)
    await first_denoise_step(call)
    await coord.kv.delete(coord.keys.claim(req.job_id, 1))  # the leader finalised or cancelled the job
    steps, ended = await progress_until_error(call)
    assert ended.code() == grpc.StatusCode.UNAVAILABLE, ended.details()
    assert "deleted" in (ended.details() or "") and "no result written" in (ended.details() or "")
    assert len(steps) <= 3, f"ran on for steps {steps} after its claim was deleted"
    await wait_idle(coord)
    assert await coord.kv.get(coord.keys.result(req.job_id, 1)) is None
    assert "claim gone: result not written (job re-run elsewhere or cancelled)" in coord.site.main.log()


async def test_revoked_lease_stops_the_job_and_the_node_re_registers(coord: Coordinator) -> None:
    req = await coord.dispatch(steps=LONG_STEPS)
    call = coord.stub.Generate(req, timeout=WAIT_S)
    await first_denoise_step(call)
    before = await coord.node_key()
    assert before is not None
    await coord.kv.revoke_lease(before.lease)  # e.g. the node was cut off long enough to expire
    steps, ended = await progress_until_error(call)
    assert ended.code() == grpc.StatusCode.UNAVAILABLE, ended.details()
    assert len(steps) <= 3, f"ran on for steps {steps} after its lease was revoked"
    await wait_idle(coord)
    assert await coord.kv.get(coord.keys.result(req.job_id, 1)) is None

    async def re_registered() -> KeyValue | None:
        kv = await coord.node_key()
        return kv if kv is not None and kv.lease != before.lease else None

    await eventually("re-registered on a new lease", re_registered, 20)


# --- leaving -----------------------------------------------------------------------------------


async def test_sigterm_leaves_at_once_and_sigkill_after_the_lease_ttl(
    coord: Coordinator, cache_dir: Path, tmp_path: Path
) -> None:
    site = coord.site
    ttl = ("--lease-ttl", "2")
    term = start_node(cache_dir, tmp_path, site, "n-term", *ttl)
    kill = start_node(cache_dir, tmp_path, site, "n-kill", *ttl)
    try:
        for proc in (term, kill):
            await asyncio.to_thread(proc.wait_serving)
        for name in ("n-term", "n-kill"):
            await eventually(f"{name} registered", partial(coord.node_key, name))

        term.terminate()
        start = time.monotonic()
        await eventually("n-term key gone", partial(absent, coord, "n-term"), 5)
        assert time.monotonic() - start < 2.0, "a planned stop revokes the lease at once"
        assert await asyncio.to_thread(term.proc.wait, 30) == 0

        kill.proc.kill()
        start = time.monotonic()
        assert await coord.node_key("n-kill") is not None, "a crashed node's key outlives it until expiry"
        await eventually("n-kill key expired", partial(absent, coord, "n-kill"), 2 + 5)
        assert time.monotonic() - start > 0.5
    finally:
        term.stop()
        kill.stop()


async def absent(coord: Coordinator, node_id: str) -> bool | None:
    return True if await coord.node_key(node_id) is None else None
