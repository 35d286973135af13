"""A real cluster behind a real `i2v-gateway`: etcd, two coordinators, one tiny node and the gateway
on loopback ports, for the gateway's integration tests and benchmarks/gateway.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from i2v_client import CoordinatorClient
from tests.chaos.coordinator_procs import CoordinatorGroup
from tests.etcd_cluster import free_port
from tests.integration.node_process import NodeProcess, node_env

ROOT = Path(__file__).resolve().parents[2]


def gateway_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to run the gateway module in: this interpreter's import path (the project's
    source folders as pytest set them up), whether or not the project is installed."""
    return {**(env or os.environ), "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}


class GatewayProcess:
    """`python -m i2v_gateway.main` (what the `i2v-gateway` script runs) with its log in `log_path`."""

    def __init__(self, targets: str, log_path: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        args = [sys.executable, "-m", "i2v_gateway.main", "--coordinators", targets]
        args += ["--listen", f"127.0.0.1:{self.port}", *extra]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=gateway_env(env),
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway not ready within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@dataclass
class GatewayCluster:
    group: CoordinatorGroup
    node_id: str
    gateway: GatewayProcess
    workdir: Path

    @property
    def targets(self) -> str:
        return ",".join(p.address for p in self.group.procs)

    @property
    def url(self) -> str:
        return self.gateway.url


def _wait_node(targets: str, node_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with CoordinatorClient(targets) as client:
        while time.monotonic() < deadline:
            if any(n.node_id == node_id for n in client.list_nodes().nodes):
                return
            time.sleep(0.1)
    raise AssertionError(f"node {node_id} not registered within {timeout}s")


@contextmanager
def gateway_cluster(
    etcd: Sequence[str], workdir: Path, cache: Path, *gateway_flags: str, prefix: str = ""
) -> Iterator[GatewayCluster]:
    prefix = prefix or f"/gw-{uuid.uuid4().hex[:8]}/"
    group = CoordinatorGroup(etcd, workdir, 2, prefix=prefix)
    node_id = f"gw-node-{uuid.uuid4().hex[:4]}"
    node = NodeProcess(
        cache, workdir / "node.log",
        "--etcd", ",".join(etcd), "--artifacts", str(workdir / "artifacts"), "--prefix", prefix,
        node_id=node_id,
    )  # fmt: skip
    gateway: GatewayProcess | None = None
    try:
        group.wait_started()
        group.wait_leader(15.0)
        node.wait_serving()
        targets = ",".join(p.address for p in group.procs)
        _wait_node(targets, node_id)
        env = dict(node_env(cache))
        gateway = GatewayProcess(targets, workdir / "gateway.log", *gateway_flags, env=env)
        gateway.wait_ready()
        yield GatewayCluster(group, node_id, gateway, workdir)
    finally:
        if gateway is not None:
            gateway.stop()
        node.stop()
        group.stop_all()
