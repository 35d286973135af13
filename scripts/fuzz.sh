#!/usr/bin/env bash
# Longer fuzzing runs than CI's (tests/fuzz): each target under atheris for SECONDS (default 300),
# keeping its corpus in $CORPUS/<target> (default fuzz/corpus, git-ignored) so runs build on each
# other. Crashes land in $CORPUS/crashes/<target>/ with the input that caused them.
#   scripts/fuzz.sh [SECONDS] [TARGET...]       targets: image node coordinator (default: all)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-300}"
[[ $# -gt 0 ]] && shift
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=(image node coordinator); fi
corpus="${CORPUS:-$root/fuzz/corpus}"
export PATH="$root/.venv/bin:$PATH" OMP_NUM_THREADS=1
export PYTHONPATH="$root/proto:$root/contract:$root/common:$root/client:$root/node:$root/coordinator:$root/fuzz:$root"
python fuzz/seeds.py "$corpus"
status=0
for target in "${targets[@]}"; do
  mkdir -p "$corpus/crashes/$target"
  log="$corpus/$target.log"
  echo "== $target for ${seconds}s (corpus $corpus/$target, log $log)"
  python fuzz/run.py "$target" "$corpus/$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$corpus/crashes/$target/" >"$log" 2>&1 || status=1
  grep -E "DONE|number_of_executed_units|ERROR|Uncaught" "$log" || true
done
found=$(find "$corpus/crashes" -type f | wc -l)
echo "findings: $found (in $corpus/crashes)"
[[ $status -eq 0 && $found -eq 0 ]]
