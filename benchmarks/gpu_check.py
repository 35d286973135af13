"""GPU truth kit: the real CUDA paths and the memory model, measured in one run of under 8 minutes.

    scripts/gpu_check.sh                      # on a lent CUDA machine: full-size model, fp16
    scripts/gpu_check.sh --device cpu --tiny  # the CI dry run: every part on the tiny model

Parts, in order, each timed and given its own share of the time budget (what would not fit is
skipped and the JSON says so):

  env       versions, the device, NVML, and the CUDA context: NVML used before CUDA is touched, after
            the first tensor and after cuBLAS / cuDNN / SDPA kernels ran, minus torch's reserved bytes.
  build     the full-size I2VGen-XL from the configs committed in node/i2v_node/configs/i2vgen-xl,
            random weights created on the device in fp16 (fullsize.py), then the engine around it
            through Engine.from_pipeline: the in-memory seam, not from_pretrained (writing and reading
            5 GB of random weights would spend a minute of the lease on disk I/O).
  steps     peak memory does not depend on the step count: the same job at 2 and 4 steps, per-stage
            peaks compared.
  profiles  every profile usable on the device x 512/768/1024 square x 16 frames, a few steps each:
            per stage torch's peak allocated and reserved bytes, NVML used (sampled every 10 ms),
            seconds per denoising step; the memory model's estimate beside each, and the error.
  bare      our engine against a bare diffusers I2VGenXLPipeline call on the same modules, profile,
            size and seed: wall-time ratio and whether the frames are identical; then that call
            at diffusers' defaults per size, its device peak beside the RTX 4090 WebUI figures.
  oom       the node's OOM path for real, in a child process: capped with the node's own
            limit_torch_memory (set_per_process_memory_fraction) to what a 12, 8 and 6 GB card
            leaves free, the 512x512x16 job with allow_degrade; which profile or degradation it
            ended on, its peak, seconds per step, and whether the process stayed up. Without CUDA
            the caps are simulated: a simulated free-VRAM reading, and OOMs injected (fault plan)
            wherever the full-size model's estimate exceeds the cap.
  node      a real `i2v-node --model tiny` on a loopback port, one `i2v generate`, the reported tier
            and the GPU memory gauges on /metrics (a CPU node gets --simulate-free-vram for those).

Output: gpu_check.json and gpu_check.md under $OUT (else out/), written after every part so a crash
keeps what was measured; on CUDA also gpu_memory.json, the memory model's measurement file (commit
it as contract/i2v_contract/gpu_memory.json; see i2v_contract/measured.py). Exit status 1 when a part
failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from i2v_contract import dtypes, measured, memory
from i2v_contract.measured import MeasuredRun, Measurements, OverheadSample, RuntimeCosts
from i2v_contract.profiles import Offload, Profile, profile_by_name
from i2v_contract.tiers import tier_for_free_bytes, tier_name
from i2v_contract.wire import common_pb2
from i2v_node.apply import decode_chunk_arg
from i2v_node.engine import Engine, EngineConfig
from i2v_node.faults import parse_fault_plan
from i2v_node.fullsize import FULL_SIZE_CONFIGS, build_random_pipeline
from i2v_node.gpu import first_profile, limit_torch_memory, make_monitor
from i2v_node.job import Cancelled, JobSpec, OutOfMemoryExhausted, ProgressEvent
from i2v_node.loader import dtype_name, resolve_dtype
from i2v_node.prompt import encode_prompts
from i2v_node.tiny import ensure_tiny

log = logging.getLogger("gpu_check")

ROOT = Path(__file__).resolve().parents[1]
MIB, GIB = 1024**2, 1024**3
SEED = 20261201
PROMPT = "a red fox running through snow"
PARTS = ("env", "build", "steps", "profiles", "bare", "oom", "node")
# Cards of the practitioners' published WebUI figures: a 6 GB RTX 2060 cannot run 512p at all, 8 GB
# cards peak at 7.6-7.8 GB, a 12 GB RTX 3060 at 11.2 GB.
CARDS = (
    ("12GB", 12 * GIB, "peaks at 11.2 GB"),
    ("8GB", 8 * GIB, "peaks at 7.6-7.8 GB"),
    ("6GB", 6 * GIB, "fails"),
)
REFERENCE_4090_GB = {512: 13.8, 768: 17.6, 1024: 21.3}
# diffusers' I2VGenXLPipeline defaults: no forward chunking, one frame per VAE decode call.
PIPELINE_DEFAULT = Profile("diffusers_default", False, 1, False, False, Offload.NONE)
_RESULT = "OOM-RESULT "


@dataclass(frozen=True)
class Plan:
    """What one run measures: the device, the model and the sizes, and each part's time budget."""

    device: torch.device
    tiny: bool
    sizes: tuple[int, ...]
    frames: int
    steps: int
    oom_size: tuple[int, int, int]  # the job the OOM part submits
    oom_stands_for: tuple[int, int, int]  # the job its caps and estimates are about
    node_size: tuple[int, int, int]
    budgets: dict[str, float]

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def make_plan(device: torch.device, tiny: bool, budget_s: float) -> Plan:
    full = not tiny
    # Seconds per part; profiles get what the others leave (it runs as much as fits). CUDA: imports,
    # the full-size build and the OOM child's own build dominate the fixed parts.
    if device.type == "cuda":
        budgets = {"env": 10.0, "build": 25.0, "steps": 20.0, "bare": 50.0, "oom": 70.0, "node": 35.0}
    else:
        budgets = {"env": 15.0, "build": 8.0, "steps": 6.0, "bare": 6.0, "oom": 20.0, "node": 20.0}
    budgets["profiles"] = max(0.0, budget_s - sum(budgets.values()))
    return Plan(
        device=device,
        tiny=tiny,
        sizes=(512, 768, 1024) if full else (64, 96, 128),
        frames=16 if full else 8,
        steps=2,
        oom_size=(512, 512, 16) if full else (64, 64, 8),
        oom_stands_for=(512, 512, 16),
        node_size=(64, 64, 8),
        budgets=budgets,
    )


# ---------------------------------------------------------------------------------------------------
# Measuring: NVML sampling, per-stage peaks


