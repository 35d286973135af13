"""The coordinator's client API end to end: real etcd, coordinators on loopback gRPC, a tiny real node.

Everything but etcd runs in this process (tests/integration/coordinator_cluster.py); the bundled
synchronous CoordinatorClient is driven from a worker thread so the servers keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from i2v_client import CallError, CoordinatorClient, RetryPolicy, build_request, final_result
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.keys import Keys
from i2v_contract.kv import count_prefix
from i2v_contract.wire import LEADER_ADDR_METADATA, common_pb2, coordinator_pb2
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.records import JobRecord
from tests.etcd_cluster import EtcdCluster
from tests.integration.coordinator_cluster import InProcessCoordinator, InProcessNode, artifact_store
from tests.media import png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def tiny_request(steps: int = 2, prompt: str = "a rusty robot") -> common_pb2.GenerationRequest:
    return build_request(png(), prompt=prompt, width=64, height=64, frames=2, steps=steps, fps=4, seed=3)


class Cluster:
    def __init__(self, etcd: EtcdCluster, tmp: Path, cache_dir: Path) -> None:
        self.keys = Keys(f"/api-{uuid.uuid4().hex[:8]}/")
        self.artifacts = artifact_store(tmp / "artifacts")
        self.etcd = etcd
        self.cache_dir = cache_dir
        self.coordinators: list[InProcessCoordinator] = []

    async def start(self) -> Cluster:
        self.node = await InProcessNode(
            self.etcd.endpoints, self.keys, "n1", self.artifacts, self.cache_dir
        ).start()
        for name in ("c1", "c2"):
            # Jobs are sized by the model shape the node advertises in its record.
            coordinator = InProcessCoordinator(self.etcd.endpoints, self.keys, name, self.artifacts)
            self.coordinators.append(await coordinator.start())
            if name == "c1":
                await coordinator.wait_leading()
        return self

    @property
    def leader(self) -> InProcessCoordinator:
        return next(c for c in self.coordinators if c.leadership.epoch is not None)

    async def finished(self, job_id: str) -> JobRecord:
        """The job's history/ record (with its accepted result), found through done/{id}."""
        record = await JobStore(self.coordinators[0].kv, self.keys).fetch(job_id)
        assert record is not None and record.view.final, f"{job_id} is not finished"
        return record

    @property
    def standby(self) -> InProcessCoordinator:
        return next(c for c in self.coordinators if c.leadership.epoch is None)

    def client(self, *targets: str) -> CoordinatorClient:
        return CoordinatorClient(list(targets) or [c.addr for c in self.coordinators])

    async def stop(self) -> None:
        for coordinator in self.coordinators:
            await coordinator.stop()
        await self.node.stop()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "i2v-cache"


@pytest.fixture
async def cluster(etcd: EtcdCluster, tmp_path: Path, cache_dir: Path) -> AsyncIterator[Cluster]:
    c = await Cluster(etcd, tmp_path, cache_dir).start()
    try:
        yield c
    finally:
        await c.stop()


async def test_generate_runs_on_the_node_and_returns_the_video_once(cluster: Cluster, tmp_path: Path) -> None:
    events: list[coordinator_pb2.JobEvent] = []
    with cluster.client(cluster.standby.addr, cluster.leader.addr) as client:
        final = await asyncio.to_thread(client.generate, tiny_request(), events.append, request_id="gen-1")
        # The result names the video (by reference); any coordinator's Download streams it.
        downloaded = await asyncio.to_thread(client.download, "gen-1", tmp_path / "gen-1.mp4")
    result = final_result(final)
    video = (tmp_path / "gen-1.mp4").read_bytes()
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and final.node_id == "n1"
    assert not result.video and result.video_size == len(video) == downloaded.size
    assert video and hashlib.sha256(video).hexdigest() == result.sha256 == downloaded.sha256
    assert result.artifact_uri.endswith("/jobs/gen-1/attempt-1.mp4")
    assert cluster.artifacts.get(result.artifact_uri) == video
    states = [e.state for e in events]
    assert states[0] == coordinator_pb2.JOB_STATE_QUEUED and coordinator_pb2.JOB_STATE_ASSIGNED in states
    steps = [e.progress.step for e in events if e.progress.stage == common_pb2.STAGE_DENOISE]
    assert steps and max(steps) == 2
    finished = await cluster.finished("gen-1")
    assert finished.result is not None and finished.result.sha256 == result.sha256
    assert (finished.view.attempt, finished.view.result_attempt) == (1, 1)
    with cluster.client() as client:
        job = await asyncio.to_thread(client.get, "gen-1")
    assert job.state == coordinator_pb2.JOB_STATE_SUCCEEDED and job.result.artifact_uri == result.artifact_uri
    assert job.request.seed == 3 and not job.request.image and job.request.image_uri == job.input_uri


