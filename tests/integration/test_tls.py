"""Transport security on a real cluster: etcd, two `i2v-coordinator` processes and one tiny
`i2v-node`, every gRPC port mTLS with a throwaway CA. A job runs end to end through the standby
(client -> standby -> leader -> node, each hop mTLS); a plaintext client and one that trusts
another CA are refused with words that say what to pass; a caller whose certificate is not a
coordinator's cannot dispatch to the node; replaced certificate files reach new connections
without a restart, and jobs go on running."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from i2v_client import ClientTls, CoordinatorClient
from i2v_common.channels import ChannelFactory
from i2v_common.rpc import node_pb2_grpc
from i2v_contract.wire import common_pb2, node_pb2
from i2v_coordinator.nodecalls import GrpcNodeCalls, NodeCallError
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.integration.node_process import BIN, NodeProcess, node_env
from tests.media import decode, png
from tests.pki import Issued, TestCA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


@dataclass
class Cluster:
    leader: CoordinatorProcess
    standby: CoordinatorProcess
    node: NodeProcess
    ca: TestCA
    coordinator: Issued
    node_cert: Issued
    client: Issued  # a client certificate ("alice")
    stranger: Issued  # signed by the cluster CA, but not a coordinator's name
    other_ca: TestCA
    workdir: Path

    @property
    def client_tls(self) -> ClientTls:
        return ClientTls(self.ca.cert, self.client.cert, self.client.key)

    def tls_flags(self) -> list[str]:
        return [
            "--tls-ca",
            str(self.ca.cert),
            "--tls-cert",
            str(self.client.cert),
            "--tls-key",
            str(self.client.key),
        ]


def i2v(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = node_env(cwd)
    for name in ("I2V_TARGETS", "I2V_TLS_CA", "I2V_TLS_CERT", "I2V_TLS_KEY"):
        env.pop(name, None)
    return subprocess.run(
        [str(BIN / "i2v"), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


def _server_flags(issued: Issued, ca: TestCA) -> tuple[str, ...]:
    return ("--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-client-ca", str(ca.cert))


def _wait_node_listed(targets: str, tls: ClientTls, node_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with CoordinatorClient(targets, tls=tls) as client:
        while time.monotonic() < deadline:
            if any(n.node_id == node_id for n in client.list_nodes().nodes):
                return
            time.sleep(0.1)
    raise AssertionError(f"node {node_id} not registered within {timeout}s")


@pytest.fixture(scope="module")
def cluster(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("tls-cluster")
    ca = TestCA(workdir / "pki")
    other = TestCA(workdir / "other-pki", "other CA")
    coordinator, node_cert = ca.issue("i2v-coordinator"), ca.issue("tls-node")
    client, stranger = ca.issue("alice", client=True, server=False), ca.issue("mallory")
    prefix = f"/tls-{uuid.uuid4().hex[:8]}/"
    coordinator_flags = (*_server_flags(coordinator, ca), "--tls-ca", str(ca.cert))
    group = CoordinatorGroup(etcd.endpoints, workdir, 2, *coordinator_flags, prefix=prefix)
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    node = NodeProcess(
        cache, workdir / "node.log",
        "--etcd", ",".join(etcd.endpoints), "--artifacts", str(workdir / "artifacts"), "--prefix", prefix,
        *_server_flags(node_cert, ca),
        node_id="tls-node", tls=ClientTls(ca.cert, coordinator.cert, coordinator.key),
    )  # fmt: skip
    try:
        group.wait_started()
        leader, _, _ = group.wait_leader(15.0)
        standby = next(p for p in group.procs if p is not leader)
        node.wait_serving()
        made = Cluster(leader, standby, node, ca, coordinator, node_cert, client, stranger, other, workdir)
        _wait_node_listed(f"{leader.address},{standby.address}", made.client_tls, "tls-node")
        yield made
    finally:
        node.stop()
        group.stop_all()


def _generate(cluster: Cluster, target: str, name: str) -> subprocess.CompletedProcess[str]:
    cwd = cluster.workdir
    (cwd / "in.png").write_bytes(png())
    return i2v(
        "generate", "in.png", "--prompt", "a gradient", "--frames", "3", "--width", "64", "--height", "72",
        "--steps", "2", "--seed", "5", "--fps", "6", "--target", target, "-o", f"out/{name}.mp4",
        *cluster.tls_flags(), cwd=cwd,
    )  # fmt: skip


def test_a_job_runs_end_to_end_over_mtls_through_the_standby(cluster: Cluster) -> None:
    done = _generate(cluster, cluster.standby.address, "first")
    assert done.returncode == 0, f"{done.stderr}\n--- leader log\n{cluster.leader.log()}"
    assert re.search(r"^job \w+$", done.stdout, re.MULTILINE), done.stdout
    assert decode((cluster.workdir / "out" / "first.mp4").read_bytes()) == (3, 6.0, 64, 72)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        pytest.param((), "speaks TLS: pass --tls-ca", id="plaintext-client"),
        pytest.param(("--tls-ca", "OTHER"), "the CA in --tls-ca did not sign", id="wrong-ca"),
        pytest.param(("--tls-ca", "CA"), "pass --tls-cert and --tls-key", id="no-client-certificate"),
    ],
)
def test_a_client_that_does_not_match_is_told_what_to_pass(
    cluster: Cluster, flags: tuple[str, ...], words: str
) -> None:
    paths = {"OTHER": str(cluster.other_ca.cert), "CA": str(cluster.ca.cert)}
    done = i2v(
        "status", "--target", cluster.leader.address, *(paths.get(f, f) for f in flags), cwd=cluster.workdir
    )
    assert done.returncode == 1, done.stdout
    assert words in done.stderr
    assert cluster.leader.alive()


def _node_stub(cluster: Cluster, who: Issued) -> tuple[grpc.Channel, node_pb2_grpc.NodeStub]:
    channel = ChannelFactory(ClientTls(cluster.ca.cert, who.cert, who.key)).sync(cluster.node.address)
    return channel, node_pb2_grpc.NodeStub(channel)


def _dispatch() -> node_pb2.NodeGenerateRequest:
    request = common_pb2.GenerationRequest(image=png(), prompt="p", frames=3, width=64, height=64)
    return node_pb2.NodeGenerateRequest(
        request=request, job_id="forged", attempt=1, epoch=1, assign_revision=1
    )


def test_a_dispatch_from_a_certificate_that_is_not_a_coordinators_is_refused(cluster: Cluster) -> None:
    channel, stub = _node_stub(cluster, cluster.stranger)
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Generate(_dispatch(), timeout=10))
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "'mallory'" in (err.value.details() or "")
        assert "--coordinator-identity" in (err.value.details() or "")
        with pytest.raises(grpc.RpcError) as err:
            stub.Cancel(node_pb2.NodeCancelRequest(job_id="forged"), timeout=10)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        # The same certificate may still ask what the node is.
        assert stub.Status(node_pb2.NodeStatusRequest(), timeout=10).node_id == "tls-node"


def test_the_coordinators_certificate_gets_past_the_identity_check(cluster: Cluster) -> None:
    channel, stub = _node_stub(cluster, cluster.coordinator)
    with channel, pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(_dispatch(), timeout=10))
    # No claim in etcd backs it: refused by the fence, not by the identity check.
    assert err.value.code() is not grpc.StatusCode.PERMISSION_DENIED, err.value.details()


def _served_serial(address: str, cluster: Cluster) -> int:
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(cluster.ca.cert))
    context.load_cert_chain(cluster.client.cert, cluster.client.key)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return TestCA.serial_of(ssl.DER_cert_to_PEM_cert(der).encode())


def test_rotated_certificates_reach_new_connections_without_a_restart(cluster: Cluster) -> None:
    before = {p.address: _served_serial(p.address, cluster) for p in (cluster.leader, cluster.node)}
    pids = (cluster.leader.pid, cluster.node.proc.pid)
    # Same files, new certificates and keys: what an operator's renewal (or cert-manager) does.
    cluster.ca.issue("i2v-coordinator")
    cluster.ca.issue("tls-node")
    after = {p.address: _served_serial(p.address, cluster) for p in (cluster.leader, cluster.node)}
    assert after[cluster.leader.address] == TestCA.serial_of(cluster.coordinator.cert.read_bytes())
    assert after[cluster.node.address] == TestCA.serial_of(cluster.node_cert.cert.read_bytes())
    assert all(after[a] != before[a] for a in before)
    time.sleep(1.1)  # the coordinators look at their client certificate files at most every second
    done = _generate(cluster, cluster.leader.address, "after-rotation")
    assert done.returncode == 0, f"{done.stderr}\n--- leader log\n{cluster.leader.log()}"
    assert decode((cluster.workdir / "out" / "after-rotation.mp4").read_bytes()) == (3, 6.0, 64, 72)
    assert (cluster.leader.pid, cluster.node.proc.pid) == pids and cluster.leader.alive()


async def test_a_coordinator_without_tls_settings_is_told_the_node_may_speak_tls(cluster: Cluster) -> None:
    calls = GrpcNodeCalls()  # plaintext, as a coordinator started without --tls-ca
    try:
        with pytest.raises(NodeCallError) as err:
            await calls.cancel(cluster.node.address, "j")
    finally:
        await calls.close()
    assert err.value.code is grpc.StatusCode.UNAVAILABLE
    assert (
        "Socket closed: the node may speak TLS (it hung up on plaintext): pass --tls-ca" in err.value.message
    )
