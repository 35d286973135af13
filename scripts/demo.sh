#!/usr/bin/env bash
# Offline demo: set up, start a node on the tiny model, generate ./out/demo.mp4 from a gradient
# image, print its frame count and fps, stop the node. Exits non-zero if any step fails.
#
# I2V_SKIP_SETUP=1 skips scripts/setup.sh (an already set-up checkout).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[[ "${I2V_SKIP_SETUP:-}" == 1 ]] || scripts/setup.sh
export HF_HUB_OFFLINE=1
py=.venv/bin/python
# shellcheck source=scripts/demo_common.sh
source scripts/demo_common.sh
port="$(free_port)"
mport="$(free_port)"
mkdir -p out
log="out/demo-node.log"

.venv/bin/i2v-node --model tiny --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
  --node-id demo >"$log" 2>&1 &
node_pid=$!
stop_node() {
  if kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid"
    wait "$node_pid" || true
  fi
}
trap stop_node EXIT

echo "waiting for the node on 127.0.0.1:$port (log: $log)"
"$py" - "$port" "$node_pid" <<'EOF'
import os, sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

port, pid = sys.argv[1], int(sys.argv[2])
stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("node exited before serving; see its log")
    try:
        if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
            sys.exit(0)
    except grpc.RpcError:
        pass
    time.sleep(0.2)
sys.exit("node did not become SERVING within 180 s")
EOF

write_gradient out/demo-input.png

.venv/bin/i2v generate out/demo-input.png --prompt "a gradient drifting to the right" \
  --frames 8 --width 64 --height 64 --steps 10 --seed 42 --fps 8 \
  --node "127.0.0.1:$port" -o out/demo.mp4

check_mp4 out/demo.mp4

stop_node
trap - EXIT
echo "demo done"
