#!/usr/bin/env bash
# The hostile-input suite (tests/hostile) against real servers: etcd, two coordinators, a tiny node.
#   scripts/hostile.sh [EXAMPLES] [pytest args]   EXAMPLES per property test (default 1000; CI: 200)
# The outcome counts by status code are printed and written to hostile-report.json (or $I2V_HOSTILE_REPORT).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE=1
export I2V_HOSTILE_EXAMPLES="${1:-1000}"
shift || true
export I2V_HOSTILE_REPORT="${I2V_HOSTILE_REPORT:-$root/hostile-report.json}"
pytest -q tests/hostile -p no:cacheprovider --timeout=3600 "$@"
echo "report: $I2V_HOSTILE_REPORT"