class Nvml:
    """Device-wide used memory of one GPU: NVML, opened by index before torch touches CUDA (so the
    first reading has no context of ours in it), else cudaMemGetInfo through torch (`source` says
    which; that fallback creates the context, so its first reading already includes it). A thread
    samples `used` every 10 ms to catch peaks between reads."""

    def __init__(self, index: int) -> None:
        self._index = index
        self._nvml: Any = None
        self.error = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetMemoryInfo(self._handle)
            driver = pynvml.nvmlSystemGetDriverVersion()
            self._nvml = pynvml
            self.driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        except Exception as err:  # ImportError, or any NVMLError (no driver access, MIG, ...)
            self.error = f"{type(err).__name__}: {err}"
            self.driver = ""
        self.source = "nvml" if self._nvml else "torch.cuda.mem_get_info"
        self._lock = threading.Lock()
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()

    def used(self) -> int:
        if self._nvml is None:
            free, total = torch.cuda.mem_get_info(self._index)
            return int(total - free)
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)

    def total(self) -> int:
        if self._nvml is None:
            return int(torch.cuda.mem_get_info(self._index)[1])
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).total)

    def _loop(self) -> None:
        while not self._stop.wait(0.01):
            used = self.used()
            with self._lock:
                self._peak = max(self._peak, used)

    def take_peak(self) -> int:
        """The highest `used` since the last call (or start)."""
        now = self.used()
        with self._lock:
            peak, self._peak = max(self._peak, now), now
        return peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