async def test_submit_is_idempotent_on_request_id(cluster: Cluster) -> None:
    # The first target refuses connections: the client moves on to the next one.
    with cluster.client("127.0.0.1:1", cluster.leader.addr) as client:
        first = await asyncio.to_thread(client.submit, tiny_request(), request_id="idem-1")
        again = await asyncio.to_thread(client.submit, tiny_request(), request_id="idem-1")
        with pytest.raises(CallError) as conflict:
            await asyncio.to_thread(client.submit, tiny_request(prompt="other"), request_id="idem-1")
        final = await asyncio.to_thread(client.watch, "idem-1")
        finished = await asyncio.to_thread(client.submit, tiny_request(), request_id="idem-1")
    assert first.created and not again.created and first.job_id == again.job_id == "idem-1"
    # Resent after it finished: the same (finished) job, not a second run.
    assert not finished.created and finished.state == coordinator_pb2.JOB_STATE_SUCCEEDED
    assert conflict.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and final.result.artifact_uri
    assert not final.result.video  # results name the artifact; Download fetches it
    jobs_kvs, _ = await cluster.leader.kv.range_prefix(cluster.keys.jobs)
    done_kvs, _ = await cluster.leader.kv.range_prefix(cluster.keys.done)
    assert jobs_kvs == [] and [kv.key for kv in done_kvs] == [cluster.keys.done_of("idem-1")]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"width": 63}, "width"),
        ({"image": b"not an image"}, "image"),
        ({"steps": 10_000}, "steps"),
    ],
)
async def test_bad_requests_are_rejected_naming_the_field(
    cluster: Cluster, change: dict[str, object], field: str
) -> None:
    request = tiny_request()
    for name, value in change.items():
        setattr(request, name, value)
    with cluster.client() as client, pytest.raises(CallError) as err:
        await asyncio.to_thread(client.submit, request)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.message
    # Beside the message, a google.rpc.BadRequest names the field for programs (any language).
    assert [v.field for v in err.value.field_violations] == [field] and err.value.reason == "INVALID_FIELD"
    assert err.value.message == f"{field}: {err.value.field_violations[0].description}"


