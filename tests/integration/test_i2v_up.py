"""`i2v up --detach` for real: etcd, two coordinators, the HTTP gateway, three tiny CPU nodes on
simulated VRAM tiers and Prometheus (when installed) on free loopback ports; the first video,
`i2v status` against it, the gateway's page and cluster view, a second `up` refused, then
`i2v down` leaves none of the recorded processes running."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from i2v_client.local import state
from tests.etcd_cluster import etcd_binary
from tests.media import decode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
BIN = Path(sys.executable).parent
UP_TIMEOUT_S = 180


@pytest.fixture
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if etcd_binary() is None:
        pytest.skip("etcd binary not found (install etcd or set ETCD_BIN)")
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other tests' tiny model
    cache.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("I2V_TARGETS", "I2V_STATE_DIR")}
    return {**env, "I2V_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def i2v(env: dict[str, str], cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "i2v"), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


@pytest.fixture
def workdir(tmp_path: Path, env: dict[str, str]) -> Iterator[Path]:
    yield tmp_path
    record = state.read(tmp_path / ".i2v")
    for proc in record.procs if record else []:  # a failed test still leaves nothing behind
        if proc.alive():
            os.kill(proc.pid, signal.SIGKILL)


def test_up_detached_makes_a_video_serves_status_and_down_leaves_nothing(
    workdir: Path, env: dict[str, str]
) -> None:
    began = time.monotonic()
    up = i2v(env, workdir, "up", "--detach", "--device", "cpu", timeout=UP_TIMEOUT_S)
    took = time.monotonic() - began
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    root = workdir / ".i2v"
    record = state.read(root)
    assert record is not None and record.ready and record.detached
    assert not record.supervisor.alive(), "--detach returned"

    video = root / "first.mp4"
    assert decode(video.read_bytes()) == (8, 8.0, 64, 64)
    assert "first video: .i2v/first.mp4 (64x64, 8 frames, 10 steps)" in up.stdout
    names = {p.name for p in record.procs}
    assert {"etcd", "c1", "c2", "n1-10g", "n2-14g", "n3-20g"} <= names
    assert all(p.alive() for p in record.procs)
    targets = ",".join(record.targets)
    assert f"i2v status --target {targets}" in up.stdout and "i2v down" in up.stdout

    status = i2v(env, workdir, "status", "--target", targets)
    assert status.returncode == 0, status.stderr
    for node, tier in (("n1-10g", "lt12"), ("n2-14g", "12-16"), ("n3-20g", "16-24")):
        assert any(line.split()[:1] == [node] and tier in line.split() for line in status.stdout.splitlines())
    assert "leader c" in status.stdout

    # the printed generate command works as printed (only the path to i2v may differ)
    (line,) = [x for x in up.stdout.splitlines() if " generate " in x]
    made = i2v(env, workdir, *shlex.split(line)[1:], timeout=120)
    assert made.returncode == 0, made.stderr
    assert decode((workdir / "out.mp4").read_bytes()) == (8, 8.0, 64, 64)

    # the gateway: its URL printed, the page and the API answering, the cluster seen through it
    (gateway,) = [p for p in record.procs if p.name == "gateway"]
    assert f"web page: {gateway.addr}/" in up.stdout
    with urllib.request.urlopen(f"{gateway.addr}/v1/cluster", timeout=10) as r:
        seen = json.load(r)
    assert {n["id"] for n in seen["nodes"]} == {"n1-10g", "n2-14g", "n3-20g"} and seen["leader"]["id"]
    with urllib.request.urlopen(f"{gateway.addr}/", timeout=10) as r:
        assert r.status == 200 and "text/html" in r.headers["content-type"]

    if "prometheus" in names:
        url = next(p.addr for p in record.procs if p.name == "prometheus")
        with urllib.request.urlopen(f"{url}/api/v1/targets", timeout=5) as r:
            active = json.load(r)["data"]["activeTargets"]
        assert {t["labels"]["name"] for t in active} == names - {"prometheus"}

    again = i2v(env, workdir, "up", "--detach")
    assert again.returncode == 1 and "a local cluster is already running from .i2v" in again.stderr

    down = i2v(env, workdir, "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [p.name for p in record.procs if p.alive()] == []
    assert state.read(root) is None
    order = [line.split()[0] for line in down.stdout.splitlines() if line.startswith("  ")]
    assert order[:3] == ["n1-10g", "n2-14g", "n3-20g"] and order[-1] == "etcd"
    print(f"i2v up --detach took {took:.1f} s; {record.timings}")
