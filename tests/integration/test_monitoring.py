"""Monitoring against real processes: etcd, one `i2v-coordinator`, a tiny `i2v-node` in the cluster
on a simulated 14 GiB card and a standalone CPU node, one video generated through the coordinator.

Every metric the alert rules (deploy/prometheus/rules.yml) and the dashboard
(deploy/grafana/i2v-cluster.json) use is exported by these processes; `promtool check metrics` is
clean on every /metrics; a simulated card's used memory moves with a running job; a real
Prometheus (Debian's /usr/bin/prometheus) scrapes the cluster every second, loads the rules, and
its query API returns node and coordinator series, memory included. And a coordinator that cannot
reach etcd logs one short line for its repeated failures, and says so in its metrics.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from i2v_client import CoordinatorClient, build_request
from tests.chaos.coordinator_procs import CoordinatorProcess
from tests.etcd_cluster import EtcdCluster, free_port
from tests.integration.node_process import NodeProcess, metric_value
from tests.media import png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "i2v-cluster.json"
NODE_ID = "mon-node"
# Metric names of ours and of prometheus_client's process and platform collectors.
METRIC = re.compile(r"\b(?:i2v|process|python)_[a-z0-9_]+\b")


@dataclass
class Cluster:
    coordinator: CoordinatorProcess
    node: NodeProcess
    cpu_node: NodeProcess
    workdir: Path

    def scrapes(self) -> dict[str, str]:
        return {
            "coordinator": _get(f"http://127.0.0.1:{self.coordinator.metrics_port}/metrics"),
            "node": self.node.metrics(),
            "cpu-node": self.cpu_node.metrics(),
        }


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body: bytes = r.read()
    return body.decode()


def wait_for(what: str, check: Callable[[], bool], timeout: float, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(poll_s)


def exported(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def referenced() -> dict[str, set[str]]:
    """Metric names each monitoring source uses."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = "\n".join(r["expr"] for g in groups for r in g["rules"])
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = "\n".join(t["expr"] for p in panels for t in p.get("targets", []))
    return {"rules": set(METRIC.findall(rules)), "dashboard": set(METRIC.findall(queries))}


def request(steps: int) -> Any:
    return build_request(
        png(), prompt="a gradient", width=64, height=64, frames=4, steps=steps, fps=4, seed=5
    )


@pytest.fixture(scope="module")
def cluster(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("monitoring")
    prefix = f"/mon-{uuid.uuid4().hex[:8]}/"
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    cache.mkdir(exist_ok=True)
    coordinator = CoordinatorProcess(etcd.endpoints, workdir, "mon-c0", prefix=prefix)
    node = NodeProcess(
        cache, workdir / "node.log",
        "--etcd", ",".join(etcd.endpoints), "--artifacts", str(workdir / "artifacts"), "--prefix", prefix,
        "--simulate-free-vram", "14GiB",
        node_id=NODE_ID,
    )  # fmt: skip
    cpu_node = NodeProcess(cache, workdir / "cpu-node.log", node_id="mon-cpu")
    try:
        coordinator.wait_started()
        node.wait_serving()
        cpu_node.wait_serving()
        with CoordinatorClient(coordinator.address) as client:
            wait_for(
                "node registered",
                lambda: any(n.node_id == NODE_ID for n in client.list_nodes().nodes),
                timeout=60,
            )
            final = client.generate(request(steps=2), timeout=60)
        assert final.HasField("result"), f"{final}\n{coordinator.log()}"
        yield Cluster(coordinator, node, cpu_node, workdir)
    finally:
        cpu_node.stop()
        node.stop()
        coordinator.stop()


def test_every_metric_the_rules_and_the_dashboard_use_is_exported(cluster: Cluster) -> None:
    names = set().union(*(exported(text) for text in cluster.scrapes().values()))
    for source, used in referenced().items():
        assert used, source
        missing = sorted(used - names)
        assert not missing, f"{source} uses metrics no process exports: {missing}"


def test_one_video_shows_in_both_processes_metrics(cluster: Cluster) -> None:
    # A server counts a stream once its handler returns, which may be just after the caller saw
    # the last message; a caller that hangs up at once makes it CANCELLED rather than OK.
    def both_streams_counted() -> bool:
        return all(
            sum(
                metric_value(text, "i2v_rpc_handled_total", method="Generate", code=c)
                for c in ("OK", "CANCELLED")
            )
            == 1
            for name, text in cluster.scrapes().items()
            if name != "cpu-node"
        )

    wait_for("both Generate streams counted", both_streams_counted, 10)
    scrapes = cluster.scrapes()
    c, n, cpu = scrapes["coordinator"], scrapes["node"], scrapes["cpu-node"]
    assert metric_value(c, "i2v_coordinator_jobs_finished_total", state="succeeded", code="OK") == 1
    assert metric_value(c, "i2v_coordinator_node_free_bytes", node=NODE_ID, tier="12-16") == 14 * 1024**3
    assert metric_value(c, "i2v_build_info", component="coordinator") == 1
    assert metric_value(c, "i2v_etcd_up") == 1 and metric_value(n, "i2v_etcd_up") == 1
    assert metric_value(n, "i2v_generation_duration_seconds_count", resolution="512p", tier="12-16") == 1
    assert metric_value(n, "i2v_gpu_memory_total_bytes", gpu="simulated") == 14 * 1024**3
    assert metric_value(cpu, "i2v_host_memory_total_bytes") > 0
    assert metric_value(cpu, "i2v_node_memory_available_bytes", device="cpu", kind="host") > 0
    assert "i2v_etcd_up" not in cpu  # a node without --etcd has no etcd to alert on
    for text in scrapes.values():
        assert metric_value(text, "process_resident_memory_bytes") > 0


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)"
)
def test_promtool_check_metrics_is_clean(cluster: Cluster) -> None:
    for name, text in cluster.scrapes().items():
        done = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
            name,
            done.stdout + done.stderr,
        )


