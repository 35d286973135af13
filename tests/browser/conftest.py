"""The stack the page runs against: real etcd, an `i2v-coordinator`, a tiny `i2v-node` and the
gateway (uvicorn on a loopback port, serving the page from gateway/i2v_gateway/static/)."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from i2v_client import CoordinatorClient
from i2v_gateway.app import create_app
from i2v_gateway.gateway import Gateway, Settings
from tests.chaos.coordinator_procs import CoordinatorGroup
from tests.etcd_cluster import EtcdCluster, free_port
from tests.integration.node_process import NodeProcess

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "i2v_gateway" / "static"


def wait_node_listed(targets: str, node_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with CoordinatorClient(targets) as client:
        while time.monotonic() < deadline:
            if any(n.node_id == node_id for n in client.list_nodes().nodes):
                return
            time.sleep(0.1)
    raise AssertionError(f"node {node_id} not registered within {timeout} s")


def serve(targets: str) -> Iterator[str]:
    """The gateway in a thread of this process; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(Gateway.start(Settings(targets, static_dir=STATIC))),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "readyz", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def site(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("webui-cluster")
    prefix = f"/webui-{uuid.uuid4().hex[:8]}/"
    group = CoordinatorGroup(etcd.endpoints, workdir, 1, prefix=prefix)
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    node = NodeProcess(
        cache, workdir / "node.log",
        "--etcd", ",".join(etcd.endpoints), "--artifacts", str(workdir / "artifacts"), "--prefix", prefix,
        node_id="webui-node",
    )  # fmt: skip
    try:
        group.wait_started()
        leader, _, _ = group.wait_leader(15.0)
        node.wait_serving()
        wait_node_listed(leader.address, "webui-node")
        yield from serve(leader.address)
    finally:
        node.stop()
        group.stop_all()
