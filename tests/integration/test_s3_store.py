"""The s3:// artifact store against a real S3-compatible server (moto on a loopback port): put, get,
exclusive create, delete, what the bucket lists, and the store identity agreement on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from i2v_common.artifacts import ArtifactError, ArtifactMissing, FsspecStore, open_store
from i2v_common.store_identity import STORE_ID_NAME, StoreMismatch, agree, publish
from i2v_contract.keys import Keys
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV
from tests.s3_server import S3Server, s3_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.bucket("i2v-store")
        yield server


def test_put_get_create_delete_and_list(s3: S3Server) -> None:
    store = open_store("s3://i2v-store/cluster-a")
    assert isinstance(store, FsspecStore)
    uri = store.put("jobs/j1/input.png", b"png bytes")
    assert uri == "s3://i2v-store/cluster-a/jobs/j1/input.png" == store.uri_for("jobs/j1/input.png")
    assert store.get(uri) == b"png bytes"
    store.put("jobs/j1/input.png", b"replaced")
    assert store.get(uri) == b"replaced"
    video = store.put("jobs/j1/attempt-1.mp4", b"mp4")
    assert store.create("cluster/store-id", b"id-1") and not store.create("cluster/store-id", b"id-2")
    assert store.get(store.uri_for("cluster/store-id")) == b"id-1"  # the first writer's stays
    assert s3.keys("i2v-store/cluster-a") == [
        "cluster/store-id",
        "jobs/j1/attempt-1.mp4",
        "jobs/j1/input.png",
    ]
    store.delete(uri)
    store.delete(uri)  # already gone: not an error
    with pytest.raises(ArtifactMissing, match="does not exist"):
        store.get(uri)
    assert s3.keys("i2v-store/cluster-a") == ["cluster/store-id", "jobs/j1/attempt-1.mp4"]
    store.delete(video)
    with pytest.raises(ArtifactError, match="not in this store"):
        store.get("s3://i2v-store/cluster-b/jobs/j1/input.png")
    with pytest.raises(ArtifactError, match="not in this store"):
        store.delete("s3://other-bucket/cluster-a/x")


def test_a_missing_bucket_is_an_error_not_a_missing_artifact(s3: S3Server) -> None:
    store = open_store("s3://no-such-bucket/p")
    with pytest.raises(FileNotFoundError):
        store.put("x", b"1")


async def test_the_store_identity_agreement_holds_on_s3(s3: S3Server) -> None:
    kv, keys = MemoryKV(ManualClock()), Keys("/s3id/")
    location = "s3://i2v-store/cluster-id"
    record = await publish(kv, keys, open_store(location), location)
    assert record.uri == location and s3.keys("i2v-store/cluster-id") == [STORE_ID_NAME]
    # a second coordinator and a node, each with a store of its own at the same URL, agree
    assert await publish(kv, keys, open_store(location), location) == record
    assert await agree(kv, keys, open_store(location), location, "n1") == record
    assert "cluster/canary-n1" in s3.keys("i2v-store/cluster-id")
    other = "s3://i2v-store/cluster-other"
    with pytest.raises(StoreMismatch, match=f"--artifacts {other} holds no store id"):
        await agree(kv, keys, open_store(other), other, "n2")
    with pytest.raises(StoreMismatch, match="holds no store id"):
        await publish(kv, keys, open_store(other), other)


@pytest.mark.parametrize(
    "variable",
    [
        pytest.param("AWS_ENDPOINT_URL_S3", id="botocore-standard"),
        pytest.param("AWS_ENDPOINT_URL", id="botocore-any-service"),
        pytest.param("FSSPEC_S3_ENDPOINT_URL", id="fsspec-config"),
    ],
)
def test_the_endpoint_may_come_from_the_standard_variables(s3: S3Server, variable: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "I2V_S3_ENDPOINT_URL"}
    env[variable] = s3.endpoint
    script = (
        "from i2v_common.artifacts import open_store\n"
        "store = open_store('s3://i2v-store/by-env')\n"
        "print(store.get(store.put('x/y.bin', b'through ' + b'env')).decode())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "through env"
