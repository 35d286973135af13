"""A real `i2v-node` subprocess on free loopback ports, for integration tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from i2v_common.channels import ChannelFactory
from i2v_common.tls import ClientTls
from tests.etcd_cluster import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def node_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "I2V_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1"})
    return env


class NodeProcess:
    """`i2v-node --model tiny` with its log in `log_path`; stop() always ends it (by pid)."""

    def __init__(
        self,
        cache_dir: Path,
        log_path: Path,
        *extra: str,
        node_id: str = "test-node",
        port: int = 0,
        tls: ClientTls | None = None,
    ) -> None:
        """`tls`: how this helper's own channel (health) reaches a node started with TLS flags."""
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        args = [str(BIN / "i2v-node"), "--model", "tiny", "--listen", self.address]
        args += ["--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--node-id", node_id]
        args += ["--cache-dir", str(cache_dir), *extra]
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=node_env(cache_dir)
        )
        self.channel = ChannelFactory(tls).sync(
            self.address, [("grpc.max_receive_message_length", 128 * 1024 * 1024)]
        )

    def health(self, service: str = "") -> int | None:
        """The health status, or None when nothing answers yet."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            status: int = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
        except grpc.RpcError:
            return None
        return status

    def wait_health(self, want: int, timeout: float = 90.0) -> list[int | None]:
        """Poll until health is `want`; returns the distinct statuses seen in order."""
        seen: list[int | None] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.health()
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == want:
                return seen
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"node health never became {want} (saw {seen}):\n{self.log()}")

    def wait_serving(self, timeout: float = 90.0) -> None:
        self.wait_health(health_pb2.HealthCheckResponse.SERVING, timeout)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            body: bytes = r.read()
        return body.decode()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0
