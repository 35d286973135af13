"""The GPU truth kit's CPU dry run (scripts/gpu_check.sh --device cpu --tiny): every part runs on the
tiny model, so the script cannot rot while no GPU is lent; and the committed full-size configs are
the architecture the memory model describes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from i2v_contract import memory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("env", "build", "steps", "profiles", "bare", "oom", "node")


def test_cpu_dry_run(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [str(ROOT / "scripts" / "gpu_check.sh"), "--device", "cpu", "--tiny"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "installing from" not in done.stderr  # everything is importable here: no pip
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = report["parts"]
    assert [name for name in PARTS if parts[name]["status"] == "ok"] == list(PARTS), {
        n: parts[n].get("error") for n in PARTS
    }
    assert all("seconds" in parts[name] for name in PARTS)
    profiles = parts["profiles"]
    assert profiles["ok"] == profiles["runs"] > 0
    assert {r["profile"] for r in profiles["records"]} == set(parts["build"]["ladder"])
    assert parts["bare"]["frames_identical"] is True
    oom = parts["oom"]
    assert oom["simulated"] is True and len(oom["caps"]) == 3
    assert all(c["ok"] and c["process_stayed_up"] for c in oom["caps"])
    assert any(c["retries"] for c in oom["caps"])  # the injected OOMs walked the ladder
    assert parts["node"]["checks"]["tier_matches_gauge"] is True
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| profile | size | stage |" in table and "## OOM path" in table
    assert not (tmp_path / "gpu_memory.json").exists()  # measurements come from CUDA only
    assert took < 120, f"the dry run took {took:.0f} s"


def test_full_size_configs_are_the_modelled_architecture():
    from i2v_node.fullsize import FULL_SIZE_CONFIGS, build_random_pipeline

    pipe = build_random_pipeline(FULL_SIZE_CONFIGS, device=torch.device("meta"), dtype=torch.float16, seed=0)
    assert memory.ArchSpec.from_pipeline(pipe, name=memory.I2VGEN_XL.name) == memory.I2VGEN_XL
    assert pipe.unet.dtype == torch.float16
