"""Retention on an s3:// artifact store: a real coordinator and a tiny node share a bucket on a real
S3-compatible server (moto); a finished job past --retention-max-age loses its record, its input
image and its video from the bucket, and Get says retention removed it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from i2v_client import CallError, CoordinatorClient, build_request, final_result
from tests.chaos.coordinator_procs import CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.integration.node_process import NodeProcess
from tests.media import png
from tests.s3_server import S3Server, s3_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]
BUCKET = "i2v-retention"
MAX_AGE_S = 6


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same cache path as the other node tests': the tiny pipeline is built once per session."""
    path = tmp_path_factory.getbasetemp() / "i2v-cache"
    path.mkdir(exist_ok=True)
    return path


def wait_idle(client: CoordinatorClient, node_id: str, within_s: float = 90.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        idle = [n for n in client.list_nodes().nodes if n.node_id == node_id and not n.busy]
        if idle:
            return
        time.sleep(0.2)
    raise AssertionError(f"node {node_id} not idle within {within_s} s")


def removed_by_retention(client: CoordinatorClient, job_id: str, within_s: float) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            client.get(job_id)
        except CallError as exc:
            if exc.code is grpc.StatusCode.NOT_FOUND:
                return exc.message
            raise
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still there {within_s} s after it finished")


def test_retention_deletes_an_expired_jobs_input_and_video_from_the_bucket(
    etcd: EtcdCluster, s3: S3Server, cache_dir: Path, tmp_path: Path
) -> None:
    prefix, store = f"/s3r-{uuid.uuid4().hex[:8]}/", f"s3://{BUCKET}/cluster"
    retention = ("--retention-max-age", f"{MAX_AGE_S}s", "--retention-interval", "1s")
    coordinator = CoordinatorProcess(
        etcd.endpoints, tmp_path, "c1", "--artifacts", store, *retention, prefix=prefix
    )
    node_args = ("--etcd", ",".join(etcd.endpoints), "--artifacts", store, "--prefix", prefix)
    node = NodeProcess(cache_dir, tmp_path / "n1.log", *node_args, node_id="n1")
    try:
        coordinator.wait_started()
        node.wait_serving()
        with CoordinatorClient(coordinator.address) as client:
            wait_idle(client, "n1")
            request = build_request(png(), prompt="a red fox", width=64, height=64, frames=4, steps=2, seed=3)
            final = client.generate(request, timeout=120)
            result = final_result(final)
            job = client.get(final.job_id)
            stored = {
                f"{store}/jobs/{final.job_id}/{k}" for k in s3.keys(f"{BUCKET}/cluster/jobs/{final.job_id}")
            }
            assert {job.input_uri, result.artifact_uri} <= stored
            message = removed_by_retention(client, final.job_id, within_s=MAX_AGE_S + 20)
        assert "retention" in message
        assert s3.keys(f"{BUCKET}/cluster/jobs/{final.job_id}") == []
        assert all(k.startswith("cluster/") for k in s3.keys(f"{BUCKET}/cluster"))  # store id, canary
    finally:
        node.stop()
        coordinator.stop()
