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

from i2v_contract import measured, memory

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


def test_cuda_shaped_records_make_a_table_and_a_measurement_file(tmp_path):
    # What only a CUDA run produces, checked here so the lent machine's few minutes are not spent
    # on a KeyError in the report.
    from benchmarks import gpu_check

    kit = gpu_check.Kit(gpu_check.make_plan(torch.device("cuda"), False, 430.0), tmp_path, tmp_path)
    kit.context_samples = [600 * 2**20, 640 * 2**20]
    stage = {"allocated": 9 * 10**9, "reserved": 10**10, "nvml_used": 11 * 10**9, "device_bytes": 10**10}
    stage |= {
        "model_allocated": 8 * 10**9,
        "model_device": 10**10,
        "error_allocated": -0.1,
        "error_device": 0.0,
    }
    run = {"profile": "fast", "width": 512, "height": 512, "frames": 16, "steps": 2, "ok": True}
    run |= {"stages": {"denoise": stage}, "s_per_step": 0.5, "base_allocated": 5 * 10**9}
    run |= {"peak_allocated": 9 * 10**9, "peak_reserved": 10**10, "device_peak": 11 * 10**9}
    kit.runs = [run, {**run, "profile": "model_offload", "base_allocated": 0}]
    oom_cap = {"card": "6GB", "cap_bytes": 5 * 2**30, "first_profile": "model_offload", "ok": True}
    oom_cap |= {"free_bytes": 2**30, "first_profile_by_capped_monitor": "sliced"}
    oom_cap |= {"profile": "model_offload", "degradations": [], "peak_allocated": 4 * 2**30, "retries": []}
    default_run = {"size": "512x512x16", "device_peak": 9 * 10**9, "model_assumed_costs": 8.6e9}
    default_run["webui_4090_gb"] = 13.8
    report = {
        "kit": {"device": "cuda", "model": "full-size", "seconds": 400},
        "parts": {
            "profiles": {"status": "ok", "records": kit.runs, "skipped": ["x"]},
            "oom": {"status": "ok", "simulated": False, "caps": [{**oom_cap, "process_stayed_up": True}]},
            "bare": {"status": "ok", "size": "512x512x16", "steps": 2, "profile": "fast", "engine_s": [1.0]}
            | {"bare_s": [1.0], "overhead_ratio": 1.0, "frames_identical": True, "max_pixel_difference": 0}
            | {"prompt": "", "diffusers_defaults": {"runs": [default_run], "skipped": []}},
        },
    }
    table = gpu_check.markdown(report)
    assert "| fast | 512x512x16 | denoise | 8.38 |" in table
    assert "512p: device peak 11.00 GB, WebUI 13.8 GB" in table
    assert "| 6GB | 5.00 | 1.00 | model_offload (capped monitor: sliced) | model_offload |" in table
    assert (
        "diffusers defaults 512x512x16: device peak 9.00 GB (model 8.60 GB, WebUI RTX 4090 13.8 GB)" in table
    )
    found = gpu_check.measurements_file(kit, {"gpu": "NVIDIA H200", "versions": {"torch": "2.11"}})
    assert found is not None
    assert len(found.overhead_samples) == 1  # offload runs say nothing about the allocator
    again = measured.parse(json.loads(json.dumps(found.to_dict())))
    assert again.costs.cuda_context_bytes == 620 * 2**20
    assert again.runs[0].peak_bytes == 620 * 2**20 + 10**10
