#!/usr/bin/env bash
# Fills the GPU kit's wheel folder ($I2V_WHEELS, default .wheels/, git-ignored) with what the lent
# CUDA host lacks, for Python 3.12 manylinux x86-64, so scripts/gpu_check.sh installs it offline.
# Run where the package registries are reachable; prints the total (it travels with the working
# tree, 64 MiB in all): about 55 MiB, av alone 34.
#
# The host has Python 3.12, torch 2.11+cu130, transformers, accelerate, grpcio, prometheus-client and
# nvidia-ml-py, but not diffusers, av or aetcd. Also fetched: their dependencies that neither torch
# nor transformers pulls in (Pillow, protobuf, importlib-metadata, zipp; requests, which diffusers
# imports at start but a huggingface-hub 1.x stack no longer brings), the gRPC health and
# reflection services, grpcio-status (rich error details) with the google.rpc messages it needs,
# and grpcio itself in case the host's is older than our stubs need (1.85.1).
# I2V_WHEELS_SKIP="grpcio pillow" leaves out what the host is known to have (7 MiB each).
# Versions are the ones the project's tests run with.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${I2V_WHEELS:-$root/.wheels}"
py="${PYTHON:-python3}"
wanted=(
  diffusers==0.42.1 av==18.1.0 aetcd==1.0.0 pillow==13.0.0 protobuf==7.36.2
  importlib-metadata==10.2.0 zipp==4.1.2
  requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1 charset-normalizer==3.5.3
  grpcio==1.85.1 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1
  grpcio-status==1.85.1 googleapis-common-protos==1.76.0
)
packages=()
for spec in "${wanted[@]}"; do
  [[ " ${I2V_WHEELS_SKIP:-} " == *" ${spec%%==*} "* ]] || packages+=("$spec")
done
mkdir -p "$dir"
"$py" -m pip download -q --dest "$dir" --only-binary=:all: --no-deps \
  --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  "${packages[@]}"
ls -l "$dir"
total="$(du -cb "$dir"/*.whl | tail -1 | cut -f1)"
echo "total: $((total / 1024 / 1024)) MiB in $dir"
if ((total > 60 * 1024 * 1024)); then
  echo "too large to travel with the working tree (64 MiB in all)" >&2
  exit 1
fi
