"""Tokens, ownership and per-client limits end to end: real etcd, two coordinators (a leader and a
standby that forwards) with a tokens file, a tiny real node that accepts only the coordinators'
dispatch token (or another token from its file).

Clients alice and bob, admin root: each client sees, follows, downloads and cancels only its own
jobs, and a refusal reads the same for another's job and for one that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest

from i2v_client import CallError, CoordinatorClient, NodeClient, build_request
from i2v_common.errors import details_of
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_common.tokens import TokensFile, bearer
from i2v_contract import auth
from i2v_contract.keys import Keys
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.access import Access
from i2v_coordinator.metrics import CoordinatorMetrics
from i2v_coordinator.quotas import ClientLimits, Quotas
from tests.etcd_cluster import EtcdCluster
from tests.integration.coordinator_cluster import InProcessCoordinator, InProcessNode, artifact_store
from tests.media import png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ALICE, BOB, ROOT, DISPATCH = (f"{name}-{uuid.uuid4().hex}" for name in ("alice", "bob", "root", "dispatch"))
LINES = [
    auth.token_line(ALICE, "alice"),
    auth.token_line(BOB, "bob"),
    auth.token_line(ROOT, "root", auth.ADMIN),
    auth.token_line(DISPATCH, "coordinators", auth.ADMIN),
]


def request(steps: int = 2) -> common_pb2.GenerationRequest:
    return build_request(
        png(), prompt="a rusty robot", width=64, height=64, frames=2, steps=steps, fps=4, seed=3
    )


def write_tokens(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")
    st = path.stat()  # a distinct mtime even within one clock tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


class Cluster:
    def __init__(self, etcd: EtcdCluster, tmp: Path, cache_dir: Path) -> None:
        self.keys = Keys(f"/auth-{uuid.uuid4().hex[:8]}/")
        self.artifacts = artifact_store(tmp / "artifacts")
        self.tokens_path = tmp / "tokens"
        write_tokens(self.tokens_path, LINES)
        self.etcd, self.cache_dir = etcd, cache_dir
        self.coordinators: list[InProcessCoordinator] = []
        self.metrics: list[CoordinatorMetrics] = []

    async def start(self) -> Cluster:
        self.node = await InProcessNode(
            self.etcd.endpoints, self.keys, "n1", self.artifacts, self.cache_dir, str(self.tokens_path)
        ).start()
        for name in ("c1", "c2"):
            self.metrics.append(CoordinatorMetrics())
            access = Access(TokensFile(self.tokens_path), Quotas(), self.metrics[-1])
            coordinator = InProcessCoordinator(
                self.etcd.endpoints,
                self.keys,
                name,
                self.artifacts,
                access=access,
                node_metadata=lambda: bearer(DISPATCH),
            )
            self.coordinators.append(await coordinator.start())
            if name == "c1":
                await coordinator.wait_leading()
        return self

    @property
    def leader(self) -> InProcessCoordinator:
        return next(c for c in self.coordinators if c.leadership.epoch is not None)

    @property
    def standby(self) -> InProcessCoordinator:
        return next(c for c in self.coordinators if c.leadership.epoch is None)

    def client(self, token: str | None, *targets: str) -> CoordinatorClient:
        return CoordinatorClient(list(targets) or [c.addr for c in self.coordinators], token=token)

    def limit(self, limits: ClientLimits) -> None:
        for coordinator in self.coordinators:
            assert coordinator.access is not None
            coordinator.access.quotas.limits = limits

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


async def refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> CallError:
    with pytest.raises(CallError) as err:
        await asyncio.to_thread(call, *args, **kwargs)
    return err.value


async def running(client: CoordinatorClient, job_id: str) -> None:
    for _ in range(300):
        if (await asyncio.to_thread(client.get, job_id)).state == coordinator_pb2.JOB_STATE_RUNNING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never ran")


async def test_clients_touch_only_their_own_jobs_and_a_refusal_never_says_whether_a_job_exists(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Through the standby only: it forwards the job calls with alice's token, the leader stamps her.
    with cluster.client(ALICE, cluster.standby.addr) as alice:
        final = await asyncio.to_thread(alice.generate, request(), request_id="a-1")
        await asyncio.to_thread(alice.download, "a-1", tmp_path / "a-1.mp4")
        mine = await asyncio.to_thread(alice.list_jobs)
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and (tmp_path / "a-1.mp4").stat().st_size
    assert [(j.job_id, j.owner) for j in mine.jobs] == [("a-1", "alice")]
    stored = await cluster.leader.store.fetch("a-1")
    assert stored is not None and stored.owner == "alice"

    with cluster.client(BOB) as bob, cluster.client(BOB, cluster.standby.addr) as bob_standby:
        foreign = [
            await refused(bob.get, "a-1"),
            await refused(bob.watch, "a-1"),
            await refused(bob.cancel, "a-1"),
            await refused(bob.download, "a-1", tmp_path / "b.mp4"),
            await refused(bob_standby.download, "a-1", tmp_path / "b.mp4"),  # served by the standby
        ]
        missing = [
            await refused(bob.get, "no-such-1"),
            await refused(bob.watch, "no-such-1"),
            await refused(bob.cancel, "no-such-1"),
            await refused(bob.download, "no-such-1", tmp_path / "b.mp4"),
            await refused(bob_standby.download, "no-such-1", tmp_path / "b.mp4"),
        ]
        listed = await asyncio.to_thread(bob.list_jobs)
        fleet = [await refused(bob.cluster_status), await refused(bob.list_nodes)]
    assert not (tmp_path / "b.mp4").exists() or not (tmp_path / "b.mp4").stat().st_size
    for err in (*foreign, *missing, *fleet):
        assert err.code is grpc.StatusCode.PERMISSION_DENIED and err.reason == "NOT_PERMITTED", err
    # The same words for another client's job and for none at all.
    assert {e.message.replace("a-1", "J") for e in foreign} == {
        e.message.replace("no-such-1", "J") for e in missing
    }
    assert len({e.message for e in foreign}) == 1 and "alice" not in foreign[0].message
    assert listed.jobs == ()
    assert "admin token" in fleet[0].message

    with cluster.client(ROOT, cluster.standby.addr) as root:
        job = await asyncio.to_thread(root.get, "a-1")
        everyone = await asyncio.to_thread(root.list_jobs)
        status = await asyncio.to_thread(root.cluster_status)
        nodes = await asyncio.to_thread(root.list_nodes)
        await asyncio.to_thread(root.download, "a-1", tmp_path / "root.mp4")
        gone = await refused(root.get, "no-such-1")
    assert job.owner == "alice" and [j.job_id for j in everyone.jobs] == ["a-1"]
    assert status.leader_id == cluster.leader.member_id and [n.node_id for n in nodes.nodes] == ["n1"]
    assert (tmp_path / "root.mp4").read_bytes() == (tmp_path / "a-1.mp4").read_bytes()
    assert gone.code is grpc.StatusCode.NOT_FOUND  # an admin may learn that a job does not exist


async def test_a_refused_cancel_leaves_the_running_job_alone_and_an_admin_may_cancel_it(
    cluster: Cluster,
) -> None:
    with cluster.client(ALICE) as alice, cluster.client(BOB) as bob, cluster.client(ROOT) as root:
        await asyncio.to_thread(alice.submit, request(steps=200), request_id="long-1")
        await running(alice, "long-1")
        denied = await refused(bob.cancel, "long-1")
        # bob reusing alice's request id makes no job of his and touches hers not.
        taken = await refused(bob.submit, request(steps=200), request_id="long-1")
        still = await asyncio.to_thread(alice.get, "long-1")
        cancelled = await asyncio.to_thread(root.cancel, "long-1")
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED
    assert taken.code is grpc.StatusCode.ALREADY_EXISTS
    assert still.state == coordinator_pb2.JOB_STATE_RUNNING and still.owner == "alice"
    assert cancelled.state == coordinator_pb2.JOB_STATE_CANCELLED


async def test_no_or_an_unknown_token_is_unauthenticated_and_says_how_to_pass_one(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with cluster.client(ALICE) as alice:  # a whole job, dispatched with the coordinators' token
        await asyncio.to_thread(alice.generate, request(), request_id="u-1")
    for coordinator in cluster.coordinators:
        for token in (None, "not-a-known-token"):
            with cluster.client(token, coordinator.addr) as client:
                errs = [
                    await refused(client.submit, request()),
                    await refused(client.get, "a-1"),
                    await refused(client.list_jobs),
                    await refused(client.cluster_status),
                    await refused(client.download, "a-1", Path(os.devnull)),
                ]
            for err in errs:
                assert err.code is grpc.StatusCode.UNAUTHENTICATED and err.reason == "UNAUTHENTICATED", err
                assert "--token" in err.message and "not-a-known-token" not in err.message
    node = cluster.node.server.address
    async with grpc.aio.insecure_channel(node) as channel:  # health stays open
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    with NodeClient(node) as anonymous, NodeClient(node, token=BOB) as bob:
        err = await refused(anonymous.status)
        status = await asyncio.to_thread(bob.status)
    assert err.code is grpc.StatusCode.UNAUTHENTICATED and status.node_id == "n1"
    for metrics in cluster.metrics:  # counted by reason, never by client or token
        refusals = metrics.registry.get_sample_value(
            "i2v_coordinator_access_refusals_total", {"reason": "unauthenticated"}
        )
        assert refusals is not None and refusals >= 10
        scraped = generate_latest(metrics.registry).decode()
        assert not any(
            secret in scraped for secret in (ALICE, BOB, ROOT, DISPATCH, "alice", "not-a-known-token")
        )
    logged = caplog.text
    assert "refused an unauthenticated call" in logged
    assert not any(secret in logged for secret in (ALICE, BOB, ROOT, DISPATCH, "not-a-known-token"))


async def test_tokens_file_changes_take_effect_without_a_restart(cluster: Cluster) -> None:
    carol = f"carol-{uuid.uuid4().hex}"
    with cluster.client(carol) as client:
        before = await refused(client.list_jobs)
        write_tokens(cluster.tokens_path, [*LINES, auth.token_line(carol, "carol")])
        accepted = await asyncio.to_thread(client.list_jobs)
        write_tokens(cluster.tokens_path, LINES)
        after = await refused(client.list_jobs)
    assert before.code is after.code is grpc.StatusCode.UNAUTHENTICATED
    assert accepted.jobs == ()
    with cluster.client(ALICE) as alice:  # the others' tokens held throughout
        assert (await asyncio.to_thread(alice.list_jobs)).jobs == ()


async def test_queued_quota_and_submit_rate_are_resource_exhausted_with_retry_info(cluster: Cluster) -> None:
    cluster.limit(ClientLimits(max_queued=2))
    with cluster.client(ALICE) as alice, cluster.client(BOB) as bob, cluster.client(ROOT) as root:
        await asyncio.to_thread(alice.submit, request(steps=200), request_id="q-0")
        await running(alice, "q-0")
        for job_id in ("q-1", "q-2"):
            await asyncio.to_thread(alice.submit, request(steps=200), request_id=job_id)
        over = await refused(alice.submit, request(steps=200), request_id="q-3")
        again = await asyncio.to_thread(alice.submit, request(steps=200), request_id="q-1")  # a retry is free
        bobs = await asyncio.to_thread(bob.submit, request(), request_id="q-bob")  # his own quota
        for job_id in ("q-0", "q-1", "q-2"):
            await asyncio.to_thread(root.cancel, job_id)
        await asyncio.to_thread(bob.watch, "q-bob")
        cluster.limit(ClientLimits(submit_rate=0.5, submit_burst=2))
        for job_id in ("r-1", "r-2"):
            await asyncio.to_thread(alice.submit, request(), request_id=job_id)
        fast = await refused(alice.submit, request(), request_id="r-3")
        await asyncio.to_thread(bob.submit, request(), request_id="r-bob")
    assert over.code is grpc.StatusCode.RESOURCE_EXHAUSTED and over.reason == "CLIENT_QUOTA"
    assert "--max-queued-per-client 2" in over.message and over.retry_after and over.retry_after > 0
    assert not again.created and bobs.created
    assert fast.code is grpc.StatusCode.RESOURCE_EXHAUSTED and fast.reason == "SUBMIT_RATE"
    assert "--submit-rate 0.5" in fast.message and fast.retry_after and 0 < fast.retry_after <= 2
    assert await cluster.leader.store.fetch("q-3") is None and await cluster.leader.store.fetch("r-3") is None


async def test_streams_per_client_are_bounded_and_released(cluster: Cluster) -> None:
    cluster.limit(ClientLimits(max_streams=1))
    with cluster.client(ALICE) as alice:
        await asyncio.to_thread(alice.submit, request(steps=200), request_id="s-1")
    async with contextlib.AsyncExitStack() as stack:
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(cluster.standby.addr))
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        first = stub.Watch(coordinator_pb2.WatchRequest(job_id="s-1"), metadata=bearer(ALICE))
        assert (await first.read()).job_id == "s-1"
        second = stub.Watch(coordinator_pb2.WatchRequest(job_id="s-1"), metadata=bearer(ALICE))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await second.read()
        bobs = stub.Watch(coordinator_pb2.WatchRequest(job_id="s-1"), metadata=bearer(BOB))
        with pytest.raises(grpc.aio.AioRpcError) as not_his:
            await bobs.read()
        first.cancel()
        for _ in range(100):
            leader = cluster.leader.access
            if leader is not None and leader.quotas.streams("alice") == 0:
                break
            await asyncio.sleep(0.02)
        third = stub.Watch(coordinator_pb2.WatchRequest(job_id="s-1"), metadata=bearer(ALICE))
        assert (await third.read()).job_id == "s-1"
        third.cancel()
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    info = details_of(err.value)
    assert (
        info.reason == "STREAM_LIMIT"
        and info.retry_after_s
        and "--max-streams-per-client 1" in (err.value.details() or "")
    )
    assert not_his.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with cluster.client(ROOT) as root:
        await asyncio.to_thread(root.cancel, "s-1")
