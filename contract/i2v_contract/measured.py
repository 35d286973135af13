"""Measured GPU figures that replace the memory model's two assumed runtime costs.

The memory model (memory.py) derives activations from traces, but two costs can only be measured on
a CUDA device: the CUDA context (driver, kernels, cuBLAS/cuDNN handles: device memory used before
any tensor) and the caching allocator's overhead (reserved beyond the live tensors, as a fraction
of a job's transient bytes). `scripts/gpu_check.sh` on a CUDA machine measures both and writes
`gpu_memory.json` in the format below to its output folder. Committing that file here, as
`contract/i2v_contract/gpu_memory.json` (`MEASURED_PATH`), makes the model use the measured costs;
tests/unit/contract/test_measured.py then checks that the model reproduces each committed run within 10 %.

Format (schema 1), all sizes in bytes:

    {"schema": 1, "device": "NVIDIA H200", "versions": {"torch": "...", ...},
     "costs": {"cuda_context_bytes": 612368384, "allocator_overhead": 0.07},
     "context_samples": [612368384],
     "overhead_samples": [{"base": 4.98e9, "allocated": 9.1e9, "reserved": 9.4e9}, ...],
     "runs": [{"profile": "fast", "width": 512, "height": 512, "frames": 16,
               "peak_bytes": 14.1e9}, ...]}

`costs` is `fit_costs(context_samples, overhead_samples)`. An overhead sample is one run without
offload: `base` allocated before it (the weights), its peak allocated and its peak reserved bytes.
A run's `peak_bytes` is the CUDA context plus torch's peak reserved bytes: the device memory the
job held, what a card must have free. Each run starts from an emptied allocator cache, as a node's
first job after an OOM does; later jobs may find more cached, never less.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = 1
MEASURED_PATH = Path(__file__).resolve().parent / "gpu_memory.json"


@dataclass(frozen=True)
class RuntimeCosts:
    """What an accelerator adds to a job's weights and transient tensors."""

    cuda_context_bytes: int
    allocator_overhead: float  # reserved beyond live tensors, as a fraction of the transient bytes


@dataclass(frozen=True)
class OverheadSample:
    base: int  # allocated before the run: the resident weights
    allocated: int  # peak allocated during the run
    reserved: int  # peak reserved during the run


@dataclass(frozen=True)
class MeasuredRun:
    profile: str
    width: int
    height: int
    frames: int
    peak_bytes: int  # CUDA context + peak reserved


@dataclass(frozen=True)
class Measurements:
    device: str
    costs: RuntimeCosts
    context_samples: tuple[int, ...]
    overhead_samples: tuple[OverheadSample, ...]
    runs: tuple[MeasuredRun, ...]
    versions: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "device": self.device,
            "versions": dict(self.versions),
            "costs": {
                "cuda_context_bytes": self.costs.cuda_context_bytes,
                "allocator_overhead": self.costs.allocator_overhead,
            },
            "context_samples": list(self.context_samples),
            "overhead_samples": [
                {"base": s.base, "allocated": s.allocated, "reserved": s.reserved}
                for s in self.overhead_samples
            ],
            "runs": [
                {
                    "profile": r.profile,
                    "width": r.width,
                    "height": r.height,
                    "frames": r.frames,
                    "peak_bytes": r.peak_bytes,
                }
                for r in self.runs
            ],
        }


def fit_costs(context_samples: Sequence[int], overhead_samples: Sequence[OverheadSample]) -> RuntimeCosts:
    """Medians: the context over its samples; the overhead over runs that allocated anything
    beyond their base (never below 0). Raises ValueError when a kind has no usable sample."""
    if not context_samples:
        raise ValueError("no CUDA context samples")
    ratios = [
        max(0.0, (s.reserved - s.allocated) / (s.allocated - s.base))
        for s in overhead_samples
        if s.allocated > s.base
    ]
    if not ratios:
        raise ValueError("no overhead sample allocated anything beyond its base")
    return RuntimeCosts(int(statistics.median(context_samples)), round(statistics.median(ratios), 4))


def _int(value: Any, where: str) -> int:
    # JSON writers may emit whole numbers as floats (1.2e10): accept those, nothing fractional.
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        raise ValueError(f"{where} is {value!r}, expected a whole number >= 0")
    return int(value)


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ValueError(f"{key} is {items!r}, expected a list of objects")
    return items


def parse(data: Mapping[str, Any]) -> Measurements:
    """Measurements from the JSON format above; raises ValueError naming the first bad field."""
    if data.get("schema") != SCHEMA:
        raise ValueError(f"schema is {data.get('schema')!r}, expected {SCHEMA}")
    costs = data.get("costs")
    if not isinstance(costs, Mapping):
        raise ValueError(f"costs is {costs!r}, expected an object")
    overhead = costs.get("allocator_overhead")
    if isinstance(overhead, bool) or not isinstance(overhead, int | float) or not 0 <= overhead < 1:
        raise ValueError(f"costs.allocator_overhead is {overhead!r}, expected a fraction in [0, 1)")
    samples = data.get("context_samples")
    if not isinstance(samples, list):
        raise ValueError(f"context_samples is {samples!r}, expected a list")
    versions = data.get("versions", {})
    if not isinstance(versions, Mapping):
        raise ValueError(f"versions is {versions!r}, expected an object")
    return Measurements(
        device=str(data.get("device", "")),
        costs=RuntimeCosts(
            _int(costs.get("cuda_context_bytes"), "costs.cuda_context_bytes"), float(overhead)
        ),
        context_samples=tuple(_int(v, f"context_samples[{i}]") for i, v in enumerate(samples)),
        overhead_samples=tuple(
            OverheadSample(
                *(_int(s.get(k), f"overhead_samples[{i}].{k}") for k in ("base", "allocated", "reserved"))
            )
            for i, s in enumerate(_objects(data, "overhead_samples"))
        ),
        runs=tuple(
            MeasuredRun(
                profile=str(r.get("profile", "")),
                width=_int(r.get("width"), f"runs[{i}].width"),
                height=_int(r.get("height"), f"runs[{i}].height"),
                frames=_int(r.get("frames"), f"runs[{i}].frames"),
                peak_bytes=_int(r.get("peak_bytes"), f"runs[{i}].peak_bytes"),
            )
            for i, r in enumerate(_objects(data, "runs"))
        ),
        versions={str(k): str(v) for k, v in versions.items()},
    )


def load(path: Path = MEASURED_PATH) -> Measurements | None:
    """The measurements at `path`; None when the file does not exist. Raises ValueError (naming the
    file) when it exists but cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ValueError(f"{path}: {err}") from None
    try:
        return parse(json.loads(text))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def runtime_costs(assumed: RuntimeCosts, path: Path = MEASURED_PATH) -> RuntimeCosts:
    """The measured costs when `path` holds measurements, else `assumed`. A broken file is logged and
    ignored here, so nodes and coordinators still start; the unit tests fail on it."""
    try:
        found = load(path)
    except ValueError as err:
        log.warning("ignoring measured GPU costs: %s", err)
        return assumed
    if found is None:
        return assumed
    log.info("memory model: measured costs from %s (%s): %s", path.name, found.device, found.costs)
    return found.costs
