#!/usr/bin/env bash
# Sets up a development machine (Debian/Ubuntu): the etcd server, a virtual environment in
# .venv with the project and its dev tools. Safe to run again; it only adds what is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
# promtool (alert rules) and systemd-analyze (unit files) for the deploy/ checks
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# npm: buf (scripts/check_proto.sh) ships through it
command -v npm >/dev/null || need_apt+=(npm)
# the web page's tests (tests/browser) drive Debian's headless chromium through its driver
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pick the torch build first (override I2V_TORCH, e.g. "torch" for the default CUDA build on a GPU host);
# the project's own range (torch>=2.4) then installs nothing more.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "${I2V_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[dev]"
# buf, pinned in package.json / package-lock.json
want_buf="$(node -p 'require("./package.json").devDependencies["@bufbuild/buf"]')"
[[ "$(node_modules/.bin/buf --version 2>/dev/null)" == "$want_buf" ]] || npm ci --no-audit --no-fund --loglevel=error
echo "set up: $(.venv/bin/python -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)')"
