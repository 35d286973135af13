"""The alert rules have one source: the Kubernetes PrometheusRule is generated from
deploy/prometheus/rules.yml, rule for rule; promtool (when installed) checks both and runs the unit
tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))
import gen_prometheusrule  # noqa: E402

PROMETHEUS = ROOT / "deploy" / "prometheus"


def test_the_prometheusrule_is_generated_from_the_rules_file() -> None:
    committed = gen_prometheusrule.TARGET.read_text()
    assert committed == gen_prometheusrule.render(gen_prometheusrule.RULES.read_text()), (
        "run python deploy/tools/gen_prometheusrule.py"
    )
    rule = yaml.safe_load(committed)
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(gen_prometheusrule.RULES.read_text())["groups"]


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "rules.test.yml").read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if not c["exp_alerts"]}
    assert alerts == fired, f"alerts without a firing test: {sorted(alerts - fired)}"
    assert alerts == quiet, f"alerts without a test where they must not fire: {sorted(alerts - quiet)}"


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)"
)
def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "rules.test.yml"]):
        done = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
