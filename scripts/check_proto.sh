#!/usr/bin/env bash
# Checks the wire contract (proto/, buf.yaml at the root) with buf:
#   lint      buf lint: the STANDARD rules, with the exceptions buf.yaml and the .proto files name
#   breaking  buf breaking against the previous commit's proto/: WIRE_JSON rules (buf.yaml says why)
#
# Usage: scripts/check_proto.sh [lint|breaking ...]   (no argument: both), or source it and call
# `check_proto [lint|breaking ...]` (scripts/test.sh does).
#
# "The previous commit" is, first found: $I2V_PROTO_AGAINST (any git revision, e.g. origin/main on a
# pull request, to check the whole branch); HEAD~1 (on main, a merge's first parent: main before
# it); the merge-base with main (origin/main, then main) when HEAD~1 is not in a shallow clone.
# With none of them in the clone (a depth-1 clone of a branch, or the first commit) breaking is
# skipped, saying so; fetch at least 2 commits (git fetch --deepen=1) to run it.
#
# buf comes from npm (package.json pins it; `npm ci` puts it in node_modules/.bin); $BUF overrides.
# I2V_PROTO_SKIP_MISSING=1 skips (instead of failing) when buf is not installed.

check_proto__root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The commit to compare against, or nothing (and why, on stderr).
check_proto__against() {
  local rev
  if [[ -n "${I2V_PROTO_AGAINST:-}" ]]; then
    git -C "$check_proto__root" rev-parse --verify -q "${I2V_PROTO_AGAINST}^{commit}" && return
    echo "check_proto: I2V_PROTO_AGAINST=${I2V_PROTO_AGAINST} is not a commit in this clone" >&2
    return 1
  fi
  git -C "$check_proto__root" rev-parse --verify -q "HEAD~1^{commit}" && return
  for rev in origin/main main; do
    if git -C "$check_proto__root" rev-parse --verify -q "${rev}^{commit}" >/dev/null; then
      rev="$(git -C "$check_proto__root" merge-base HEAD "$rev" 2>/dev/null)" || continue
      [[ "$rev" != "$(git -C "$check_proto__root" rev-parse HEAD)" ]] && echo "$rev" && return
    fi
  done
  return 1
}

check_proto() {
  local buf="${BUF:-$check_proto__root/node_modules/.bin/buf}" checks=("$@") failed=0 check against
  local ran=()
  ((${#checks[@]})) || checks=(lint breaking)
  if [[ ! -x "$buf" ]] && ! command -v "$buf" >/dev/null; then
    if [[ "${I2V_PROTO_SKIP_MISSING:-0}" == 1 ]]; then
      echo "check_proto: skipped: no buf at $buf (npm ci installs it)" >&2
      return 0
    fi
    echo "check_proto: no buf at $buf: run \`npm ci\` in the repository root (package.json pins it)" >&2
    return 1
  fi
  for check in "${checks[@]}"; do
    case "$check" in
      lint)
        (cd "$check_proto__root" && "$buf" lint) || failed=1
        ran+=(lint)
        ;;
      breaking)
        if ! against="$(check_proto__against)"; then
          echo "check_proto: breaking skipped: no earlier commit in this clone (shallow or the first" \
            "commit); fetch at least 2 commits, or set I2V_PROTO_AGAINST" >&2
          continue
        fi
        echo "check_proto: breaking changes against ${against:0:12}" >&2
        (cd "$check_proto__root" && "$buf" breaking --against ".git#ref=$against,subdir=proto") || failed=1
        ran+=(breaking)
        ;;
      *)
        echo "check_proto: unknown check $check (lint, breaking)" >&2
        return 2
        ;;
    esac
  done
  ((failed == 0 && ${#ran[@]})) && echo "check_proto: ${ran[*]}: ok" >&2
  return "$failed"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -uo pipefail
  check_proto "$@"
fi