def test_a_simulated_card_s_used_memory_moves_with_the_running_job(cluster: Cluster) -> None:
    def used() -> float:
        return metric_value(cluster.node.metrics(), "i2v_gpu_memory_used_bytes", gpu="simulated")

    assert used() == 0
    outcome: dict[str, Any] = {}

    def run() -> None:
        with CoordinatorClient(cluster.coordinator.address) as client:
            outcome["final"] = client.generate(request(steps=150), timeout=90)

    job = threading.Thread(target=run, daemon=True)
    job.start()
    seen: list[float] = []
    wait_for("used memory above 0 while the job runs", lambda: seen.append(used()) or seen[-1] > 0, 60, 0.05)
    estimate = metric_value(cluster.node.metrics(), "i2v_node_running_job_estimated_bytes")
    assert 0 < seen[-1] <= estimate
    job.join(90)
    assert outcome["final"].HasField("result")
    wait_for("used memory back to 0", lambda: used() == 0, 10)


# ---- a real Prometheus ----


@pytest.fixture(scope="module")
def prometheus(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    workdir = tmp_path_factory.mktemp("prometheus")
    shutil.copy(RULES, workdir / "rules.yml")
    targets = {
        "i2v-coordinator": [f"127.0.0.1:{cluster.coordinator.metrics_port}"],
        "i2v-node": [f"127.0.0.1:{cluster.node.metrics_port}", f"127.0.0.1:{cluster.cpu_node.metrics_port}"],
    }
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": addrs}]} for job, addrs in targets.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("prometheus ready", lambda: _ready(url, proc, workdir), 30)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def _ready(url: str, proc: subprocess.Popen[bytes], workdir: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(
            f"prometheus exited {proc.returncode}:\n{(workdir / 'prometheus.log').read_text()}"
        )
    try:
        return "Ready" in _get(f"{url}/-/ready", timeout=1)
    except OSError:
        return False


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = json.loads(_get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"))
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_the_cluster_and_loads_the_rules(cluster: Cluster, prometheus: str) -> None:
    wait_for("every target up", lambda: len(query(prometheus, "up == 1")) == 3, 30)
    series = {
        "i2v_gpu_memory_total_bytes": {"job": "i2v-node", "gpu": "simulated"},
        "i2v_host_memory_used_bytes": {"job": "i2v-node"},
        "i2v_node_memory_available_bytes": {"job": "i2v-node"},
        "i2v_coordinator_node_free_bytes": {"job": "i2v-coordinator", "node": NODE_ID},
        "i2v_coordinator_jobs_finished_total": {"job": "i2v-coordinator", "state": "succeeded"},
        "i2v_generation_duration_seconds_count": {"job": "i2v-node", "resolution": "512p"},
        "i2v_coordinator_is_leader": {"job": "i2v-coordinator"},
        "i2v_build_info": {"job": "i2v-node"},
    }
    for name, labels in series.items():
        found = query(prometheus, name)
        assert any(labels.items() <= r["metric"].items() for r in found), (name, found)
    assert (
        float(query(prometheus, 'i2v_coordinator_jobs_finished_total{state="succeeded"}')[0]["value"][1]) >= 1
    )

    def evaluated() -> bool:
        groups = json.loads(_get(f"{prometheus}/api/v1/rules"))["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r.get("lastEvaluation", "").startswith("20") for r in rules)

    wait_for("every rule evaluated", evaluated, 15)
    groups = json.loads(_get(f"{prometheus}/api/v1/rules"))["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert not firing & {"I2VNoLeader", "I2VEtcdUnreachable", "I2VNoNodesRegistered"}, firing


def test_a_coordinator_that_cannot_reach_etcd_logs_one_short_line(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there: every attempt is refused
    proc = CoordinatorProcess([closed], tmp_path, "no-etcd")
    try:
        wait_for("an etcd warning", lambda: "etcd unreachable" in proc.log(), 20)
        time.sleep(5.0)  # two more start attempts, each retried for 1.5 s
        assert proc.alive()
        # Its /metrics says so meanwhile.
        text = _get(f"http://127.0.0.1:{proc.metrics_port}/metrics")
        assert (
            metric_value(text, "i2v_etcd_up") == 0
            and metric_value(text, "i2v_etcd_errors_total", op="get") >= 2
        )
    finally:
        proc.stop()
    lines = proc.log_path.read_text().splitlines()
    warnings = [line for line in lines if " WARNING " in line and "etcd unreachable" in line]
    assert len(warnings) == 1, warnings  # the repeats are held back for a minute
    assert all(len(line) < 1100 for line in lines), max(lines, key=len)
    assert "Connection refused" in warnings[0] and "times)" in warnings[0]
