"""The real servers the hostile suite attacks: one etcd member, two `i2v-coordinator` processes (a
leader and a standby that forwards job calls to it) and one tiny `i2v-node` process in the cluster,
all on loopback; and the sentinel jobs submitted before the barrage, which must finish untouched."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from i2v_common.rpc import coordinator_pb2_grpc, node_pb2_grpc
from i2v_contract.states import SUCCEEDED, state_name
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.integration.node_process import NodeProcess
from tests.media import png

MIB = 1024 * 1024
# Above every server's receive limit, so oversized requests reach the servers and are refused there.
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 128 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]
SENTINEL_STEPS = 120  # long enough to be running while the first requests land


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def serving(chan: grpc.Channel) -> bool:
    try:
        status = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    except grpc.RpcError:
        return False
    return bool(status == health_pb2.HealthCheckResponse.SERVING)


def sentinel_request(seed: int) -> common_pb2.GenerationRequest:
    return common_pb2.GenerationRequest(
        image=png(), prompt="a sentinel", width=64, height=64, frames=4, steps=SENTINEL_STEPS, seed=seed
    )


@dataclass
class HostileCluster:
    etcd: EtcdCluster
    workdir: Path
    cache_dir: Path
    prefix: str = field(default_factory=lambda: f"/hostile-{uuid.uuid4().hex[:8]}/")
    sentinels: list[str] = field(default_factory=list)

    def start(self) -> HostileCluster:
        self.group = CoordinatorGroup(self.etcd.endpoints, self.workdir, 2, prefix=self.prefix)
        self.node = NodeProcess(
            self.cache_dir, self.workdir / "node.log",
            "--etcd", ",".join(self.etcd.endpoints), "--artifacts", str(self.store_dir),
            "--prefix", self.prefix, node_id="hostile-node",
        )  # fmt: skip
        self.group.wait_started()
        self.leader, _, _ = self.group.wait_leader(20.0)
        self.standby = next(p for p in self.group.procs if p is not self.leader)
        self.node.wait_serving()
        self.channels = {"leader": channel(self.leader.address), "standby": channel(self.standby.address)}
        self.node_channel = channel(self.node.address)
        self._wait_node_listed()
        return self

    @property
    def store_dir(self) -> Path:
        return self.workdir / "artifacts"  # what CoordinatorProcess gives its coordinators

    @property
    def store_root(self) -> str:
        return self.store_dir.resolve().as_uri()

    def coordinator(self, which: str = "leader") -> coordinator_pb2_grpc.CoordinatorStub:
        return coordinator_pb2_grpc.CoordinatorStub(self.channels[which])

    def node_stub(self) -> node_pb2_grpc.NodeStub:
        return node_pb2_grpc.NodeStub(self.node_channel)

    def _wait_node_listed(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = self.coordinator().ListNodes(coordinator_pb2.ListNodesRequest(), timeout=5).nodes
            if any(n.node_id == "hostile-node" for n in nodes):
                return
            time.sleep(0.1)
        raise AssertionError(f"node not registered within {timeout}s:\n{self.leader.log()}")

    def submit_sentinels(self, count: int = 2) -> None:
        """One job to be running and one queued behind it while the barrage lands."""
        for i in range(count):
            job_id = f"sentinel-{i}-{uuid.uuid4().hex[:8]}"
            request = coordinator_pb2.SubmitRequest(request=sentinel_request(seed=i), request_id=job_id)
            self.coordinator().Submit(request, timeout=30)
            self.sentinels.append(job_id)

    def wait_sentinels(self, timeout: float = 120.0) -> list[coordinator_pb2.Job]:
        """Every sentinel job, once finished (AssertionError naming the states seen otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = [
                self.coordinator().Get(coordinator_pb2.GetRequest(job_id=j), timeout=10)
                for j in self.sentinels
            ]
            if all(j.finished_at for j in jobs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        states = {j.job_id: state_name(j.state) for j in jobs}
        assert all(j.state == SUCCEEDED for j in jobs), f"sentinels: {states}\n{self.leader.log()}"
        return jobs

    def processes(self) -> dict[str, CoordinatorProcess | NodeProcess]:
        return {"leader": self.leader, "standby": self.standby, "node": self.node}

    def log_sizes(self) -> dict[str, int]:
        return {name: p.log_path.stat().st_size for name, p in self.processes().items()}

    def stop(self) -> None:
        for chan in (*getattr(self, "channels", {}).values(), getattr(self, "node_channel", None)):
            if chan is not None:
                chan.close()
        if hasattr(self, "node"):
            self.node.stop()
        if hasattr(self, "group"):
            self.group.stop_all()
