"""A client in another language against a real cluster: the Node.js client in tests/interop/node,
built from the .proto files alone with grpc-js's default channel settings (a 4 MiB receive limit),
talks to etcd, two `i2v-coordinator` processes and one tiny `i2v-node`.

It submits a 512x512 x 32-frame job, whose MP4 (about 4.3 MB of the tiny model's noise) is over that
limit, to the standby first (and follows its leader hint), watches it to the end and downloads the
video through Download, checking size and sha256. One denoising step keeps the job's CPU time
down; the size of the video is what matters. Needs `node` and `npm` (the test runs `npm ci`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from i2v_client import CoordinatorClient
from tests.chaos.coordinator_procs import CoordinatorGroup
from tests.etcd_cluster import EtcdCluster
from tests.integration.node_process import ROOT, NodeProcess
from tests.media import decode, png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CLIENT_DIR = ROOT / "tests" / "interop" / "node"
GRPC_DEFAULT_MAX = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The client's script, its pinned packages installed (npm ci, from package-lock.json)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install nodejs npm)")
    done = subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(CLIENT_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return CLIENT_DIR / "client.mjs"


@pytest.fixture(scope="module")
def cluster(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(targets, standby first; the artifact store's folder)."""
    workdir = tmp_path_factory.mktemp("interop")
    prefix = f"/interop-{uuid.uuid4().hex[:8]}/"
    group = CoordinatorGroup(etcd.endpoints, workdir, 2, prefix=prefix)
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    node = NodeProcess(
        cache, workdir / "node.log",
        "--etcd", ",".join(etcd.endpoints), "--artifacts", str(workdir / "artifacts"), "--prefix", prefix,
        node_id="interop-node",
    )  # fmt: skip
    try:
        group.wait_started()
        leader, _, _ = group.wait_leader(15.0)
        standby = next(p for p in group.procs if p is not leader)
        node.wait_serving()
        targets = f"{standby.address},{leader.address}"
        with CoordinatorClient(targets) as client:
            deadline = time.monotonic() + 60
            while not client.list_nodes().nodes:
                assert time.monotonic() < deadline, f"node not registered:\n{node.log()}"
                time.sleep(0.1)
        yield targets, workdir / "artifacts"
    finally:
        node.stop()
        group.stop_all()


def test_a_node_js_client_with_default_settings_generates_and_downloads_a_large_video(
    node_client: Path, cluster: tuple[str, Path], tmp_path: Path
) -> None:
    targets, store = cluster
    (tmp_path / "in.png").write_bytes(png(512, 512))
    out = tmp_path / "out.mp4"
    args = ["node", str(node_client), "--target", targets, "--image", str(tmp_path / "in.png")]
    args += ["--out", str(out), "--width", "512", "--height", "512", "--frames", "32", "--steps", "1"]
    args += ["--request-id", "interop-1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    got = json.loads(done.stdout.strip().splitlines()[-1])
    video = out.read_bytes()
    stored = (store / "jobs" / "interop-1" / "attempt-1.mp4").read_bytes()
    assert video == stored and got["size"] == len(video) == got["result_video_size"]
    assert got["sha256"] == hashlib.sha256(video).hexdigest() and got["mime_type"] == "video/mp4"
    assert len(video) > GRPC_DEFAULT_MAX  # the size one Generate message could not carry to this client
    assert got["largest_piece"] <= 1024 * 1024
    assert decode(video) == (32, 8.0, 512, 512)
    rate = f"{got['mib_per_s']:.0f} MiB/s"
    print(f"interop-figure node.js download: {len(video)} bytes in {got['seconds']:.3f} s ({rate})")
