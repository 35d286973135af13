#!/usr/bin/env bash
# Regenerates the Python stubs of proto/i2v_proto/v1/*.proto in place (the one way to make them).
# With --check, regenerates into a scratch folder and fails when the committed stubs differ.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
[[ "$py" == */* ]] && py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"
export PATH="$(dirname "$(command -v "$py")"):$PATH"
out="$root/proto"
if [[ "${1:-}" == "--check" ]]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
cd "$root/proto"
"$py" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  i2v_proto/v1/*.proto
if [[ "${1:-}" == "--check" ]]; then
  for f in "$out"/i2v_proto/v1/*; do
    name="$(basename "$f")"
    if ! cmp -s "$f" "$root/proto/i2v_proto/v1/$name"; then
      echo "stale generated stub: proto/i2v_proto/v1/$name; run scripts/gen_proto.sh" >&2
      exit 1
    fi
  done
  echo "generated stubs are fresh"
fi