def _proc_bytes(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


_ENGINE_STAGES: dict[int, str] = {
    common_pb2.STAGE_ENCODE_PROMPT: "encode_prompt",
    common_pb2.STAGE_ENCODE_IMAGE: "encode_image",
    common_pb2.STAGE_DENOISE: "denoise",
    common_pb2.STAGE_DECODE: "decode",
}
# The memory model's three stages over the engine's four.
_MODEL_STAGE = {"encode_prompt": "encode", "encode_image": "encode", "denoise": "denoise", "decode": "decode"}


class StageMeter:
    """Engine.run's on_progress: per-stage peak memory and denoising step times of one run.

    CUDA: torch's peak statistics are reset when a stage starts (reserved keeps what the caching
    allocator already holds), and the step events synchronise the device so step times are real.
    CPU: growth of the peak resident set over the stage start (/proc/self/clear_refs)."""

    def __init__(self, device: torch.device, nvml: Nvml | None) -> None:
        self._cuda = device.type == "cuda"
        self._device = device
        self._nvml = nvml
        self.stages: dict[str, dict[str, Any]] = {}
        self.step_s: list[float] = []
        self.retries: list[str] = []
        self.base_allocated: int | None = None
        self._current: str | None = None
        self._rss_at_open = 0
        self._last_step = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage == common_pb2.STAGE_RETRY:
            self.retries.append(event.message)
            self._close()
            self.step_s.clear()
            return
        name = _ENGINE_STAGES.get(event.stage)
        if name is None:
            return
        if event.stage == common_pb2.STAGE_DENOISE and event.step > 0:
            if self._cuda:
                torch.cuda.synchronize(self._device)
            now = time.perf_counter()
            self.step_s.append(now - self._last_step)
            self._last_step = now
            return
        if name != self._current:
            self._close()
            self._open(name)

    def _open(self, name: str) -> None:
        self._current = name
        if self._cuda:
            torch.cuda.synchronize(self._device)
            if self.base_allocated is None:
                self.base_allocated = int(torch.cuda.memory_allocated(self._device))
            torch.cuda.reset_peak_memory_stats(self._device)
            if self._nvml:
                self._nvml.take_peak()
        else:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self._rss_at_open = _proc_bytes("VmRSS")
        self._last_step = time.perf_counter()

    def _close(self) -> None:
        name, self._current = self._current, None
        if name is None:
            return
        if self._cuda:
            torch.cuda.synchronize(self._device)
            self.stages[name] = {
                "allocated": int(torch.cuda.max_memory_allocated(self._device)),
                "reserved": int(torch.cuda.max_memory_reserved(self._device)),
                "nvml_used": self._nvml.take_peak() if self._nvml else None,
            }
        else:
            self.stages[name] = {
                "allocated": max(0, _proc_bytes("VmHWM") - self._rss_at_open),
                "reserved": None,
                "nvml_used": None,
            }

    def finish(self) -> None:
        self._close()


# ---------------------------------------------------------------------------------------------------
# The kit's shared state and helpers


@dataclass
class Kit:
    plan: Plan
    out_dir: Path
    cache_dir: Path
    nvml: Nvml | None = None
    nvml_used_before: int = 0  # device-wide, before this process touched CUDA
    engine: Engine | None = None
    context_samples: list[int] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def context_bytes(self) -> int:
        """The CUDA context as measured so far (the assumed value until then)."""
        if self.context_samples:
            return int(statistics.median(self.context_samples))
        return memory.ASSUMED_COSTS.cuda_context_bytes

    def sample_context(self) -> None:
        """NVML used beyond torch's reserved bytes, now: the context with every kernel loaded so far."""
        if self.nvml is None:
            return
        torch.cuda.synchronize(self.plan.device)
        reserved = int(torch.cuda.memory_reserved(self.plan.device))
        self.context_samples.append(self.nvml.used() - self.nvml_used_before - reserved)


def input_image(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(SEED)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def job(width: int, height: int, frames: int, steps: int, *, allow_degrade: bool = False) -> JobSpec:
    return JobSpec(
        image=input_image(width, height),
        prompt=PROMPT,
        negative_prompt="",
        width=width,
        height=height,
        frames=frames,
        fps=8,
        steps=steps,
        guidance_scale=9.0,
        seed=SEED,
        allow_degrade=allow_degrade,
    )


def free_device_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


@contextmanager
def cancel_at(deadline: float) -> Iterator[threading.Event]:
    """An engine cancel event that is set when `deadline` (monotonic) passes."""
    cancel = threading.Event()
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cancel.set)
    timer.daemon = True
    timer.start()
    try:
        yield cancel
    finally:
        timer.cancel()


def estimates(
    kit: Kit, engine: Engine, width: int, height: int, frames: int, profile: Profile
) -> dict[str, Any]:
    """The memory model beside a measurement: per stage, and the job's peak, with the context
    measured so far in place of the assumed one; the peak also with both assumed costs."""
    accel = engine.has_accelerator
    dtype_bytes = dtypes.dtype_bytes(engine.dtype_name)
    stages = memory.stage_bytes(
        width, height, frames, profile, arch=engine.arch, dtype_bytes=dtype_bytes, accelerator=accel
    )
    # The measured context with the assumed allocator overhead: the error is the activation model's.
    costs = RuntimeCosts(kit.context_bytes(), memory.ASSUMED_COSTS.allocator_overhead)
    per_stage: dict[str, dict[str, int | None]] = {}
    for s in stages:
        if accel:
            device = costs.cuda_context_bytes + s.weights + int(s.transient * (1 + costs.allocator_overhead))
            per_stage[s.stage] = {"weights": s.weights, "transient": s.transient, "device": device}
        else:  # what the CPU meter sees: growth of the resident set, weights already resident
            per_stage[s.stage] = {"weights": s.weights, "transient": s.transient, "device": None}
    peak = memory.estimate_bytes(
        width,
        height,
        frames,
        profile,
        arch=engine.arch,
        dtype_bytes=dtype_bytes,
        accelerator=accel,
        costs=costs,
    )
    assumed = memory.estimate_bytes(
        width, height, frames, profile, arch=engine.arch, dtype_bytes=dtype_bytes, accelerator=accel
    )
    return {"stages": per_stage, "peak": peak, "peak_assumed_costs": assumed}


def _error(model: float | None, measured_value: float | None) -> float | None:
    if model is None or not measured_value:
        return None
    return round((model - measured_value) / measured_value, 4)


def measure_run(kit: Kit, engine: Engine, profile: Profile, spec: JobSpec, deadline: float) -> dict[str, Any]:
    """One engine run with per-stage peaks, and the memory model's estimate beside each stage."""
    device = kit.plan.device
    free_device_memory(device)
    meter = StageMeter(device, kit.nvml)
    record: dict[str, Any] = {
        "profile": profile.name,
        "width": spec.width,
        "height": spec.height,
        "frames": spec.frames,
        "steps": spec.steps,
    }
    started = time.perf_counter()
    try:
        with cancel_at(deadline) as cancel:
            outcome = engine.run(spec, profile, meter, cancel)
        meter.finish()
        record.update(ok=True, frames_out=int(outcome.frames.shape[0]), profile_used=outcome.profile)
        record["frames_array"] = outcome.frames
    except (Cancelled, OutOfMemoryExhausted, RuntimeError, ValueError) as err:
        meter.finish()
        record.update(ok=False, error=f"{type(err).__name__}: {err}")
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["step_s"] = [round(s, 4) for s in meter.step_s]
    record["s_per_step"] = round(meter.step_s[-1], 4) if meter.step_s else None
    record["retries"] = meter.retries
    record["base_allocated"] = meter.base_allocated
    record["stages"] = meter.stages
    if kit.plan.cuda:
        kit.sample_context()
    est = estimates(kit, engine, spec.width, spec.height, spec.frames, profile)
    ctx = kit.context_bytes()
    for name, stage in meter.stages.items():
        model = est["stages"][_MODEL_STAGE[name]]
        if kit.plan.cuda:
            model_alloc = model["weights"] + model["transient"]
            held = ctx + int(stage["reserved"] or 0)
            stage["device_bytes"] = held
            stage["model_allocated"] = model_alloc
            stage["model_device"] = model["device"]
            stage["error_allocated"] = _error(model_alloc, stage["allocated"])
            stage["error_device"] = _error(model["device"], held)
        else:
            model_alloc = memory.CPU_RUNTIME_BYTES + model["transient"]
            stage["model_allocated"] = model_alloc
            stage["error_allocated"] = _error(model_alloc, stage["allocated"])
    peaks = [s["allocated"] or 0 for s in meter.stages.values()]
    record["peak_allocated"] = max(peaks, default=0)
    if kit.plan.cuda:
        record["peak_reserved"] = max((int(s["reserved"] or 0) for s in meter.stages.values()), default=0)
        record["peak_nvml_used"] = max((int(s["nvml_used"] or 0) for s in meter.stages.values()), default=0)
        record["device_peak"] = ctx + record["peak_reserved"]
        record["model_peak"] = est["peak"]
        record["error_peak"] = _error(est["peak"], record["device_peak"])
        record["model_peak_assumed_costs"] = est["peak_assumed_costs"]
    return record


# ---------------------------------------------------------------------------------------------------
# Parts


def part_env(kit: Kit, deadline: float) -> dict[str, Any]:
    import accelerate
    import diffusers
    import transformers

    rec: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "torch": torch.__version__,
            "cuda": str(torch.version.cuda),
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
        },
        "diffusers_from": str(Path(diffusers.__file__).parent),
        "device": str(kit.plan.device),
        "dtype": dtype_name(resolve_dtype(None, str(kit.plan.device))),
        "model": "tiny" if kit.plan.tiny else "ali-vilab/i2vgen-xl (random weights)",
    }
    if not kit.plan.cuda:
        rec["cuda"] = "not used: CPU dry run (no CUDA context, no NVML)"
        return rec
    device = kit.plan.device
    index = device.index or 0
    kit.nvml = Nvml(index)
    # Without NVML the first reading already holds our context: assume an otherwise idle GPU.
    kit.nvml_used_before = kit.nvml.used() if kit.nvml.source == "nvml" else 0
    torch.zeros(1, device=device)
    torch.cuda.synchronize(device)
    first_tensor = kit.nvml.used() - kit.nvml_used_before - int(torch.cuda.memory_reserved(device))
    a = torch.randn(1024, 1024, device=device, dtype=torch.float16)
    (a @ a).sum().item()
    conv = torch.nn.Conv2d(16, 16, 3, padding=1).to(device, torch.float16)
    conv(torch.randn(1, 16, 64, 64, device=device, dtype=torch.float16)).sum().item()
    q = torch.randn(1, 8, 256, 64, device=device, dtype=torch.float16)
    torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().item()
    del a, conv, q
    kit.sample_context()
    props = torch.cuda.get_device_properties(index)
    free, total = torch.cuda.mem_get_info(device)
    rec.update(
        gpu=props.name,
        capability=f"{props.major}.{props.minor}",
        total_bytes=int(total),
        free_bytes=int(free),
        nvml_total_bytes=kit.nvml.total(),
        nvml_driver=kit.nvml.driver,
        used_memory_source=kit.nvml.source,
        nvml_error=kit.nvml.error,
        cudnn=torch.backends.cudnn.version(),
        nvml_used_before_cuda=kit.nvml_used_before,
        context_after_first_tensor=first_tensor,
        context_after_kernels=kit.context_samples[-1],
    )
    return rec


