"""Loading the I2VGen-XL pipeline: `tiny` (built locally), a local directory, or a hub id.

All three end in the same `I2VGenXLPipeline.from_pretrained` call. Hub downloads go to the
Hugging Face cache (HF_HOME), not to the node's cache dir, so weights already fetched by other
tools are reused. Offline (the flag or HF_HUB_OFFLINE) means local files only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from i2v_contract.dtypes import canonical_dtype
from i2v_node.tiny import TINY_NAME, ensure_tiny

log = logging.getLogger(__name__)

PIPELINE_CLASS = "I2VGenXLPipeline"
_TRUTHY = {"1", "true", "yes", "on"}


def resolve_dtype(name: str | None, device: str) -> torch.dtype:
    """None means float16 on an accelerator and float32 on the CPU."""
    if name is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    dtype: torch.dtype = getattr(torch, canonical_dtype(name))  # canonical names are torch's own
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def offline_mode(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


def _check_local_dir(path: Path) -> None:
    index = path / "model_index.json"
    if not index.is_file():
        raise ValueError(f"model directory {path} has no model_index.json; is it a diffusers pipeline?")
    try:
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError) as e:
        raise ValueError(f"model directory {path}: unreadable model_index.json ({e})") from None
    if class_name != PIPELINE_CLASS:
        raise ValueError(f"model directory {path} holds a {class_name}, not an {PIPELINE_CLASS}")


def resolve_source(model: str, cache_dir: Path) -> str:
    """What to pass to from_pretrained: a local directory path, or the hub id unchanged."""
    if model == TINY_NAME:
        return str(ensure_tiny(cache_dir))
    path = Path(model).expanduser()
    if path.is_dir():
        _check_local_dir(path)
        return str(path)
    if path.exists() or model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise ValueError(f"model {model!r} is not a pipeline directory (and not a hub id like owner/name)")
    return model


def load_pipeline(model: str, *, dtype: torch.dtype, cache_dir: Path, offline: bool) -> Any:
    """The pipeline on the CPU in `dtype`; raises ValueError (a message to show) when it cannot load."""
    import diffusers

    pipeline_class: Any = diffusers.I2VGenXLPipeline  # unannotated in diffusers
    source = resolve_source(model, cache_dir)
    local_only = offline_mode(offline)
    log.info(
        "loading %s from %s (dtype %s, local files only: %s)", model, source, dtype_name(dtype), local_only
    )
    try:
        pipe = pipeline_class.from_pretrained(source, dtype=dtype, local_files_only=local_only)
    # Loading fails in many library-specific ways (hub errors, missing shards, bad configs): every
    # one of them means this model cannot be served, which the caller reports as bad input.
    except Exception as e:
        hint = " (offline: only models already in the local Hugging Face cache)" if local_only else ""
        raise ValueError(
            f"cannot load model {model!r}{hint}: {type(e).__name__}: {e}. "
            "Use --model tiny, a local I2VGen-XL pipeline directory, or a hub id such as ali-vilab/i2vgen-xl."
        ) from e
    pipe.set_progress_bar_config(disable=True)
    return pipe
