"""A bounded run of each fuzz target (fuzz/targets.py) under atheris, from the seed corpus: no input
may raise anything but the refusals the servers answer with. scripts/fuzz.sh runs them longer.

I2V_FUZZ_SECONDS sets each target's time (default 4); the executions are printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import seeds

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("I2V_FUZZ_SECONDS", "4"))

pytestmark = pytest.mark.timeout(SECONDS * 3 + 120)


def fuzz_env() -> dict[str, str]:
    paths = ["proto", "contract", "common", "client", "node", "coordinator", "fuzz", "."]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in paths), OMP_NUM_THREADS="1")


@pytest.mark.parametrize("target", ["image", "node", "coordinator"])
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    seeds.write(corpus)
    args = [sys.executable, str(ROOT / "fuzz" / "run.py"), target, str(corpus / target)]
    args += [f"-max_total_time={SECONDS}", "-timeout=20", "-rss_limit_mb=2048", "-print_final_stats=1"]
    done = subprocess.run(
        args, cwd=tmp_path, env=fuzz_env(), capture_output=True, text=True, timeout=SECONDS * 3 + 60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*")), output[-4000:]
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    assert runs and int(runs.group(1)) > 100, output[-2000:]
    print(f"fuzz {target}: {runs.group(1)} executions in {SECONDS} s, no finding")
