#!/usr/bin/env bash
# GPU truth kit (benchmarks/gpu_check.py): measures the real CUDA paths and the memory model.
#
#   scripts/gpu_check.sh [--device cuda|cpu] [--tiny] [--budget-s S] [--parts env,build,...]
#
# Runs on the machine's own Python (PYTHON, else python3) and torch; nothing is downloaded. When a
# package the kit needs is missing or too old, it is installed from the wheels in $I2V_WHEELS
# (default .wheels/, git-ignored; fill it with scripts/gpu_wheels.sh on a machine with the package
# registries) into .wheels-site/, which goes first on PYTHONPATH. With everything importable (a dev
# .venv, CI) nothing is installed. Without --device: cuda when torch sees one, else cpu --tiny.
# Results: $OUT (else out/)/gpu_check.json, gpu_check.md, and on CUDA gpu_memory.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
wheels="${I2V_WHEELS:-$root/.wheels}"
site="$root/.wheels-site"
export PYTHONPATH="$site:$root/proto:$root/contract:$root/common:$root/client:$root/node:$root/coordinator:$root${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

# Distributions the kit needs that are missing or too old, by their wheel names.
missing="$("$py" - <<'PYEOF'
import sys
from importlib import metadata

from packaging.version import Version

NEEDED = {  # distribution: minimum version (None: any)
    # shipped in the wheel folder
    "diffusers": "0.32", "av": "12.0", "aetcd": "1.0", "pillow": "10.0", "protobuf": "6.31",
    "grpcio": "1.85.1", "grpcio-health-checking": "1.85.1", "grpcio-reflection": "1.85.1",
    "grpcio-status": "1.85.1", "googleapis-common-protos": "1.5.5",
    "importlib-metadata": None, "zipp": None,
    "requests": None, "urllib3": None, "idna": None, "certifi": None, "charset-normalizer": None,
    # the host's own (a missing one is named, there is no wheel for it)
    "transformers": "4.44", "accelerate": "1.0", "safetensors": "0.4", "prometheus-client": "0.20",
    "nvidia-ml-py": "12.0", "numpy": "1.26", "fsspec": "2024.2",
}
out = []
for name, least in NEEDED.items():
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        out.append(name)
        continue
    if least and Version(have) < Version(least):
        out.append(name)
# Declared by the diffusers wheel but not shipped (a newer hub would shadow the host's transformers'
# own pin): warn, and let the run show whether it matters.
DECLARED = {"huggingface-hub": "1.32.0", "safetensors": "0.8.0"}
for name, least in DECLARED.items():
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = "0"
    if Version(have) < Version(least):
        print(f"gpu_check: warning: {name} {have} is older than the {least} diffusers declares; trying anyway",
              file=sys.stderr)
print(" ".join(out))
PYEOF
)"
if [[ -n "$missing" ]]; then
  echo "gpu_check: missing or too old: $missing; installing from $wheels" >&2
  files=()
  for name in $missing; do
    pattern="$(echo "$name" | tr '-' '_')"
    found="$(find "$wheels" -maxdepth 1 -iname "${pattern}-*.whl" 2>/dev/null | sort | tail -1)"
    if [[ -z "$found" ]]; then
      echo "gpu_check: no wheel for $name in $wheels: fill it with scripts/gpu_wheels.sh where the registries" \
        "are reachable (it fetches what the lent host lacks; add $name there if this host lacks it too)" >&2
      exit 2
    fi
    files+=("$found")
  done
  mkdir -p "$site"
  if "$py" -m pip --version >/dev/null 2>&1; then
    "$py" -m pip install -q --no-index --no-deps --upgrade --target "$site" "${files[@]}"
  else
    # No pip: a wheel is a zip laid out for site-packages.
    for f in "${files[@]}"; do "$py" -m zipfile -e "$f" "$site"; done
  fi
fi

args=("$@")
device_given=0
for arg in "$@"; do
  [[ "$arg" == --device || "$arg" == --device=* ]] && device_given=1
done
if ((!device_given)); then
  if "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    args+=(--device cuda)
  else
    echo "gpu_check: torch sees no CUDA device: CPU dry run on the tiny model" >&2
    args+=(--device cpu --tiny)
  fi
fi
rc=0
"$py" benchmarks/gpu_check.py "${args[@]}" || rc=$?
echo "gpu_check: ${SECONDS} s in all, wheels and imports included (exit $rc)" >&2
exit "$rc"
