"""The `i2v` CLI against a real cluster: etcd, two `i2v-coordinator` processes, one tiny `i2v-node`.

One generation runs through the coordinators (module fixture); the other commands then look at
it. `jobs` asks the standby, which answers from etcd.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from i2v_client import CoordinatorClient
from i2v_contract.wire import coordinator_pb2
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdCluster, free_port
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
    # Only the standby is named: any coordinator answers ListJobs. --wide: every column, unshortened
    # (the line form `jobs` printed before its default became an 80-column table).
    wide = i2v(
        "jobs", "--state", "succeeded,failed", "--wide", cwd=cluster.workdir, targets=cluster.standby.address
    )
    assert wide.returncode == 0, wide.stderr
    row = next(line for line in wide.stdout.splitlines() if line.startswith(generated.job_id))
    assert row.split()[1:4] == ["succeeded", "1", cluster.node_id]
    assert row.split()[-1].startswith("file://") and row.split()[-1].endswith(".mp4")
    # The default table fits 80 columns: the id whole, the URI down to its recognisable end.
    done = i2v("jobs", "--state", "succeeded,failed", cwd=cluster.workdir, targets=cluster.standby.address)
    assert done.returncode == 0 and max(map(len, done.stdout.splitlines())) <= 80, done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith(generated.job_id))
    assert row.split()[1:4] == ["succeeded", "1", cluster.node_id] and row.endswith(".mp4")
    listed = json.loads(i2v("jobs", "--json", "--target", cluster.targets, cwd=cluster.workdir).stdout)
    assert generated.job_id in [job["job_id"] for job in listed["items"]]
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


# --- fail fast, tell the truth, against the real servers ---------------------------------------------


def test_node_flag_at_a_coordinator_says_it_is_one(cluster: Cluster) -> None:
    (cluster.workdir / "in.png").write_bytes(png())
    address = cluster.leader.address
    started = time.monotonic()
    done = i2v("generate", "in.png", "--prompt", "p", "--node", address, "-o", "x.mp4", cwd=cluster.workdir)
    assert done.returncode == 2 and time.monotonic() - started < 5.0
    assert (
        done.stderr.splitlines()[-1]
        == f"error: {address} is a coordinator, not a node: use --target {address}"
    )
    assert not (cluster.workdir / "x.mp4").exists()


def test_an_unreachable_coordinator_is_reported_at_once_naming_it(cluster: Cluster) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = i2v("status", "--target", address, cwd=cluster.workdir)
    took = time.monotonic() - started
    assert done.returncode == 1 and took < 3.0, took
    assert done.stderr == (
        f"error: UNAVAILABLE: cluster status: cannot reach any coordinator: {address} "
        "refused the connection\n"
    )


def _job_id(stderr: str) -> str:
    found = re.search(r"job (\w+)", stderr)
    assert found, stderr
    return found.group(1)


def _wait_running(cluster: Cluster, timeout: float = 60.0) -> str:
    """The id of the job that runs now."""
    deadline = time.monotonic() + timeout
    with CoordinatorClient(cluster.targets) as client:
        while time.monotonic() < deadline:
            running = client.list_jobs(states=[coordinator_pb2.JOB_STATE_RUNNING]).jobs
            if running:
                return running[0].job_id
            time.sleep(0.1)
    raise AssertionError(f"no job running within {timeout}s")


def test_timeout_while_queued_and_ctrl_c_that_cancels(cluster: Cluster) -> None:
    cwd = cluster.workdir
    (cwd / "in.png").write_bytes(png())
    env = node_env(cwd)
    env.pop("I2V_TARGETS", None)
    long_job = ["generate", "in.png", "--prompt", "long", "--frames", "32", "--width", "64", "--height", "64",
                "--steps", "200", "--target", cluster.targets, "-o", "out/long.mp4"]  # fmt: skip
    running = subprocess.Popen([str(BIN / "i2v"), *long_job], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        first = _wait_running(cluster)
        # The node is busy: this one waits in the queue, and --timeout holds there.
        started = time.monotonic()
        queued = i2v("generate", "in.png", "--prompt", "queued", "--steps", "2", "--frames", "2", "--width",
                     "64", "--height", "64", "--timeout", "2", "--target", cluster.targets, "-o", "out/q.mp4",
                     cwd=cwd)  # fmt: skip
        took = time.monotonic() - started
        assert queued.returncode == 1 and 2.0 <= took < 5.0, (took, queued.stderr)
        last = queued.stderr.splitlines()[-1]
        assert (
            last.startswith("error: DEADLINE_EXCEEDED: job ")
            and "while it was queued; the job goes on" in last
        )
        second = _job_id(last)
        cancelled = i2v("cancel", second, "--target", cluster.targets, cwd=cwd)
        assert cancelled.returncode == 0 and cancelled.stdout.startswith(f"{second} cancelled"), (
            cancelled.stderr
        )
        # Ctrl-C cancels the running job and says so plainly.
        running.send_signal(signal.SIGINT)
        _, stderr = running.communicate(timeout=60)
        assert running.returncode == 130, stderr
        assert stderr.splitlines()[-1] == f"interrupted: job {first} was cancelled"
        got = i2v("get", first, "--target", cluster.targets, cwd=cwd)
        assert got.stdout.startswith(f"{first} cancelled")
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()


def test_a_failed_write_names_the_command_that_fetches_the_video_again(cluster: Cluster) -> None:
    cwd = cluster.workdir
    (cwd / "in.png").write_bytes(png())
    done = i2v("generate", "in.png", "--prompt", "full disk", "--steps", "2", "--frames", "2", "--width",
               "64", "--height", "64", "--target", cluster.targets, "-o", "/dev/full", cwd=cwd)  # fmt: skip
    assert done.returncode == 2
    last = done.stderr.splitlines()[-1]
    assert last.startswith("error: cannot write /dev/full: No space left on device; job ")
    command, get, job_id, o, path, *where = last.rpartition(" keeps the video: ")[2].split()
    assert (command, get, o, path, where) == ("i2v", "get", "-o", "/dev/full", ["--target", cluster.targets])
    again = i2v("get", job_id, "-o", "out/again.mp4", *where, cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert decode((cwd / "out" / "again.mp4").read_bytes())[0] == 2


def _health(address: str, service: str) -> str:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_health_tells_alive_from_leading(cluster: Cluster) -> None:
    for proc in (cluster.leader, cluster.standby):
        assert _health(proc.address, "") == _health(proc.address, "i2v.v1.Coordinator") == "SERVING"
    assert _health(cluster.leader.address, "i2v.v1.Coordinator.Leader") == "SERVING"
    assert _health(cluster.standby.address, "i2v.v1.Coordinator.Leader") == "NOT_SERVING"


def test_status_with_etcd_stopped_names_etcd_within_seconds(etcd_alone: EtcdCluster, tmp_path: Path) -> None:
    group = CoordinatorGroup(etcd_alone.endpoints, tmp_path, 2, prefix=f"/cli-etcd-{uuid.uuid4().hex[:8]}/")
    try:
        group.wait_started()
        leader, _, _ = group.wait_leader(15.0)
        standby = next(p for p in group.procs if p is not leader)
        etcd_alone.stop(0)
        started = time.monotonic()
        done = i2v("status", "--target", f"{standby.address},{leader.address}", cwd=tmp_path)
        took = time.monotonic() - started
    finally:
        group.stop_all()
    print(f"i2v status with etcd stopped answered in {took:.2f} s")
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-2]  # the node table ("(no live nodes)") comes last
    assert last.startswith(f"etcd: etcd unreachable at {etcd_alone.endpoints[0]}"), done.stdout
    assert "the coordinator cannot read or write jobs" in last
    assert took < 10.0, f"i2v status took {took:.1f} s with etcd stopped"
