"""The host's facts for the plan: binaries, CPUs, CUDA devices (asked of torch in a subprocess: the
client never imports torch) and full-size weights in the hub cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from i2v_client.local.plan import Gpu, Host

HUB_MODEL = "ali-vilab/i2vgen-xl"
PROBE_TIMEOUT_S = 120.0
_PROBE = """
import json, torch
gpus = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "total_bytes": p.total_memory})
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus}))
"""


class Missing(Exception):
    """A binary `i2v up` needs is not installed; the message says how to get it."""


def parse_probe(stdout: str) -> tuple[tuple[Gpu, ...], str]:
    """(the CUDA devices, why none when there are none) from the probe's last line."""
    info = json.loads(stdout.strip().splitlines()[-1])
    gpus = tuple(Gpu(int(g["index"]), str(g["name"]), int(g["total_bytes"])) for g in info["gpus"])
    if gpus:
        return gpus, ""
    build = "a CPU-only build" if not info.get("cuda") else f"built for CUDA {info['cuda']}"
    return (), f"torch {info['torch']} ({build}) sees no CUDA device"


def probe_gpus(python: str = sys.executable) -> tuple[tuple[Gpu, ...], str]:
    try:
        done = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (), f"asking torch for CUDA devices failed ({exc})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return (), f"torch could not be asked for CUDA devices ({last})"
    try:
        return parse_probe(done.stdout)
    except (ValueError, KeyError, IndexError, TypeError):
        return (), "torch's answer about CUDA devices was unreadable"


def hub_cache(env: Mapping[str, str], home: Path) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    return Path(env.get("HF_HOME") or home / ".cache" / "huggingface") / "hub"


def cached_model(env: Mapping[str, str], home: Path) -> str | None:
    """The hub id of full-size I2VGen-XL weights already in the hub cache (loadable offline)."""
    snapshots = hub_cache(env, home) / ("models--" + HUB_MODEL.replace("/", "--")) / "snapshots"
    if any(snapshots.glob("*/model_index.json")):
        return HUB_MODEL
    return None


def binary(name: str, env: Mapping[str, str], how: str) -> str:
    """An executable named `name`: beside this Python first (the venv's console scripts), then on
    PATH; Missing says `how` to install it."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name, path=env.get("PATH"))
    if found is None:
        raise Missing(f"{name} not found: {how}")
    return found


def host(env: Mapping[str, str], *, device: str, want_prometheus: bool) -> Host:
    """Everything the plan needs to know; Missing when etcd or the i2v servers (the gateway too) are
    not installed."""
    etcd = env.get("ETCD_BIN") or binary(
        "etcd", env, "install it (apt-get install etcd-server) or set ETCD_BIN"
    )
    node = binary("i2v-node", env, "install the project (scripts/setup.sh, or pip install -e .)")
    binary("i2v-coordinator", env, "install the project (scripts/setup.sh, or pip install -e .)")
    gateway = binary("i2v-gateway", env, "install the project (scripts/setup.sh, or pip install -e .)")
    prometheus = None
    if want_prometheus:
        prometheus = shutil.which("prometheus", path=env.get("PATH")) or (
            "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
        )
    gpus, note = ((), "--device cpu") if device == "cpu" else probe_gpus()
    return Host(
        etcd=etcd,
        bin_dir=Path(node).parent,
        cpus=os.cpu_count() or 1,
        gpus=gpus,
        gpu_note=note,
        prometheus=prometheus,
        cached_model=cached_model(env, Path.home()) if gpus else None,
        gateway=gateway,
    )
