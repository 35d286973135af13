"""The host's facts: torch's answer about CUDA devices, cached full-size weights, binaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from i2v_client.local import detect
from i2v_client.local.plan import Gpu


@pytest.mark.parametrize(
    ("answer", "gpus", "why"),
    [
        pytest.param(
            {"torch": "2.13.0+cpu", "cuda": None, "gpus": []},
            (),
            "torch 2.13.0+cpu (a CPU-only build) sees no CUDA device",
            id="cpu-build",
        ),
        pytest.param(
            {"torch": "2.13.0", "cuda": "12.8", "gpus": []},
            (),
            "torch 2.13.0 (built for CUDA 12.8) sees no CUDA device",
            id="no-device",
        ),
        pytest.param(
            {
                "torch": "2.13.0",
                "cuda": "12.8",
                "gpus": [{"index": 0, "name": "NVIDIA H200", "total_bytes": 150_000_000_000}],
            },
            (Gpu(0, "NVIDIA H200", 150_000_000_000),),
            "",
            id="one-gpu",
        ),
    ],
)
def test_the_probe_answer(answer: dict[str, object], gpus: tuple[Gpu, ...], why: str) -> None:
    # torch may warn on stdout before the answer: only the last line counts
    assert detect.parse_probe("a warning\n" + json.dumps(answer) + "\n") == (gpus, why)


def test_a_failing_probe_says_why(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n")
    python.chmod(0o755)
    assert detect.probe_gpus(str(python)) == (
        (),
        "torch could not be asked for CUDA devices (ModuleNotFoundError: No module named torch)",
    )


@pytest.mark.parametrize(
    ("env", "where"),
    [
        pytest.param({}, "home/.cache/huggingface/hub", id="default"),
        pytest.param({"HF_HOME": "{tmp}/hf"}, "hf/hub", id="hf-home"),
        pytest.param({"HF_HOME": "{tmp}/hf", "HF_HUB_CACHE": "{tmp}/cache"}, "cache", id="hub-cache-wins"),
    ],
)
def test_cached_weights_are_found_in_the_hub_cache(tmp_path: Path, env: dict[str, str], where: str) -> None:
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    home = tmp_path / "home"
    assert detect.cached_model(env, home) is None
    snapshot = tmp_path / where / "models--ali-vilab--i2vgen-xl" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert detect.cached_model(env, home) is None  # a download that never finished
    (snapshot / "model_index.json").write_text("{}")
    assert detect.cached_model(env, home) == "ali-vilab/i2vgen-xl"


def test_a_missing_binary_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(detect.Missing, match="no-such-i2v-tool not found: install it"):
        detect.binary("no-such-i2v-tool", {"PATH": str(tmp_path)}, "install it")
    tool = tmp_path / "some-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert detect.binary("some-tool", {"PATH": str(tmp_path)}, "") == str(tool)