def part_build(kit: Kit, deadline: float) -> dict[str, Any]:
    plan = kit.plan
    dtype = resolve_dtype(None, str(plan.device))
    config_dir = ensure_tiny(kit.cache_dir) if plan.tiny else FULL_SIZE_CONFIGS
    started = time.perf_counter()
    pipe = build_random_pipeline(config_dir, device=plan.device, dtype=dtype, seed=SEED)
    if plan.cuda:
        torch.cuda.synchronize(plan.device)
    built = time.perf_counter() - started
    config = EngineConfig(
        model="tiny" if plan.tiny else memory.I2VGEN_XL.name,
        device=str(plan.device),
        dtype=None,
        cache_dir=kit.cache_dir,
        offline=True,
    )
    kit.engine = Engine.from_pipeline(config, pipe)
    del pipe  # the engine owns the modules now; a second reference would pin replaced ones
    rec: dict[str, Any] = {
        "configs": str(config_dir.relative_to(ROOT) if config_dir.is_relative_to(ROOT) else "tiny (cache)"),
        "build_s": round(built, 2),
        "engine_s": round(time.perf_counter() - started - built, 2),
        "path": "Engine.from_pipeline (in memory; no from_pretrained round trip)",
        "params": kit.engine.arch.total_params,
        "arch_matches_memory_model": kit.engine.arch == memory.I2VGEN_XL if not plan.tiny else None,
        "ladder": [p.name for p in kit.engine.ladder],
    }
    if plan.cuda:
        rec["weights_allocated"] = int(torch.cuda.memory_allocated(plan.device))
    return rec


def part_steps(kit: Kit, deadline: float) -> dict[str, Any]:
    engine = _engine(kit)
    size, frames = kit.plan.sizes[0], kit.plan.frames
    runs = [
        measure_run(kit, engine, profile_by_name("fast"), job(size, size, frames, n), deadline)
        for n in (2, 4)
    ]
    diffs = {}
    for stage in runs[0]["stages"]:
        for key in ("allocated", "reserved"):
            a, b = runs[0]["stages"][stage].get(key), runs[1]["stages"].get(stage, {}).get(key)
            if a and b:
                diffs[f"{stage}.{key}"] = round(abs(a - b) / max(a, b), 4)
    worst = max(diffs.values(), default=None)
    rec: dict[str, Any] = {
        "how": f"profile fast at {size}x{size}x{frames}, the same job at 2 and 4 denoising steps; "
        "per-stage peaks compared (relative difference; independent when under 1 %)",
        "runs": [_public(r) for r in runs],
        "relative_difference": diffs,
        "max_relative_difference": worst,
        "independent": bool(worst is not None and worst < 0.01 and all(r["ok"] for r in runs)),
    }
    if not kit.plan.cuda:
        rec["independent"] = None
        rec["note"] = "CPU: the tiny model's peak RSS growth is allocator noise; the check is for CUDA"
    return rec


def part_profiles(kit: Kit, deadline: float) -> dict[str, Any]:
    engine = _engine(kit)
    plan = kit.plan
    skipped: list[str] = []
    ladder = engine.ladder
    for i, profile in enumerate(ladder):
        # Each profile gets an equal share of what is left, so the slow offload ones are reached.
        share_end = time.monotonic() + (deadline - time.monotonic()) / (len(ladder) - i)
        previous: tuple[int, float] | None = None
        for size in plan.sizes:
            left = share_end - time.monotonic()
            predicted = previous[1] * (size / previous[0]) ** 2.5 if previous else 0.0
            if left <= 0 or predicted > left:
                why = f"would take ~{predicted:.0f} s, {max(left, 0):.0f} s left in its share"
                skipped.append(f"{profile.name} {size}x{size}: {why}")
                continue
            record = measure_run(kit, engine, profile, job(size, size, plan.frames, plan.steps), share_end)
            record.pop("frames_array", None)
            kit.runs.append(record)
            previous = (size, record["seconds"])
            if not record["ok"]:
                skipped.append(f"{profile.name} beyond {size}x{size}: the run failed")
                break
    ok = [r for r in kit.runs if r["ok"]]
    return {"runs": len(kit.runs), "ok": len(ok), "skipped": skipped, "records": kit.runs}


def _bare_call(
    pipe: Any, spec: JobSpec, profile: Profile, device: torch.device, own_prompt: bool, finite: list[bool]
) -> np.ndarray:
    """A bare I2VGenXLPipeline over `pipe`'s modules, seeded as the engine seeds; appends to `finite`
    whether the video was finite (random fp16 weights could overflow, which would make frame
    identity meaningless)."""
    import diffusers

    bare: Any = diffusers.I2VGenXLPipeline(
        **{
            name: getattr(pipe, name)
            for name in (
                "vae",
                "text_encoder",
                "tokenizer",
                "image_encoder",
                "feature_extractor",
                "unet",
                "scheduler",
            )
        }
    )
    bare.set_progress_bar_config(disable=True)
    prompt: dict[str, Any] = {"prompt": spec.prompt, "negative_prompt": spec.negative_prompt}
    if not own_prompt:
        positive, negative = encode_prompts(
            pipe.tokenizer, pipe.text_encoder, spec.prompt, spec.negative_prompt, device, spec.guidance_scale
        )
        prompt = {"prompt_embeds": positive, "negative_prompt_embeds": negative}
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(spec.seed)  # the engine seeds the global RNG too (VAE latent sampling)
        out = bare(
            image=spec.image,
            height=spec.height,
            width=spec.width,
            target_fps=spec.fps,
            num_frames=spec.frames,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance_scale,
            decode_chunk_size=decode_chunk_arg(profile),
            generator=torch.Generator(device=device).manual_seed(spec.seed),
            output_type="np",
            **prompt,
        )
    video = np.asarray(out.frames[0])
    finite.append(bool(np.isfinite(video).all()))
    frames: np.ndarray = np.clip(np.round(video * 255.0), 0, 255).astype(np.uint8)
    return frames


