"""Write the Kubernetes PrometheusRule from deploy/prometheus/rules.yml, the one source of the alerts.

The rule groups are copied as text (comments included) under the object's `spec:`, so the two stay
the same rule for rule; tests/unit/deploy/test_prometheus_rules.py fails while they differ.

Usage: python deploy/tools/gen_prometheusrule.py [--check]   (--check: exit 1 if the file is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
TARGET = ROOT / "deploy" / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/rules.yml by deploy/tools/gen_prometheusrule.py: edit that file
# and run the script. The alerts are explained there and in docs/operations.md; their unit tests are
# deploy/prometheus/rules.test.yml (promtool test rules, run by scripts/check_deploy.sh).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: i2v-cluster
  labels:
    app.kubernetes.io/name: i2v-cluster
    app.kubernetes.io/component: monitoring
spec:
"""


def render(rules_text: str) -> str:
    """The PrometheusRule for a rules file: its `groups:` and everything after, indented under spec."""
    lines = rules_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("groups:")), None)
    if start is None:
        raise ValueError(f"{RULES.name} has no top-level 'groups:'")
    body = "".join(f"  {line}\n" if line else "\n" for line in lines[start:])
    return HEADER + body


def main(argv: list[str]) -> int:
    wanted = render(RULES.read_text())
    if argv == ["--check"]:
        if TARGET.read_text() != wanted:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    if argv:
        print(__doc__.strip().splitlines()[-1])
        return 2
    TARGET.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
