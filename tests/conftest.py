"""Shared pytest fixtures.

etcd-adapter section: real etcd clusters from tests/etcd_cluster.py. Tests needing them are skipped
with a reason when no etcd binary is installed (CI installs one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd_cluster import EtcdCluster, etcd_binary


def _cluster(size: int, tmp_dir: Path) -> Iterator[EtcdCluster]:
    if etcd_binary() is None:
        pytest.skip("etcd binary not found (install etcd or set ETCD_BIN)")
    cluster = EtcdCluster(size, tmp_dir)
    try:
        yield cluster.start()
    finally:
        cluster.stop_all()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member shared by a test module: use a unique key prefix per test, don't kill it."""
    yield from _cluster(1, tmp_path_factory.mktemp("etcd1"))


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh 3-member cluster per test: kill, pause and restart members freely."""
    yield from _cluster(3, tmp_path)


@pytest.fixture
def etcd_alone(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh single member for one test: stop or kill it freely."""
    data = tmp_path / "etcd-alone"
    data.mkdir()
    yield from _cluster(1, data)
