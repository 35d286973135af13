"""A real S3-compatible server on a free loopback port: moto's standalone server, run in a thread
of the test process, for the s3:// artifact store's tests. Clients reach it through the standard
AWS environment plus I2V_S3_ENDPOINT_URL, as servers in production would."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.etcd_cluster import free_port


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this server (no config files, no instance metadata)."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "I2V_S3_ENDPOINT_URL": self.endpoint,
        }

    def fs(self) -> Any:
        import fsspec

        return fsspec.filesystem(
            "s3", endpoint_url=self.endpoint, key="testing", secret="testing", skip_instance_cache=True
        )

    def bucket(self, name: str) -> str:
        self.fs().mkdir(name)
        return name

    def keys(self, path: str) -> list[str]:
        """Every object under `path` (bucket/prefix), relative to it, read fresh from the server."""
        return sorted(k[len(path) + 1 :] for k in self.fs().find(path))


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Skips when moto or s3fs is missing (both come with the dev extras)."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            s3 = S3Server(f"http://127.0.0.1:{port}")
            for key, value in s3.env.items():
                patch.setenv(key, value)
            yield s3
    finally:
        server.stop()