def part_bare(kit: Kit, deadline: float) -> dict[str, Any]:
    engine = _engine(kit)
    plan = kit.plan
    profile = profile_by_name("fast")
    size = plan.sizes[0]
    spec = job(size, size, plan.frames, plan.steps)

    def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
        free_device_memory(plan.device)
        started = time.perf_counter()
        frames = fn()
        if plan.cuda:
            torch.cuda.synchronize(plan.device)
        return frames, time.perf_counter() - started

    def ours() -> np.ndarray:
        with cancel_at(deadline) as cancel:
            return engine.run(spec, profile, lambda _: None, cancel).frames

    ours()  # warm: the profile applied, kernels loaded
    finite: list[bool] = []
    own_prompt = True
    try:
        _bare_call(engine.pipeline, spec, profile, plan.device, own_prompt, finite)
    except AttributeError as err:
        # The pipeline's own clip-skip path reads text_encoder.text_model, gone in transformers 5.
        own_prompt = False
        prompt_note = f"the pipeline's own prompt encoding failed ({err}); bare call given prompt_embeds"
    else:
        prompt_note = "the pipeline encoded the prompt itself"
    times: dict[str, list[float]] = {"engine": [], "bare": []}
    frames: dict[str, np.ndarray] = {}
    for _ in range(2):
        frames["engine"], t = timed(ours)
        times["engine"].append(t)
        frames["bare"], t = timed(
            lambda: _bare_call(engine.pipeline, spec, profile, plan.device, own_prompt, finite)
        )
        times["bare"].append(t)
    best = {k: min(v) for k, v in times.items()}
    diff = np.abs(frames["engine"].astype(np.int16) - frames["bare"].astype(np.int16))
    return {
        "profile": profile.name,
        "size": f"{size}x{size}x{plan.frames}",
        "steps": plan.steps,
        "engine_s": [round(t, 3) for t in times["engine"]],
        "bare_s": [round(t, 3) for t in times["bare"]],
        "overhead_ratio": round(best["engine"] / best["bare"], 4),
        "frames_identical": bool(np.array_equal(frames["engine"], frames["bare"])),
        "max_pixel_difference": int(diff.max()),
        "prompt": prompt_note,
        "bare_video_finite": all(finite),
        "how": "one warm-up run, then engine and bare alternately twice; best of each. Same modules "
        "(the engine's pipeline), profile, size and seed (global RNG and generator seeded alike)",
        "diffusers_defaults": bare_defaults(kit, engine, own_prompt, deadline),
    }


def bare_defaults(kit: Kit, engine: Engine, own_prompt: bool, deadline: float) -> dict[str, Any]:
    """The bare pipeline at diffusers' own defaults (no forward chunking, decode_chunk_size=1), the
    setting the WebUI figures compare with: device peak per size beside the model and the RTX 4090
    figures, as far as the time allows."""
    plan = kit.plan
    runs: list[dict[str, Any]] = []
    skipped: list[str] = []
    previous: tuple[int, float] | None = None
    for size in plan.sizes:
        predicted = previous[1] * (size / previous[0]) ** 2.5 if previous else 0.0
        if time.monotonic() + predicted > deadline:
            skipped.append(f"{size}x{size}: would take ~{predicted:.0f} s, past the part's budget")
            continue
        spec = job(size, size, plan.frames, plan.steps)
        free_device_memory(plan.device)
        if plan.cuda:
            torch.cuda.reset_peak_memory_stats(plan.device)
        started = time.perf_counter()
        _bare_call(engine.pipeline, spec, PIPELINE_DEFAULT, plan.device, own_prompt, [])
        seconds = time.perf_counter() - started
        previous = (size, seconds)
        run: dict[str, Any] = {"size": f"{size}x{size}x{plan.frames}", "seconds": round(seconds, 2)}
        if plan.cuda:
            reserved = int(torch.cuda.max_memory_reserved(plan.device))
            model = memory.estimate_bytes(size, size, plan.frames, PIPELINE_DEFAULT, arch=engine.arch)
            run.update(
                peak_allocated=int(torch.cuda.max_memory_allocated(plan.device)),
                peak_reserved=reserved,
                device_peak=kit.context_bytes() + reserved,
                model_assumed_costs=model,
                webui_4090_gb=REFERENCE_4090_GB.get(size),
            )
        runs.append(run)
    return {"runs": runs, "skipped": skipped}


def part_oom(kit: Kit, deadline: float) -> dict[str, Any]:
    plan = kit.plan
    ctx = kit.context_bytes()
    caps = [(name, card, card - ctx, ref) for name, card, ref in CARDS]
    args = [sys.executable, str(Path(__file__).resolve()), "--oom-child", "--device", str(plan.device)]
    args += ["--cache-dir", str(kit.cache_dir), "--caps", ",".join(str(c[2]) for c in caps)]
    if plan.tiny:
        args.append("--tiny")
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(max(1.0, deadline - started), stop)
    timer.start()
    try:
        out, err = proc.communicate()
    finally:
        timer.cancel()
    for line in out.splitlines():
        if line.startswith(_RESULT):
            records.append(json.loads(line[len(_RESULT) :]))
    for i, (name, card, cap, ref) in enumerate(caps):
        if i < len(records):
            records[i].update(card=name, card_bytes=card, reference=f"WebUI: a {name} card {ref}")
            # Up through this cap: it went on to the next, exited cleanly, or was alive when its time ran out.
            records[i]["process_stayed_up"] = (
                i + 1 < len(records) or proc.returncode == 0 or timed_out.is_set()
            )
        else:
            records.append(
                {
                    "card": name,
                    "cap_bytes": cap,
                    "ok": False,
                    "process_stayed_up": False,
                    "error": "no result: the child process died or ran out of time before this cap",
                }
            )
    return {
        "how": (
            "child process; caps = card size - measured CUDA context, set with the node's "
            "limit_torch_memory (torch.cuda.set_per_process_memory_fraction); first profile by the node's "
            "first_profile from the free memory such a card's NVML would report (cap - this process's "
            "reserved bytes; the node's capped monitor's figure and choice beside it); allow_degrade on"
            if plan.cuda
            else "SIMULATED (no CUDA caps on a CPU): free VRAM from the node's simulated probe, and OOMs "
            "injected by a fault plan wherever the full-size model's estimate for the "
            f"{'x'.join(map(str, plan.oom_stands_for))} job exceeds the cap"
        ),
        "simulated": not plan.cuda,
        "child_exit": proc.returncode,
        "child_timed_out": timed_out.is_set(),
        "child_stderr_tail": err[-3000:] if proc.returncode else "",
        "seconds": round(time.monotonic() - started, 2),
        "caps": records,
    }


def simulated_fault_plan(
    width: int, height: int, frames: int, cap: int, ladder: tuple[Profile, ...], *, at_least: tuple[int, int]
) -> str:
    """A fault plan (faults.py syntax) that runs out of memory at every stage and profile whose
    full-size fp16 estimate exceeds `cap`, for attempts at least `at_least` large (smaller, degraded
    attempts pass): what a card with `cap` free would do, by the model."""
    costs = memory.ASSUMED_COSTS
    stage_names = {"encode": "encode_prompt", "denoise": "denoise", "decode": "decode"}
    failing: dict[str, list[str]] = {}
    for profile in ladder:
        for s in memory.stage_bytes(width, height, frames, profile):
            need = costs.cuda_context_bytes + s.weights + int(s.transient * (1 + costs.allocator_overhead))
            if need > cap:
                failing.setdefault(stage_names[s.stage], []).append(profile.name)
    w, h = at_least
    return ";".join(f"{stage}:{','.join(names)}@{w}x{h}" for stage, names in failing.items())


