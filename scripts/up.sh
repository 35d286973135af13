#!/usr/bin/env bash
# The quick start: set up (scripts/setup.sh), then `i2v up`: etcd, two coordinators, nodes (one per
# CUDA device, else three tiny CPU nodes on simulated VRAM tiers) and Prometheus on this machine, a
# first video from the bundled sample image, the addresses and next commands; Ctrl-C stops it all.
# Arguments go to `i2v up` (--detach returns once the first video is made; `.venv/bin/i2v down`
# stops it then). I2V_SKIP_SETUP=1 skips scripts/setup.sh (an already set-up checkout).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[[ "${I2V_SKIP_SETUP:-}" == 1 ]] || scripts/setup.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec .venv/bin/i2v up "$@"
