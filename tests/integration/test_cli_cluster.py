"""The `i2v` CLI against a real cluster: etcd, two `i2v-coordinator` processes, one tiny `i2v-node`.

One generation runs through the coordinators (module fixture); the other commands then look at
it. `jobs` asks the standby, which answers from etcd.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from i2v_client import CoordinatorClient
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.integration.node_process import BIN, NodeProcess, node_env
from tests.media import decode, png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@dataclass
class Cluster:
    leader: CoordinatorProcess
    standby: CoordinatorProcess
    node_id: str
    workdir: Path

    @property
    def targets(self) -> str:
        return f"{self.leader.address},{self.standby.address}"


def i2v(*args: str, cwd: Path, targets: str | None = None) -> subprocess.CompletedProcess[str]:
    env = node_env(cwd)
    env.pop("I2V_TARGETS", None)
    if targets is not None:
        env["I2V_TARGETS"] = targets
    return subprocess.run(
        [str(BIN / "i2v"), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


def wait_node_listed(targets: str, node_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with CoordinatorClient(targets) as client:
        while time.monotonic() < deadline:
            if any(n.node_id == node_id for n in client.list_nodes().nodes):
                return
            time.sleep(0.1)
    raise AssertionError(f"node {node_id} not registered within {timeout}s")


@pytest.fixture(scope="module")
def cluster(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cli-cluster")
    prefix = f"/cli-{uuid.uuid4().hex[:8]}/"
    group = CoordinatorGroup(etcd.endpoints, workdir, 2, prefix=prefix)
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    node_id = "cli-cluster-node"
    node = NodeProcess(
        cache, workdir / "node.log",
        "--etcd", ",".join(etcd.endpoints), "--artifacts", str(workdir / "artifacts"), "--prefix", prefix,
        node_id=node_id,
    )  # fmt: skip
    try:
        group.wait_started()
        leader, _, _ = group.wait_leader(15.0)
        standby = next(p for p in group.procs if p is not leader)
        node.wait_serving()
        made = Cluster(leader, standby, node_id, workdir)
        wait_node_listed(made.targets, node_id)
        yield made
    finally:
        node.stop()
        group.stop_all()


@dataclass(frozen=True)
class Generated:
    done: subprocess.CompletedProcess[str]
    job_id: str
    output: Path


@pytest.fixture(scope="module")
def generated(cluster: Cluster) -> Generated:
    cwd = cluster.workdir
    (cwd / "in.png").write_bytes(png())
    done = i2v(
        "generate", "in.png", "--prompt", "a gradient", "--frames", "3", "--width", "64", "--height", "72",
        "--steps", "2", "--seed", "5", "--fps", "6", "--target", cluster.targets, "-o", "out/clip.mp4",
        cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stderr}\n--- leader log\n{cluster.leader.log()}"
    found = re.search(r"^job (\w+)$", done.stdout, re.MULTILINE)
    assert found, done.stdout
    return Generated(done, found.group(1), cwd / "out" / "clip.mp4")


def test_generate_through_the_coordinators_writes_the_exact_video(generated: Generated) -> None:
    assert decode(generated.output.read_bytes()) == (3, 6.0, 64, 72)
    out = generated.done.stdout
    assert f"wrote out{os.sep}clip.mp4: 3 frames 64x72 @ 6 fps" in out
    assert "seed 5, 2 steps" in out and "tier cpu" in out
    assert "queued" in generated.done.stderr and "denoise" in generated.done.stderr  # progress lines


def test_status_shows_the_leader_and_the_node(cluster: Cluster, generated: Generated) -> None:
    done = i2v("status", "--target", cluster.standby.address, cwd=cluster.workdir)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"leader {cluster.leader.member_id} at {cluster.leader.address}")
    assert f"answered by {cluster.standby.member_id}" in first
    assert "nodes: cpu 1" in done.stdout
    assert cluster.node_id in done.stdout and "tiny" in done.stdout


def test_jobs_from_the_environment_lists_the_job_succeeded(cluster: Cluster, generated: Generated) -> None:
    # Only the standby is named: any coordinator answers ListJobs.
    done = i2v("jobs", "--state", "succeeded,failed", cwd=cluster.workdir, targets=cluster.standby.address)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith(generated.job_id))
    assert row.split()[1:4] == ["succeeded", "1", cluster.node_id]
    assert row.split()[-1].startswith("file://") and row.split()[-1].endswith(".mp4")
    none = i2v("jobs", "--state", "queued", "--target", cluster.targets, cwd=cluster.workdir)
    assert none.returncode == 0 and none.stdout.strip() == "no jobs"


def test_get_shows_what_was_produced(cluster: Cluster, generated: Generated) -> None:
    done = i2v("get", generated.job_id, "--target", cluster.targets, cwd=cluster.workdir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{generated.job_id} succeeded attempt 1 on {cluster.node_id}")
    assert lines[1].startswith("video: file://")
    assert lines[2].startswith("produced: 3 frames 64x72 @ 6 fps, 2 steps, seed 5")


def test_get_with_an_output_downloads_the_video_from_a_standby(
    cluster: Cluster, generated: Generated
) -> None:
    done = i2v(
        "get", generated.job_id, "-o", "again.mp4", "--target", cluster.standby.address, cwd=cluster.workdir
    )
    assert done.returncode == 0, done.stderr
    again = (cluster.workdir / "again.mp4").read_bytes()
    assert again == generated.output.read_bytes()
    assert f"wrote again.mp4: {len(again)} bytes, sha256 " in done.stdout.splitlines()[-1]


def test_cancel_of_a_finished_job_says_why_not(cluster: Cluster, generated: Generated) -> None:
    done = i2v("cancel", generated.job_id, "--target", cluster.targets, cwd=cluster.workdir)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(
        f"error: FAILED_PRECONDITION: job {generated.job_id} already SUCCEEDED (attempt 1); "
        "there is nothing to cancel"
    )


def test_unknown_job_is_not_found(cluster: Cluster) -> None:
    done = i2v("get", "no-such-job", "--target", cluster.targets, cwd=cluster.workdir)
    assert done.returncode == 1 and done.stderr.startswith("error: NOT_FOUND: no job 'no-such-job'")