async def test_standby_relays_the_leaders_answer_and_names_the_leader(cluster: Cluster) -> None:
    # The standby forwards job calls now (front door); it used to answer UNAVAILABLE with the hint.
    async with grpc.aio.insecure_channel(cluster.standby.addr) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        call = stub.Get(coordinator_pb2.GetRequest(job_id="x"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # the leader's answer
    assert (err.value.details() or "").startswith("no job 'x'")
    assert (LEADER_ADDR_METADATA, cluster.leader.addr) in tuple(err.value.trailing_metadata() or ())


async def download(addr: str, **fields: object) -> tuple[list[coordinator_pb2.DownloadResponse], Any]:
    """The raw Download stream from one coordinator: its messages, and the error that ended it."""
    got: list[coordinator_pb2.DownloadResponse] = []
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        try:
            async for message in stub.Download(coordinator_pb2.DownloadRequest(**fields)):  # type: ignore[arg-type]
                got.append(message)
        except grpc.aio.AioRpcError as err:
            return got, err
    return got, None


async def test_a_standby_serves_downloads_resumes_them_and_says_what_is_not_there(cluster: Cluster) -> None:
    with cluster.client() as client:
        final = await asyncio.to_thread(client.generate, tiny_request(), request_id="dl-1")
        await asyncio.to_thread(client.submit, tiny_request(steps=200), request_id="dl-busy")
    video = cluster.artifacts.get(final.result.artifact_uri)
    standby = cluster.standby.addr
    (header, *pieces), err = await download(standby, job_id="dl-1", offset=len(video) // 2)
    assert err is None and (header.total_size, header.sha256) == (len(video), final.result.sha256)
    assert header.mime_type == "video/mp4" and b"".join(p.data for p in pieces) == video[len(video) // 2 :]
    (header, image), err = await download(standby, job_id="dl-1", what=coordinator_pb2.ARTIFACT_INPUT_IMAGE)
    assert err is None and image.data == png() and header.sha256 == hashlib.sha256(png()).hexdigest()
    refusals = [
        ({"job_id": "nope"}, grpc.StatusCode.NOT_FOUND, "no job 'nope'"),
        ({"job_id": "dl-1", "offset": len(video) + 1}, grpc.StatusCode.INVALID_ARGUMENT, "offset: "),
        ({"job_id": "dl-busy"}, grpc.StatusCode.FAILED_PRECONDITION, "not finished"),
        (
            {"job_id": "dl-1", "what": coordinator_pb2.ARTIFACT_FRAME},
            grpc.StatusCode.FAILED_PRECONDITION,
            "no frames",
        ),
    ]
    for fields, code, words in refusals:
        got, err = await download(standby, **fields)
        assert not got and err is not None and err.code() == code and words in (err.details() or ""), fields
    with cluster.client() as client:
        await asyncio.to_thread(client.cancel, "dl-busy")


async def test_stored_frames_download_one_by_one(cluster: Cluster, tmp_path: Path) -> None:
    request = tiny_request()
    request.return_frames = True
    with cluster.client() as client:
        final = await asyncio.to_thread(client.generate, request, request_id="frames-1")
        got = [
            await asyncio.to_thread(client.download, "frames-1", tmp_path / f"{i}.png", what="frame", frame=i)
            for i in range(len(final.result.frame_uris))
        ]
    assert len(got) == 2 and not final.result.frames_png and all(g.mime_type == "image/png" for g in got)
    assert all((tmp_path / f"{i}.png").read_bytes().startswith(b"\x89PNG") for i in range(2))


async def test_a_plain_stub_on_the_standby_submits_watches_gets_and_generates(cluster: Cluster) -> None:
    async with grpc.aio.insecure_channel(cluster.standby.addr) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        submit = coordinator_pb2.SubmitRequest(request=tiny_request(), request_id="door-1")
        submitted = await stub.Submit(submit, timeout=30)
        watched = [e async for e in stub.Watch(coordinator_pb2.WatchRequest(job_id="door-1"), timeout=120)]
        job = await stub.Get(coordinator_pb2.GetRequest(job_id="door-1"), timeout=10)
        again = coordinator_pb2.SubmitRequest(request=tiny_request(prompt="once more"), request_id="door-2")
        generated = [e async for e in stub.Generate(again, timeout=120)]
    assert submitted.job_id == "door-1" and submitted.created
    assert watched[-1].state == coordinator_pb2.JOB_STATE_SUCCEEDED and watched[-1].result.artifact_uri
    assert (
        job.state == coordinator_pb2.JOB_STATE_SUCCEEDED
        and job.result.artifact_uri == watched[-1].result.artifact_uri
    )
    final = generated[-1]
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and not final.result.video  # by reference
    # Download is the standby's own answer (never forwarded): the video, whole and verified.
    (header, *pieces), err = await download(cluster.standby.addr, job_id="door-2")
    video = b"".join(p.data for p in pieces)
    assert err is None and header.sha256 == final.result.sha256 == hashlib.sha256(video).hexdigest()
    assert len(video) == header.total_size == final.result.video_size


async def test_garbage_bytes_are_invalid_argument_and_logged_at_a_bounded_rate(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        for target in (cluster.leader.addr, cluster.standby.addr):
            async with grpc.aio.insecure_channel(target) as channel:
                for method in ("Submit", "Watch"):
                    path = f"/i2v.v1.Coordinator/{method}"
                    raw = (channel.unary_unary if method == "Submit" else channel.unary_stream)(
                        path, request_serializer=None, response_deserializer=None
                    )
                    for _ in range(100):
                        with pytest.raises(grpc.aio.AioRpcError) as err:
                            call = raw(b"\x0a\xff\xff", timeout=5)
                            await (call if method == "Submit" else call.read())
                        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                        assert (err.value.details() or "").startswith(f"{path}: the 3 request bytes are not")
    refused = [r for r in caplog.records if "unparseable request" in r.getMessage()]
    # 400 calls: one line per method per coordinator (within 10 s), and no traceback at all.
    assert 1 <= len(refused) <= 4, [r.getMessage() for r in refused]
    assert not [r for r in caplog.records if r.exc_info]


async def ask(stub: coordinator_pb2_grpc.CoordinatorStub, method: str, job_id: str) -> object:
    """One call of `method` naming `job_id` (a stream's first event)."""
    if method == "Watch":
        return await stub.Watch(coordinator_pb2.WatchRequest(job_id=job_id), timeout=5).read()
    if method == "Get":
        return await stub.Get(coordinator_pb2.GetRequest(job_id=job_id), timeout=5)
    if method == "Download":
        return await stub.Download(coordinator_pb2.DownloadRequest(job_id=job_id), timeout=5).read()
    return await stub.Cancel(coordinator_pb2.CancelRequest(job_id=job_id), timeout=5)


@pytest.mark.parametrize(
    ("job_id", "says"),
    [
        pytest.param("bad/id", "job_id: 'bad/id' is not allowed", id="slash"),
        pytest.param("y" * 2_000_000, "job_id: ", id="2-MB"),
    ],
)
async def test_a_malformed_job_id_is_invalid_argument_at_once(
    cluster: Cluster, job_id: str, says: str
) -> None:
    for target in (cluster.leader.addr, cluster.standby.addr):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = coordinator_pb2_grpc.CoordinatorStub(channel)
            for method in ("Get", "Cancel", "Watch", "Download"):
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await ask(stub, method, job_id)
                took = time.monotonic() - started
                details = err.value.details() or ""
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and took < 1.0, (details, took)
                assert details.startswith(says) and len(details) < 400


async def test_cancel_stops_the_job_on_its_node(cluster: Cluster) -> None:
    with cluster.client() as client:
        await asyncio.to_thread(client.submit, tiny_request(steps=200), request_id="cancel-1")
        for _ in range(300):
            job = await asyncio.to_thread(client.get, "cancel-1")
            if job.state == coordinator_pb2.JOB_STATE_RUNNING:
                break
            await asyncio.sleep(0.05)
        assert job.state == coordinator_pb2.JOB_STATE_RUNNING
        cancelled = await asyncio.to_thread(client.cancel, "cancel-1")
        final = await asyncio.to_thread(client.watch, "cancel-1")
    assert cancelled.state == coordinator_pb2.JOB_STATE_CANCELLED == final.state
    assert final.error_code == grpc.StatusCode.CANCELLED.value[0]
    for _ in range(200):  # the node stops within a step
        if cluster.node.server.servicer.job is None:
            break
        await asyncio.sleep(0.05)
    assert cluster.node.server.servicer.job is None
    # The cancel finished the job: its claim went with the open record, in the same txn.
    assert await cluster.leader.kv.get(cluster.keys.claim("cancel-1", 1)) is None
    assert await cluster.leader.kv.get(cluster.keys.job("cancel-1")) is None
    finished = await cluster.finished("cancel-1")
    assert finished.view.state == coordinator_pb2.JOB_STATE_CANCELLED
    # ... and the node, whose claim went, wrote no result for the attempt.
    assert await count_prefix(cluster.leader.kv, cluster.keys.results_of("cancel-1")) == 0


async def test_cluster_views_from_any_coordinator(cluster: Cluster) -> None:
    for target in (cluster.leader.addr, cluster.standby.addr):
        with cluster.client(target) as client:
            status = await asyncio.to_thread(client.cluster_status)
            nodes = await asyncio.to_thread(client.list_nodes)
        assert status.leader_id == cluster.leader.member_id and status.leader_addr == cluster.leader.addr
        assert status.epoch == cluster.leader.leadership.epoch
        assert sorted(m.id for m in status.members) == ["c1", "c2"]
        assert [(t.tier, t.nodes) for t in status.tiers] == [(common_pb2.TIER_CPU, 1)]
        assert [n.node_id for n in nodes.nodes] == ["n1"] and nodes.nodes[0].model == "tiny"
        # From the node's etcd record (this in-process node publishes version "test" and no device).
        assert (nodes.nodes[0].version, nodes.nodes[0].gpu) == ("test", "")


async def test_generate_survives_a_leader_handover(cluster: Cluster) -> None:
    old = cluster.leader
    events: list[coordinator_pb2.JobEvent] = []
    with cluster.client(old.addr, cluster.standby.addr) as client:
        task = asyncio.create_task(
            asyncio.to_thread(client.generate, tiny_request(steps=40), events.append, request_id="ho-1")
        )
        for _ in range(300):
            if any(e.HasField("progress") for e in events):
                break
            await asyncio.sleep(0.05)
        await old.stop()  # resigns: the standby takes over while the node keeps running the job
        cluster.coordinators.remove(old)
        final = await asyncio.wait_for(task, 120)
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and final.result.artifact_uri
    assert not final.result.video  # by reference, as every final event
    finished = await cluster.finished("ho-1")
    assert (finished.view.attempt, finished.view.result_attempt) == (1, 1)  # ran once


async def test_a_watch_forwarded_through_the_standby_ends_unavailable_when_the_leader_goes(
    cluster: Cluster,
) -> None:
    old, standby = cluster.leader, cluster.standby
    async with grpc.aio.insecure_channel(standby.addr) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        submit = coordinator_pb2.SubmitRequest(request=tiny_request(steps=40), request_id="moved-1")
        await stub.Submit(submit, timeout=30)
        call = stub.Watch(coordinator_pb2.WatchRequest(job_id="moved-1"), timeout=120)
        while not (await call.read()).HasField("progress"):
            pass
        await old.stop()  # resigns: the standby takes over while the node keeps running the job
        cluster.coordinators.remove(old)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                await call.read()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value.details()
        print(f"forwarded watch ended: {ended.value.details()}")
        final = None
        for _ in range(100):  # re-attach by job id, as a client does
            try:
                events = [
                    e async for e in stub.Watch(coordinator_pb2.WatchRequest(job_id="moved-1"), timeout=120)
                ]
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
                await asyncio.sleep(0.05)
                continue
            final = events[-1]
            break
    assert final is not None and final.state == coordinator_pb2.JOB_STATE_SUCCEEDED
    finished = await cluster.finished("moved-1")
    assert (finished.view.attempt, finished.view.result_attempt) == (1, 1)  # ran once


@contextlib.asynccontextmanager
async def frozen_listener() -> AsyncIterator[str]:
    """An address that accepts TCP connections and never answers: a frozen coordinator's port."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


async def test_a_frozen_first_target_is_left_within_the_deadline_and_the_idle_bound(cluster: Cluster) -> None:
    policy = RetryPolicy(call_timeout_s=1.0, idle_timeout_s=1.5)
    async with frozen_listener() as frozen:
        with CoordinatorClient([frozen, cluster.leader.addr], policy=policy) as client:
            started = time.monotonic()
            submitted = await asyncio.to_thread(client.submit, tiny_request(), request_id="frozen-1")
            unary_s = time.monotonic() - started
            unary_suspects = client.suspects()
        with CoordinatorClient([frozen, cluster.leader.addr], policy=policy) as client:
            started = time.monotonic()
            final = await asyncio.to_thread(client.watch, "frozen-1")
            watch_s = time.monotonic() - started
            watch_suspects = client.suspects()
    print(f"frozen first target: unary call took {unary_s:.2f} s, watch {watch_s:.2f} s")
    assert submitted.job_id == "frozen-1" and unary_suspects == {frozen}
    assert policy.call_timeout_s <= unary_s < policy.call_timeout_s + 2.0
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and watch_suspects == {frozen}
    assert policy.idle_timeout_s <= watch_s < policy.idle_timeout_s + 5.0


async def test_with_etcd_stopped_the_coordinators_name_etcd_within_seconds(
    etcd_alone: EtcdCluster, tmp_path: Path
) -> None:
    keys = Keys(f"/outage-{uuid.uuid4().hex[:8]}/")
    store = artifact_store(tmp_path / "artifacts")
    leader = await InProcessCoordinator(etcd_alone.endpoints, keys, "c1", store).start()
    await leader.wait_leading()
    standby = await InProcessCoordinator(etcd_alone.endpoints, keys, "c2", store).start()
    try:
        etcd_alone.stop(0)
        stopped_at = time.monotonic()
        named: dict[str, float] = {}
        async with (
            grpc.aio.insecure_channel(leader.addr) as to_leader,
            grpc.aio.insecure_channel(standby.addr) as to_standby,
        ):
            stubs = {"leader": coordinator_pb2_grpc.CoordinatorStub(to_leader)}
            stubs["standby"] = coordinator_pb2_grpc.CoordinatorStub(to_standby)
            while len(named) < 2 and time.monotonic() - stopped_at < 15:
                for who, stub in stubs.items():
                    asked = time.monotonic()
                    status = await stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=10)
                    assert time.monotonic() - asked < 4.0  # never the client's deadline
                    if status.etcd_error and who not in named:
                        named[who] = time.monotonic() - stopped_at
                        assert status.etcd_error.startswith(f"etcd unreachable at {etcd_alone.endpoints[0]}")
                        assert status.etcd_error.endswith("the coordinator cannot read or write jobs")
                await asyncio.sleep(0.1)
            for stub in stubs.values():
                asked = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Submit(coordinator_pb2.SubmitRequest(request=tiny_request()), timeout=10)
                assert time.monotonic() - asked < 4.0
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "etcd unreachable at" in (err.value.details() or ""), err.value.details()
        print(
            f"etcd stopped: named by the leader after {named.get('leader', -1):.2f} s, the standby after "
            f"{named.get('standby', -1):.2f} s"
        )
        assert set(named) == {"leader", "standby"} and max(named.values()) < 6.0, named
    finally:
        await standby.stop(resign=False)
        await leader.stop(resign=False)
