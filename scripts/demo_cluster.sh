#!/usr/bin/env bash
# Offline cluster demo: one etcd, two coordinators, two tiny nodes (one plain CPU node, one that
# reports 12 GiB of free VRAM), all on free loopback ports with their data and logs in
# out/cluster-demo/. Generates out/cluster-demo.mp4 through the coordinators, prints `i2v status`
# and `i2v jobs`, kills -9 the leading coordinator, generates again through the standby, prints the
# new status, then stops everything it started (by pid) and exits 0. Every wait is bounded.
#
# I2V_SKIP_SETUP=1 skips scripts/setup.sh (an already set-up checkout).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[[ "${I2V_SKIP_SETUP:-}" == 1 ]] || scripts/setup.sh
export HF_HUB_OFFLINE=1
py=.venv/bin/python
bin=.venv/bin
dir=out/cluster-demo
rm -rf "$dir"
mkdir -p "$dir"

pids=()
stop_all() {
  local pid i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_all EXIT

# shellcheck source=scripts/demo_common.sh
source scripts/demo_common.sh

# --- etcd ---------------------------------------------------------------------------------------
etcd_port="$(free_port)"
peer_port="$(free_port)"
etcd_ep="127.0.0.1:$etcd_port"
etcd --name demo --data-dir "$dir/etcd" \
  --listen-client-urls "http://$etcd_ep" --advertise-client-urls "http://$etcd_ep" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "demo=http://127.0.0.1:$peer_port" --log-level warn \
  --auto-compaction-mode periodic --auto-compaction-retention 5m >"$dir/etcd.log" 2>&1 &
pids+=($!)
echo "etcd on $etcd_ep (pid ${pids[-1]})"
"$py" - "$etcd_ep" <<'EOF'
import sys, time, urllib.request

deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://{sys.argv[1]}/health", timeout=1) as r:
            if b'"true"' in r.read():
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("etcd not healthy within 30 s; see out/cluster-demo/etcd.log")
EOF

# --- coordinators -------------------------------------------------------------------------------
declare -A coord_addr coord_pid
for id in c1 c2; do
  port="$(free_port)"
  coord_addr[$id]="127.0.0.1:$port"
  "$bin/i2v-coordinator" --etcd "$etcd_ep" --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$(free_port)" --artifacts "$dir/artifacts" --id "$id" \
    >"$dir/$id.log" 2>&1 &
  pids+=($!)
  coord_pid[$id]=$!
  echo "coordinator $id on ${coord_addr[$id]} (pid $!)"
done
targets="${coord_addr[c1]},${coord_addr[c2]}"

# --- nodes --------------------------------------------------------------------------------------
start_node() {
  local id=$1
  shift
  "$bin/i2v-node" --model tiny --listen "127.0.0.1:$(free_port)" --metrics-listen "127.0.0.1:$(free_port)" \
    --node-id "$id" --etcd "$etcd_ep" --artifacts "$dir/artifacts" "$@" >"$dir/$id.log" 2>&1 &
  pids+=($!)
  echo "node $id (pid $!) $*"
}
start_node n1-cpu
start_node n2-12g --simulate-free-vram 12GiB

echo "waiting for a leader and both nodes idle (bounded: 180 s)"
"$py" - "$targets" "${pids[@]}" <<'EOF'
import sys, time

from i2v_client import CallError, CoordinatorClient, RetryPolicy

def alive(pid: int) -> bool:
    """Running (an exited child of the shell stays a zombie until the shell reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


targets, pids = sys.argv[1], [int(p) for p in sys.argv[2:]]
deadline = time.monotonic() + 180
with CoordinatorClient(targets, policy=RetryPolicy(reconnect_s=2.0, call_timeout_s=1.0)) as client:
    while time.monotonic() < deadline:
        for pid in pids:
            if not alive(pid):
                sys.exit(f"process {pid} exited during start-up; see the logs in out/cluster-demo/")
        try:
            nodes = client.list_nodes().nodes  # busy while the model still loads
            if client.cluster_status().leader_id and len(nodes) == 2 and not any(n.busy for n in nodes):
                sys.exit(0)
        except CallError:
            pass
        time.sleep(0.2)
sys.exit("cluster not ready within 180 s; see the logs in out/cluster-demo/")
EOF

write_gradient "$dir/input.png"

generate() {
  "$bin/i2v" generate "$dir/input.png" --prompt "a gradient drifting to the right" \
    --frames 8 --width 64 --height 64 --steps 10 --seed "$2" --fps 8 --target "$targets" -o "$1"
  check_mp4 "$1"
}

echo
echo "=== generate through the coordinators ($targets)"
generate out/cluster-demo.mp4 42
echo
echo "=== i2v status"
"$bin/i2v" status --target "$targets"
echo
echo "=== i2v jobs (a GPU-tier node is up, so jobs go there, never to the CPU node)"
"$bin/i2v" jobs --target "$targets"

leader="$("$py" -c '
import sys
from i2v_client import CoordinatorClient
with CoordinatorClient(sys.argv[1]) as c:
    print(c.cluster_status().leader_id)
' "$targets")"
echo
echo "=== kill -9 the leader $leader (pid ${coord_pid[$leader]})"
kill -KILL "${coord_pid[$leader]}"
wait "${coord_pid[$leader]}" 2>/dev/null || true
started=$(date +%s.%N)
generate "$dir/after-failover.mp4" 43
echo "second generate took $("$py" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)") s including the failover"
echo
echo "=== i2v status after the failover"
"$bin/i2v" status --target "$targets"
echo
echo "=== i2v jobs"
"$bin/i2v" jobs --target "$targets"

stop_all
trap - EXIT
echo
echo "cluster demo done (logs in $dir/)"