def oom_child(args: argparse.Namespace) -> int:
    """The OOM part's child: one JSON line per cap on stdout."""
    device = torch.device(args.device)
    plan = make_plan(device, args.tiny, 60.0)
    cuda = device.type == "cuda"
    config_dir = ensure_tiny(args.cache_dir) if args.tiny else FULL_SIZE_CONFIGS
    pipe = build_random_pipeline(config_dir, device=device, dtype=resolve_dtype(None, str(device)), seed=SEED)
    config = EngineConfig(
        model="gpu-check", device=str(device), dtype=None, cache_dir=args.cache_dir, offline=True
    )
    engine = Engine.from_pipeline(config, pipe)
    del pipe
    nvml = Nvml(device.index or 0) if cuda else None
    total = torch.cuda.mem_get_info(device)[1] if cuda else 0
    w, h, f = plan.oom_size
    for cap in (int(c) for c in args.caps.split(",")):
        free_device_memory(device)
        rec: dict[str, Any] = {"cap_bytes": cap, "size": f"{w}x{h}x{f}", "steps": plan.steps}
        if cuda:
            rec["memory_fraction"] = round(limit_torch_memory(str(device), cap, total), 4)
            monitor = make_monitor(str(device), max_vram_bytes=cap).read()
            # A real card's NVML free already excludes what this process holds (weights, cache); the
            # capped monitor of a big card reports the whole cap. The run takes the real card's view.
            reading = replace(monitor, free_bytes=max(0, cap - int(torch.cuda.memory_reserved(device))))
            capped = first_profile(
                w,
                h,
                f,
                monitor,
                engine.ladder,
                arch=engine.arch,
                dtype_name=engine.dtype_name,
                accelerator=True,
            )
            rec.update(probe=monitor.source, monitor_free=monitor.free_bytes, card_free=reading.free_bytes)
            rec["first_profile_by_capped_monitor"] = capped.profile.name
        else:
            reading = make_monitor("cpu", simulate_free_bytes=cap).read()
            sw, sh, sf = plan.oom_stands_for
            fault = simulated_fault_plan(sw, sh, sf, cap, engine.ladder, at_least=(w, h))
            rec["fault_plan"] = fault
            engine.config = replace(engine.config, fault_plan=parse_fault_plan(fault) if fault else None)
        # The node's own choice (validation.profile_for). On CPU the tiny model fits anything, so the
        # injected faults walk it down the ladder as the full-size model would go on such a card.
        choice = first_profile(
            w,
            h,
            f,
            reading,
            engine.ladder,
            arch=engine.arch,
            dtype_name=engine.dtype_name,
            accelerator=engine.has_accelerator,
        )
        rec.update(
            first_profile=choice.profile.name, fits_by_model=choice.fits, free_bytes=reading.free_bytes
        )
        meter = StageMeter(device, nvml)
        started = time.perf_counter()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        try:
            outcome = engine.run(
                job(w, h, f, plan.steps, allow_degrade=True), choice.profile, meter, threading.Event()
            )
            rec.update(ok=True, profile=outcome.profile, degradations=list(outcome.degradations))
            rec["attempts"] = int(outcome.metadata.get("attempts", "0"))
        except OutOfMemoryExhausted as err:
            rec.update(ok=False, error=f"OutOfMemoryExhausted: {err}")
        # Anything else escaped the engine's OOM handling (e.g. a cuBLAS allocation failure, which
        # is a plain RuntimeError): a finding to record, and the next cap still runs.
        except Exception as err:
            rec.update(ok=False, unhandled=True, error=f"{type(err).__name__}: {err}")
        meter.finish()
        rec["seconds"] = round(time.perf_counter() - started, 2)
        rec["retries"] = meter.retries
        rec["s_per_step"] = round(meter.step_s[-1], 4) if meter.step_s else None
        rec["peak_allocated"] = max((s["allocated"] or 0 for s in meter.stages.values()), default=0)
        if cuda:
            rec["peak_reserved"] = max((s["reserved"] or 0 for s in meter.stages.values()), default=0)
            rec["peak_nvml_used"] = max((s["nvml_used"] or 0 for s in meter.stages.values()), default=0)
            limit_torch_memory(str(device), total, total)
        print(_RESULT + json.dumps(rec), flush=True)
    if nvml:
        nvml.close()
    return 0


