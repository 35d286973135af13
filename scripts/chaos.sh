#!/usr/bin/env bash
# The full count of the cluster failure tests (CI runs each scenario once with a short etcd outage):
# every scenario I2V_CHAOS_RUNS times (default 20), a 30 s quorum loss, a 20,000-submit burst
# (I2V_CHAOS_BURST; CI: 5,000), failover over 50,000 finished jobs (I2V_CHAOS_FILLED; CI: 10,000)
# and a leader SIGSTOPped for 45 s under two clients (I2V_CHAOS_PAUSE_S; CI: 15).
# Extra arguments go to pytest (e.g. scripts/chaos.sh -k quorum). Prints the measured
# `chaos-figure` lines at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export HF_HUB_OFFLINE=1
export I2V_CHAOS_RUNS="${I2V_CHAOS_RUNS:-20}"
export I2V_CHAOS_QUORUM_S="${I2V_CHAOS_QUORUM_S:-30}"
export I2V_CHAOS_BURST="${I2V_CHAOS_BURST:-20000}"
export I2V_CHAOS_FILLED="${I2V_CHAOS_FILLED:-50000}"
export I2V_CHAOS_PAUSE_S="${I2V_CHAOS_PAUSE_S:-45}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
.venv/bin/pytest -m chaos -s -p no:cacheprovider tests/chaos "$@" | tee "$log" || status=$?
echo
echo "figures over ${I2V_CHAOS_RUNS} runs per scenario:"
grep -o 'chaos-figure.*' "$log" || echo "(none: no scenario finished)"
exit "$status"
