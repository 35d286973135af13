#!/usr/bin/env bash
# The project's test command: set-up, generated-stub freshness, lint, types, dependency rules, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not chaos").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
export PATH="$root/.venv/bin:$PATH"
PYTHON=.venv/bin/python scripts/gen_proto.sh --check
ruff check .
ruff format --check .
mypy contract/i2v_contract common/i2v_common client/i2v_client node/i2v_node coordinator/i2v_coordinator gateway/i2v_gateway
# The package dependency rules (pyproject.toml, [tool.importlinter]).
PYTHONPATH="proto:contract:common:client:node:coordinator:gateway" lint-imports --no-cache
# The wire contract: buf lint, and breaking changes against the previous commit.
source scripts/check_proto.sh
check_proto
# Node subprocesses share two cores with the test runner: one torch thread each keeps runs steady.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
HF_HUB_OFFLINE=1 pytest "$@"