def _metric(text: str, name: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                found[",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))] = float(s.value)
    return found


def part_node(kit: Kit, deadline: float) -> dict[str, Any]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.etcd_cluster import free_port
    from tests.media import decode, png

    plan = kit.plan
    port, mport = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    device = "cuda" if plan.cuda else "cpu"
    cmd = [sys.executable, "-m", "i2v_node.main", "--model", "tiny", "--device", device, "--listen", address]
    cmd += [
        "--metrics-listen",
        f"127.0.0.1:{mport}",
        "--node-id",
        "gpu-check",
        "--cache-dir",
        str(kit.cache_dir),
    ]
    if not plan.cuda:
        cmd += ["--simulate-free-vram", "6GiB"]  # a CPU node publishes GPU gauges only when simulated
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log_path = kit.out_dir / "gpu_check_node.log"
    rec: dict[str, Any] = {"command": " ".join(cmd[1:])}
    with open(log_path, "wb") as node_log:
        node = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            started = time.monotonic()
            channel = grpc.insecure_channel(address)
            stub = health_pb2_grpc.HealthStub(channel)
            serving = False
            while time.monotonic() < deadline and node.poll() is None:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        serving = True
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
            channel.close()
            rec["serving_after_s"] = round(time.monotonic() - started, 2)
            if not serving:
                raise RuntimeError(f"node not SERVING (exit {node.poll()}); log: {log_path}")
            image = kit.out_dir / "gpu_check_input.png"
            image.write_bytes(png(64, 64))
            video = kit.out_dir / "gpu_check_node.mp4"
            w, h, f = plan.node_size
            gen = [sys.executable, "-m", "i2v_client.cli", "generate", str(image), "--prompt", PROMPT]
            gen += ["--node", address, "--width", str(w), "--height", str(h), "--frames", str(f)]
            gen += ["--steps", "4", "--seed", "7", "--fps", "8", "-q", "-o", str(video)]
            done = subprocess.run(
                gen,
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=max(5.0, deadline - time.monotonic()),
            )
            rec["generate_exit"] = done.returncode
            rec["generate_output"] = done.stdout.strip() or done.stderr.strip()[-2000:]
            found = re.search(r"profile (\S+), peak ([\d.]+) MiB, tier (\S+)", done.stdout)
            if found:
                rec.update(profile=found.group(1), peak_mib=float(found.group(2)), tier=found.group(3))
            if video.is_file():
                rec["mp4_frames"] = decode(video.read_bytes())[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
                text = r.read().decode()
        finally:
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(10)
    rec["node_exit"] = node.returncode
    gauges = {k: _metric(text, f"i2v_gpu_memory_{k}_bytes") for k in ("used", "free", "total")}
    rec["gauges"] = gauges
    tiers = [k.removeprefix("tier=") for k, v in _metric(text, "i2v_node_tier").items() if v == 1.0]
    rec["tier_gauge"] = tiers[0] if tiers else None
    free = next(iter(gauges["free"].values()), None)
    total = next(iter(gauges["total"].values()), None)
    used = next(iter(gauges["used"].values()), None)
    # The tier comes from what the next job can use (device free plus the node's own cache), not
    # the device's free memory, which the resident weights lower after the first job.
    available = next(iter(_metric(text, "i2v_node_memory_available_bytes").values()), None)
    rec["available_gauge"] = available
    checks = {
        "generate_ok": done.returncode == 0 and rec.get("mp4_frames") == f,
        "tier_matches_gauge": rec.get("tier") is not None and rec.get("tier") == rec["tier_gauge"],
        "tier_matches_available_gauge": available is not None
        and rec.get("tier") == tier_name(tier_for_free_bytes(int(available))),
        "gauges_add_up": None not in (free, total, used)
        and abs((used or 0) + (free or 0) - (total or 0)) <= MIB,
        "clean_exit": node.returncode == 0,
    }
    if kit.nvml is not None:
        checks["gauge_total_is_nvml_total"] = total == kit.nvml.total()
    rec["checks"] = checks
    rec["ok"] = all(checks.values())
    return rec


def _engine(kit: Kit) -> Engine:
    if kit.engine is None:
        raise RuntimeError("no engine: the build part did not run or failed")
    return kit.engine


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "frames_array"}


# ---------------------------------------------------------------------------------------------------
# Report


def measurements_file(kit: Kit, env: dict[str, Any]) -> Measurements | None:
    """The memory model's measurement file from the profile runs (CUDA only)."""
    if not kit.plan.cuda or not kit.context_samples:
        return None
    samples = [
        OverheadSample(int(r["base_allocated"]), int(r["peak_allocated"]), int(r["peak_reserved"]))
        for r in kit.runs
        if r["ok"]
        and profile_by_name(r["profile"]).offload is Offload.NONE
        and r["base_allocated"] is not None
    ]
    try:
        costs = measured.fit_costs(kit.context_samples, samples)
    except ValueError as err:  # nothing to fit yet (e.g. before the profiles part)
        log.info("no gpu_memory.json yet: %s", err)
        return None
    runs = tuple(
        MeasuredRun(
            r["profile"], r["width"], r["height"], r["frames"], kit.context_bytes() + r["peak_reserved"]
        )
        for r in kit.runs
        if r["ok"]
    )
    return Measurements(
        device=str(env.get("gpu", "")),
        costs=costs,
        context_samples=tuple(kit.context_samples),
        overhead_samples=tuple(samples),
        runs=runs,
        versions=env.get("versions", {}),
    )


def _gib(value: Any) -> str:
    return f"{value / GIB:.2f}" if isinstance(value, int | float) and value else "-"


def _pct(value: Any) -> str:
    return f"{value * 100:+.1f}%" if isinstance(value, int | float) else "-"


def markdown(report: dict[str, Any]) -> str:
    parts = report["parts"]
    lines = [f"# GPU check: {report['kit']['device']}, {report['kit']['model']}", ""]
    lines += ["| part | status | seconds | budget s | note |", "|---|---|---|---|---|"]
    for name in PARTS:
        p = parts.get(name, {})
        note = p.get("reason") or p.get("error", "")
        lines.append(
            f"| {name} | {p.get('status', '-')} | {p.get('seconds', '-')} | {p.get('budget_s', '-')} "
            f"| {note} |"
        )
    lines.append(f"\nTotal {report['kit'].get('seconds', '-')} s.\n")
    runs = parts.get("profiles", {}).get("records", [])
    if runs:
        cuda = report["kit"]["device"].startswith("cuda")
        lines += [
            "## Profiles (GiB; model = memory.py with assumed costs, measured context)",
            "",
            "| profile | size | stage | allocated | model alloc | err | reserved+ctx | model | err "
            "| NVML used | s/step |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in runs:
            size = f"{r['width']}x{r['height']}x{r['frames']}"
            if not r["ok"]:
                lines.append(f"| {r['profile']} | {size} | failed | {r.get('error', '')[:80]} |||||||")
                continue
            for stage, s in r["stages"].items():
                lines.append(
                    f"| {r['profile']} | {size} | {stage} | {_gib(s['allocated'])} "
                    f"| {_gib(s.get('model_allocated'))} | {_pct(s.get('error_allocated'))} "
                    f"| {_gib(s.get('device_bytes'))} | {_gib(s.get('model_device'))} "
                    f"| {_pct(s.get('error_device'))} | {_gib(s.get('nvml_used'))} | "
                    f"{r['s_per_step'] if stage == 'denoise' else ''} |"
                )
        if cuda:
            lines += ["", "Peaks against the RTX 4090 WebUI figures (fast profile):", ""]
            for r in runs:
                if r["ok"] and r["profile"] == "fast" and r["width"] in REFERENCE_4090_GB:
                    ref = REFERENCE_4090_GB[r["width"]]
                    lines.append(
                        f"- {r['width']}p: device peak {r['device_peak'] / 1e9:.2f} GB, WebUI {ref} GB"
                    )
        skipped = parts["profiles"].get("skipped", [])
        if skipped:
            lines += ["", "Skipped: " + "; ".join(skipped)]
    steps = parts.get("steps", {})
    if "max_relative_difference" in steps:
        lines += [
            "",
            f"## Step count\n\n{steps['how']}: max difference {_pct(steps['max_relative_difference'])}, "
            f"independent: {steps['independent']}",
        ]
    bare = parts.get("bare", {})
    if "overhead_ratio" in bare:
        lines += [
            "",
            "## Engine vs bare diffusers",
            "",
            f"{bare['size']}, {bare['steps']} steps, profile {bare['profile']}: "
            f"engine {bare['engine_s']} s, bare {bare['bare_s']} s, ratio {bare['overhead_ratio']}, "
            f"frames identical: {bare['frames_identical']} "
            f"(max pixel difference {bare['max_pixel_difference']}); {bare['prompt']}",
        ]
        for d in bare.get("diffusers_defaults", {}).get("runs", []):
            if "device_peak" in d:
                lines.append(
                    f"- diffusers defaults {d['size']}: device peak {d['device_peak'] / 1e9:.2f} GB "
                    f"(model {d['model_assumed_costs'] / 1e9:.2f} GB, WebUI RTX 4090 {d['webui_4090_gb']} GB)"
                )
    oom = parts.get("oom", {})
    if "caps" in oom:
        lines += [
            "",
            f"## OOM path ({'simulated' if oom['simulated'] else 'real CUDA caps'})",
            "",
            "| card | cap GiB | free GiB | first profile | ended on | degradations | peak alloc GiB | s/step "
            "| stayed up | retries |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in oom["caps"]:
            ended = c.get("profile") if c.get("ok") else ("exhausted: " + c.get("error", "")[:60])
            first = c.get("first_profile", "-")
            if c.get("first_profile_by_capped_monitor", first) != first:
                first += f" (capped monitor: {c['first_profile_by_capped_monitor']})"
            lines.append(
                f"| {c.get('card')} | {_gib(c.get('cap_bytes'))} | {_gib(c.get('free_bytes'))} "
                f"| {first} | {ended} | "
                f"{', '.join(c.get('degradations', [])) or '-'} | {_gib(c.get('peak_allocated'))} | "
                f"{c.get('s_per_step', '-')} | {c.get('process_stayed_up')} | {len(c.get('retries', []))} |"
            )
    node = parts.get("node", {})
    if "checks" in node:
        lines += [
            "",
            "## Node end to end",
            "",
            f"`{node['command']}`: tier {node.get('tier')}, profile "
            f"{node.get('profile')}, checks {node['checks']}",
        ]
    return "\n".join(lines) + "\n"


def run_kit(kit: Kit, selected: set[str]) -> dict[str, Any]:
    plan = kit.plan
    kit_started = time.monotonic()
    report: dict[str, Any] = {
        "kit": {
            "device": str(plan.device),
            "model": "tiny" if plan.tiny else "full-size I2VGen-XL (random weights)",
            "sizes": list(plan.sizes),
            "frames": plan.frames,
            "steps": plan.steps,
            "budget_s": round(sum(plan.budgets.values()), 1),
        },
        "parts": {},
    }
    functions: dict[str, Callable[[Kit, float], dict[str, Any]]] = {
        "env": part_env,
        "build": part_build,
        "steps": part_steps,
        "profiles": part_profiles,
        "bare": part_bare,
        "oom": part_oom,
        "node": part_node,
    }
    needs_engine = {"steps", "profiles", "bare"}
    for name in PARTS:
        budget = plan.budgets[name]
        if name == "profiles":  # elastic: what earlier parts left, minus what later ones need
            later = sum(plan.budgets[n] for n in PARTS[PARTS.index(name) + 1 :] if n in selected)
            budget = max(0.0, sum(plan.budgets.values()) - (time.monotonic() - kit_started) - later)
        entry: dict[str, Any] = {"budget_s": round(budget, 1)}
        if name not in selected:
            entry.update(status="skipped", reason="not selected (--parts)")
        elif name in needs_engine and kit.engine is None:
            entry.update(status="skipped", reason="no engine (build did not run or failed)")
        else:
            if name in ("oom", "node"):  # other processes: hand back what our allocator caches
                free_device_memory(plan.device)
            started = time.monotonic()
            log.info("part %s (budget %.0f s)", name, budget)
            try:
                entry.update(functions[name](kit, started + budget))
                entry["status"] = "ok" if entry.get("ok", True) else "failed"
            except Exception as err:
                entry.update(
                    status="failed",
                    error=f"{type(err).__name__}: {err}",
                    traceback=traceback.format_exc()[-4000:],
                )
                log.exception("part %s failed", name)
            entry["seconds"] = round(time.monotonic() - started, 2)
            if entry["seconds"] > budget:
                entry["over_budget"] = True
        report["parts"][name] = entry
        report["kit"]["seconds"] = round(time.monotonic() - kit_started, 2)
        write_outputs(kit, report)
    return report


def write_outputs(kit: Kit, report: dict[str, Any]) -> None:
    kit.out_dir.mkdir(parents=True, exist_ok=True)
    (kit.out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (kit.out_dir / "gpu_check.md").write_text(markdown(report))
    found = measurements_file(kit, report["parts"].get("env", {}))
    if found is not None:
        (kit.out_dir / "gpu_memory.json").write_text(json.dumps(found.to_dict(), indent=1) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--tiny", action="store_true", help="the tiny model instead of the full-size one")
    p.add_argument(
        "--budget-s", type=float, default=None, help="time budget of all parts (cuda 400, cpu 100)"
    )
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--out", type=Path, default=None, help="output folder (default $OUT, else out/)")
    p.add_argument("--oom-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--caps", default="", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    if args.oom_child:
        return oom_child(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if device.type == "cpu" and not args.tiny:
        print("error: --device cpu needs --tiny (the full-size model on a CPU takes hours)", file=sys.stderr)
        return 2
    selected = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = selected - set(PARTS)
    if unknown:
        print(f"error: unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    budget = args.budget_s or (400.0 if device.type == "cuda" else 100.0)
    out_dir = args.out or Path(os.environ.get("OUT") or ROOT / "out")
    with tempfile.TemporaryDirectory(prefix="i2v-gpu-check-") as cache:
        kit = Kit(make_plan(device, args.tiny, budget), out_dir, Path(cache))
        try:
            report = run_kit(kit, selected)
        finally:
            if kit.nvml:
                kit.nvml.close()
    text = markdown(report)
    print(text)
    print(f"wrote {out_dir / 'gpu_check.json'} and {out_dir / 'gpu_check.md'}")
    failed = [n for n, p in report["parts"].items() if p.get("status") == "failed"]
    if failed:
        print(f"failed parts: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
