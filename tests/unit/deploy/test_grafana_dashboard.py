"""The Grafana dashboard is generated: deploy/grafana/i2v-cluster.json is exactly what
deploy/grafana/dashboard.py writes, its panels name the metrics they show, and (with promtool) every
query parses as PromQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy" / "grafana"
COMMITTED = GRAFANA / "i2v-cluster.json"


def dashboard_module():  # type: ignore[no-untyped-def]
    pytest.importorskip("grafanalib", reason="grafanalib is not installed (pip install -e '.[dev]')")
    sys.path.insert(0, str(GRAFANA))
    try:
        import dashboard
    finally:
        sys.path.remove(str(GRAFANA))
    return dashboard


def exprs() -> list[str]:
    panels = json.loads(COMMITTED.read_text())["panels"]
    return [target["expr"] for p in panels for target in p.get("targets", [])]


def test_the_committed_json_is_what_the_source_generates() -> None:
    assert COMMITTED.read_text() == dashboard_module().render(), "run python deploy/grafana/dashboard.py"


def test_the_dashboard_covers_what_operators_look_at() -> None:
    text = "\n".join(exprs())
    for metric in (
        "i2v_gpu_memory_used_bytes",
        "i2v_coordinator_node_free_bytes",
        "i2v_coordinator_queued_jobs",
        "i2v_queue_wait_seconds_bucket",
        "i2v_generation_duration_seconds_bucket",
        "i2v_oom_total",
        "i2v_degradations_total",
        "i2v_coordinator_is_leader",
        "i2v_coordinator_epoch",
        "i2v_coordinator_nodes_set_aside",
    ):
        assert metric in text, metric
    panels = json.loads(COMMITTED.read_text())["panels"]
    assert {p["type"] for p in panels} >= {"row", "timeseries", "heatmap"}
    assert len({p["id"] for p in panels}) == len(panels)


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)"
)
def test_every_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
