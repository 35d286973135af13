"""Options an s3:// artifact store opens with: the endpoint from I2V_S3_ENDPOINT_URL, nothing for
other schemes, and no cached listings (other processes write the same bucket)."""

from __future__ import annotations

import pytest

from i2v_common.artifacts import ArtifactError, FsspecStore
from i2v_common.s3 import storage_options

BASE = {"use_listings_cache": False, "skip_instance_cache": True}


@pytest.mark.parametrize(
    ("url", "env", "options"),
    [
        pytest.param("s3://bucket/prefix", {}, BASE, id="s3-standard-aws-environment"),
        pytest.param(
            "s3://bucket/prefix",
            {"I2V_S3_ENDPOINT_URL": "http://127.0.0.1:9000"},
            {**BASE, "endpoint_url": "http://127.0.0.1:9000"},
            id="s3-compatible-endpoint",
        ),
        pytest.param(
            "s3a://bucket",
            {"I2V_S3_ENDPOINT_URL": " https://minio.internal "},
            {**BASE, "endpoint_url": "https://minio.internal"},
            id="s3a-trimmed",
        ),
        pytest.param("s3://bucket", {"I2V_S3_ENDPOINT_URL": ""}, BASE, id="empty-endpoint-is-unset"),
        pytest.param("memory://store", {"I2V_S3_ENDPOINT_URL": "http://x:1"}, {}, id="other-scheme"),
        pytest.param("gs://bucket/p", {}, {}, id="gcs"),
    ],
)
def test_storage_options(url: str, env: dict[str, str], options: dict[str, object]) -> None:
    assert storage_options(url, env) == options


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("127.0.0.1:9000", id="no-scheme"),
        pytest.param("ftp://h:1", id="ftp"),
        pytest.param("http://", id="no-host"),
    ],
)
def test_a_bad_endpoint_is_named(endpoint: str) -> None:
    with pytest.raises(
        ValueError, match=r"I2V_S3_ENDPOINT_URL=.* is not an endpoint; give http\(s\)://HOST\[:PORT\]"
    ):
        storage_options("s3://bucket", {"I2V_S3_ENDPOINT_URL": endpoint})


def test_a_bad_endpoint_makes_the_store_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2V_S3_ENDPOINT_URL", "minio:9000")
    with pytest.raises(ArtifactError, match="is not usable here: I2V_S3_ENDPOINT_URL"):
        FsspecStore("s3://bucket/prefix")


def test_create_is_create_if_absent_on_fsspec_stores() -> None:
    store = FsspecStore("memory://i2v-test-create")
    assert store.create("cluster/store-id", b"first")
    assert not store.create("cluster/store-id", b"second")
    assert store.get(store.uri_for("cluster/store-id")) == b"first"
