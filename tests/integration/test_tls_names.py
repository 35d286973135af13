"""Certificates that name a role, not an address, as in Kubernetes: every coordinator shares one
certificate for `i2v-coordinator`, every node one for `i2v-node`, and neither names the IP it is
dialed at. With --tls-node-name / --tls-peer-name on the coordinators and --tls-server-name on the
client, a job runs end to end through the standby (client -> standby -> leader -> node, each hop
checked against the role's name); without the name the client is told which flag to pass."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from i2v_client import ClientTls
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.integration.node_process import BIN, NodeProcess, node_env
from tests.media import decode, png
from tests.pki import Issued, TestCA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


@dataclass
class Site:
    leader: CoordinatorProcess
    standby: CoordinatorProcess
    ca: TestCA
    client: Issued
    workdir: Path


def _flags(issued: Issued, ca: TestCA) -> tuple[str, ...]:
    return ("--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-client-ca", str(ca.cert))


@pytest.fixture(scope="module")
def site(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("tls-names")
    ca = TestCA(workdir / "pki")
    coordinator = ca.issue("i2v-coordinator", dns=("i2v-coordinator",), ips=())
    node_cert = ca.issue("i2v-node", dns=("i2v-node",), ips=())
    client = ca.issue("alice", client=True, server=False)
    prefix = f"/tls-names-{uuid.uuid4().hex[:8]}/"
    names = ("--tls-node-name", "i2v-node", "--tls-peer-name", "i2v-coordinator")
    group = CoordinatorGroup(
        etcd.endpoints, workdir, 2, *_flags(coordinator, ca), "--tls-ca", str(ca.cert), *names, prefix=prefix
    )
    node = NodeProcess(
        tmp_path_factory.getbasetemp() / "i2v-cache", workdir / "node.log",
        "--etcd", ",".join(etcd.endpoints), "--artifacts", str(workdir / "artifacts"), "--prefix", prefix,
        *_flags(node_cert, ca),
        node_id="named-node",
        tls=ClientTls(ca.cert, coordinator.cert, coordinator.key, server_name="i2v-node"),
    )  # fmt: skip
    try:
        group.wait_started()
        leader, _, _ = group.wait_leader(15.0)
        standby = next(p for p in group.procs if p is not leader)
        node.wait_serving()
        yield Site(leader, standby, ca, client, workdir)
    finally:
        node.stop()
        group.stop_all()


def _generate(site: Site, *name: str) -> subprocess.CompletedProcess[str]:
    (site.workdir / "in.png").write_bytes(png())
    env = node_env(site.workdir)
    for var in ("I2V_TARGETS", "I2V_TLS_CA", "I2V_TLS_CERT", "I2V_TLS_KEY", "I2V_TLS_SERVER_NAME"):
        env.pop(var, None)
    return subprocess.run(
        [
            str(BIN / "i2v"), "generate", "in.png", "--prompt", "a gradient", "--frames", "3",
            "--width", "64", "--height", "64", "--steps", "2", "--fps", "6", "--timeout", "90",
            "--target", site.standby.address, "-o", "out.mp4",
            "--tls-ca", str(site.ca.cert),
            "--tls-cert", str(site.client.cert), "--tls-key", str(site.client.key),
            *name,
        ],
        capture_output=True, text=True, timeout=120, cwd=site.workdir, env=env,
    )  # fmt: skip


def test_without_the_name_the_client_is_told_to_pass_it(site: Site) -> None:
    refused = _generate(site)
    assert refused.returncode != 0
    assert "does not name this address" in refused.stderr and "--tls-server-name" in refused.stderr, (
        refused.stderr
    )


def test_a_job_runs_through_the_standby_with_every_hop_checked_against_role_names(site: Site) -> None:
    done = _generate(site, "--tls-server-name", "i2v-coordinator")
    assert done.returncode == 0, f"{done.stderr}\n--- leader log\n{site.leader.log()}"
    assert decode((site.workdir / "out.mp4").read_bytes()) == (3, 6.0, 64, 64)
