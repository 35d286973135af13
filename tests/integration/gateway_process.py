"""A real cluster behind a real `i2v-gateway`: etcd, two coordinators, one tiny node and the gateway
on loopback ports, for the gateway's integration tests and benchmarks/gateway.py."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from i2v_client import ClientTls, CoordinatorClient
from tests.chaos.coordinator_procs import CoordinatorGroup
from tests.etcd_cluster import free_port
from tests.integration.node_process import NodeProcess, node_env

ROOT = Path(__file__).resolve().parents[2]


def gateway_env(env: dict[str, str] | None = None, path_first: Sequence[str] = ()) -> dict[str, str]:
    """The environment to run the gateway module in: this interpreter's import path (the project's
    source folders as pytest set them up), whether or not the project is installed; `path_first`
    ahead of it (another copy of the gateway package, for a benchmark's comparison)."""
    path = os.pathsep.join([*path_first, *sys.path])
    return {**(env or os.environ), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


class GatewayProcess:
    """`python -m i2v_gateway.main` (what the `i2v-gateway` script runs) with its log in `log_path`."""

    def __init__(
        self,
        targets: str,
        log_path: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        path_first: Sequence[str] = (),
        https_ca: Path | None = None,
    ) -> None:
        """`https_ca`: the gateway serves HTTPS (its --https-cert among `extra`) signed by this CA."""
        self.port = free_port()
        self.url = f"{'https' if https_ca else 'http'}://127.0.0.1:{self.port}"
        self._ssl = ssl.create_default_context(cafile=https_ca) if https_ca else None
        self.log_path = log_path
        args = [sys.executable, "-m", "i2v_gateway.main", "--coordinators", targets]
        args += ["--listen", f"127.0.0.1:{self.port}", *extra]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=gateway_env(env, path_first),
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2, context=self._ssl) as r:
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


@dataclass(frozen=True)
class Security:
    """A secured cluster: the servers' extra flags, and how this helper and the gateway reach them."""

    coordinator_flags: tuple[str, ...] = ()
    node_flags: tuple[str, ...] = ()
    node_tls: ClientTls | None = None  # this helper's health checks of the node
    tls: ClientTls | None = None  # this helper's calls to the coordinators
    admin_token: str | None = None  # to see the node registered, with --tokens-file
    gateway_env: tuple[tuple[str, str], ...] = ()  # e.g. I2V_TLS_CA, in place of a flag
    https_ca: Path | None = None  # the gateway serves HTTPS (--https-cert among its flags)


def _wait_node(targets: str, node_id: str, security: Security, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with CoordinatorClient(targets, tls=security.tls, token=security.admin_token) as client:
        while time.monotonic() < deadline:
            if any(n.node_id == node_id for n in client.list_nodes().nodes):
                return
            time.sleep(0.1)
    raise AssertionError(f"node {node_id} not registered within {timeout}s")


@contextmanager
def gateway_cluster(
    etcd: Sequence[str],
    workdir: Path,
    cache: Path,
    *gateway_flags: str,
    prefix: str = "",
    security: Security = Security(),
) -> Iterator[GatewayCluster]:
    prefix = prefix or f"/gw-{uuid.uuid4().hex[:8]}/"
    group = CoordinatorGroup(etcd, workdir, 2, *security.coordinator_flags, prefix=prefix)
    node_id = f"gw-node-{uuid.uuid4().hex[:4]}"
    node = NodeProcess(
        cache, workdir / "node.log",
        "--etcd", ",".join(etcd), "--artifacts", str(workdir / "artifacts"), "--prefix", prefix,
        *security.node_flags, node_id=node_id, tls=security.node_tls,
    )  # fmt: skip
    gateway: GatewayProcess | None = None
    try:
        group.wait_started()
        group.wait_leader(15.0)
        node.wait_serving()
        targets = ",".join(p.address for p in group.procs)
        _wait_node(targets, node_id, security)
        env = {**node_env(cache), **dict(security.gateway_env)}
        gateway = GatewayProcess(
            targets, workdir / "gateway.log", *gateway_flags, env=env, https_ca=security.https_ca
        )
        gateway.wait_ready()
        yield GatewayCluster(group, node_id, gateway, workdir)
    finally:
        if gateway is not None:
            gateway.stop()
        node.stop()
        group.stop_all()
