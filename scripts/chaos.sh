#!/usr/bin/env bash
# The full count of the cluster failure tests (CI runs each scenario once with a short etcd outage):
# every scenario I2V_CHAOS_RUNS times (default 20) and a 30 s quorum loss. Extra arguments go to
# pytest (e.g. scripts/chaos.sh -k quorum). Prints the measured `chaos-figure` lines at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export HF_HUB_OFFLINE=1
export I2V_CHAOS_RUNS="${I2V_CHAOS_RUNS:-20}"
export I2V_CHAOS_QUORUM_S="${I2V_CHAOS_QUORUM_S:-30}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
.venv/bin/pytest -m chaos -s -p no:cacheprovider tests/chaos "$@" | tee "$log" || status=$?
echo
echo "figures over ${I2V_CHAOS_RUNS} runs per scenario:"
grep -o 'chaos-figure.*' "$log" || echo "(none: no scenario finished)"
exit "$status"
