"""The generation engine: one I2VGen-XL pipeline, run one job at a time with progress, cancellation
and out-of-memory recovery.

OOM recovery: an attempt that raises torch.OutOfMemoryError at any stage is abandoned, memory is
freed outside the except block (the traceback pins the tensors until then), and `oom.next_after_oom`
says what comes next: a leaner profile, one degradation rung (restarting from the caller's first
profile), or nothing. Failed attempts at the same size are cheap because OOM mostly strikes at the
first denoising step. When nothing is left, OutOfMemoryExhausted names the stage, the size and what
would fit.

Progress: the pipeline has no step callback, so forward hooks mark stages (image encoder: encode
image; first UNet call: denoise; VAE decoder: decode) and the UNet's post-forward hook counts steps
(classifier-free guidance batches both branches into one call per step). The same hooks check the
cancel event, so a cancel stops the run within one step.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from i2v_contract.memory import ArchSpec
from i2v_contract.profiles import Profile, usable_profiles
from i2v_contract.states import stage_name
from i2v_contract.wire import common_pb2
from i2v_node.apply import ProfiledPipeline, decode_chunk_arg
from i2v_node.degrade import Size
from i2v_node.faults import FaultPlan, parse_fault_plan
from i2v_node.job import Cancelled, JobSpec, Outcome, OutOfMemoryExhausted, ProgressEvent
from i2v_node.loader import dtype_name, load_pipeline, resolve_dtype
from i2v_node.oom import Degrade, Exhausted, OomAttempt, memory_facts, next_after_oom
from i2v_node.peak import PeakMeter
from i2v_node.prompt import encode_prompts

__all__ = ["Engine", "EngineConfig", "FaultPlan", "parse_fault_plan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    model: str  # "tiny", a local pipeline directory, or a hub id
    device: str  # "cpu" | "cuda" | "cuda:N"
    dtype: str | None  # None: float16 on cuda, float32 on cpu
    cache_dir: Path  # where `tiny` is built ($I2V_CACHE_DIR or ~/.cache/i2v-cluster by the CLI)
    offline: bool = False
    fault_plan: FaultPlan | None = None  # TESTING ONLY: injected OOMs


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but this torch build sees no CUDA device; use --device cpu"
        )
    return dev


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


@dataclass
class _Attempt:
    """Mutable state of one attempt, shared with the hooks."""

    spec: JobSpec
    profile: Profile
    on_progress: Callable[[ProgressEvent], None]
    cancel: threading.Event
    fault_plan: FaultPlan | None
    stage: int = common_pb2.STAGE_LOADING
    step: int = 0
    started: float = 0.0
    denoise_at: float = 0.0
    decode_at: float = 0.0

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(
                f"cancelled at {stage_name(self.stage)} (after step {self.step}/{self.spec.steps})"
            )

    def enter(self, stage: int) -> None:
        """Start `stage` once: emit its event, honour cancel, fire an injected fault."""
        if self.stage == stage:
            return
        self.stage = stage
        self.on_progress(ProgressEvent(stage, step=0, total_steps=self.spec.steps, profile=self.profile.name))
        self.check_cancel()
        plan = self.fault_plan
        if plan and plan.should_fail(stage, self.profile.name, self.spec.width, self.spec.height):
            raise torch.OutOfMemoryError(
                f"injected by fault plan at {stage_name(stage)} ({self.profile.name})"
            )

    def step_done(self) -> None:
        self.step += 1
        self.on_progress(
            ProgressEvent(
                common_pb2.STAGE_DENOISE,
                step=self.step,
                total_steps=self.spec.steps,
                profile=self.profile.name,
            )
        )
        self.check_cancel()


@dataclass(frozen=True)
class _Done:
    frames: np.ndarray
    peak_bytes: int
    timings: dict[str, float]


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        holder: ProfiledPipeline,
        device: torch.device,
        dtype: torch.dtype,
        arch: ArchSpec,
    ) -> None:
        self.config = config
        self.model_id = config.model
        self.device = str(device)
        self.dtype_name = dtype_name(dtype)
        self.has_accelerator = device.type == "cuda"
        self.arch = arch  # measured from the loaded components: the memory model's input
        self.load_seconds = 0.0
        self.ladder: tuple[Profile, ...] = usable_profiles(self.has_accelerator)
        self._holder = holder
        self._device = device
        self._busy = threading.Lock()
        self._meter = PeakMeter(device)
        self._dtype_bytes = dtype.itemsize

    @classmethod
    def load(cls, config: EngineConfig) -> Engine:
        """Load (for `tiny`: build once, then load) and place the pipeline; raises ValueError with a
        message for the operator when the model, device or dtype is unusable."""
        started = time.monotonic()
        _check_device(config.device)
        dtype = resolve_dtype(config.dtype, config.device)
        pipe = load_pipeline(config.model, dtype=dtype, cache_dir=config.cache_dir, offline=config.offline)
        engine = cls.from_pipeline(config, pipe)
        engine.load_seconds = time.monotonic() - started
        log.info(
            "loaded %s on %s (%s) in %.1fs; profiles: %s%s",
            config.model,
            engine.device,
            engine.dtype_name,
            engine.load_seconds,
            ", ".join(p.name for p in engine.ladder),
            "; FAULT INJECTION ACTIVE (testing only)" if config.fault_plan else "",
        )
        return engine

    @classmethod
    def from_pipeline(cls, config: EngineConfig, pipe: Any) -> Engine:
        """An engine around a pipeline already in memory, in its own dtype, with the fastest profile
        applied (Engine.load's second half; the GPU kit passes a full-size random-weight pipeline)."""
        device = _check_device(config.device)
        holder = ProfiledPipeline(pipe, device)
        engine = cls(config, holder, device, pipe.unet.dtype, ArchSpec.from_pipeline(pipe, name=config.model))
        holder.apply(engine.ladder[0])
        return engine

    @property
    def pipeline(self) -> Any:
        """The pipeline as the current profile left it (measurement tools call it directly)."""
        return self._holder.pipe

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("Engine.run called while another run is in progress")
        try:
            yield
        finally:
            self._busy.release()

    def run(
        self,
        spec: JobSpec,
        first_profile: Profile,
        on_progress: Callable[[ProgressEvent], None],
        cancel: threading.Event,
    ) -> Outcome:
        if first_profile not in self.ladder:
            usable = ", ".join(p.name for p in self.ladder)
            raise ValueError(f"profile {first_profile.name} is not usable on {self.device}; usable: {usable}")
        with self._exclusive():
            log.info(
                "run %dx%d, %d frames, %d steps, seed %d: profile %s (the caller's choice)",
                spec.width,
                spec.height,
                spec.frames,
                spec.steps,
                spec.seed,
                first_profile.name,
            )
            return self._run(spec, first_profile, on_progress, cancel)

    def _run(
        self,
        spec: JobSpec,
        first_profile: Profile,
        on_progress: Callable[[ProgressEvent], None],
        cancel: threading.Event,
    ) -> Outcome:
        """Attempts until one finishes; after each OOM, `oom.next_after_oom` says what comes next."""
        requested = Size(spec.width, spec.height, spec.frames)
        current, profile = spec, first_profile
        degradations: list[str] = []
        attempts = 0
        while True:
            attempts += 1
            result = self._attempt(current, profile, on_progress, cancel)
            if isinstance(result, _Done):
                return Outcome(
                    frames=result.frames,
                    spec=current,
                    profile=profile.name,
                    degradations=tuple(degradations),
                    peak_bytes=result.peak_bytes,
                    timings=result.timings,
                    metadata=self._metadata(current, profile, first_profile, attempts),
                )
            self._free_memory()
            tried = Size(current.width, current.height, current.frames)
            failed = OomAttempt(result, profile, requested, tried, tuple(degradations))
            step = next_after_oom(
                failed,
                first=first_profile,
                ladder=self.ladder,
                allow_degrade=spec.allow_degrade,
                accelerator=self.has_accelerator,
            )
            if isinstance(step, Exhausted):
                message = step.reason + self._memory_facts(requested)
                log.warning("%s", message)
                raise OutOfMemoryExhausted(message, stage=result)
            log.warning("%s", step.reason)
            if isinstance(step, Degrade):
                degradations.append(step.rung.description)
                after = step.rung.after
                current = replace(current, width=after.width, height=after.height, frames=after.frames)
            profile = step.profile
            on_progress(ProgressEvent(common_pb2.STAGE_RETRY, profile=profile.name, message=step.reason))
            if cancel.is_set():
                raise Cancelled(f"cancelled before retry {attempts + 1}")

    def _attempt(
        self,
        spec: JobSpec,
        profile: Profile,
        on_progress: Callable[[ProgressEvent], None],
        cancel: threading.Event,
    ) -> _Done | int:
        """One try at `spec` with `profile`: the finished frames, or the stage that ran out of memory."""
        state = _Attempt(spec, profile, on_progress, cancel, self.config.fault_plan)
        state.check_cancel()
        handles: list[Any] = []
        oom = False
        try:
            pipe = self._holder.apply(profile)
            self._meter.start()
            state.started = time.perf_counter()
            handles = self._install_hooks(pipe, state)
            frames = self._generate(pipe, spec, profile, state)
        except torch.OutOfMemoryError:
            oom = True
        finally:
            for handle in handles:
                handle.remove()
        if oom:
            return state.stage
        ended = time.perf_counter()
        return _Done(
            frames=frames,
            peak_bytes=self._meter.peak(),
            timings={
                "encode_s": state.denoise_at - state.started,
                "denoise_s": state.decode_at - state.denoise_at,
                "decode_s": ended - state.decode_at,
            },
        )

    def _install_hooks(self, pipe: Any, state: _Attempt) -> list[Any]:
        def on_image(*_: Any) -> None:
            state.enter(common_pb2.STAGE_ENCODE_IMAGE)

        def before_unet(*_: Any) -> None:
            if state.stage != common_pb2.STAGE_DENOISE:
                state.denoise_at = time.perf_counter()
            state.enter(common_pb2.STAGE_DENOISE)

        def after_unet(*_: Any) -> None:
            state.step_done()

        def before_decoder(*_: Any) -> None:
            if state.stage != common_pb2.STAGE_DECODE:
                state.decode_at = time.perf_counter()
            state.enter(common_pb2.STAGE_DECODE)

        return [
            pipe.image_encoder.register_forward_pre_hook(on_image),
            pipe.unet.register_forward_pre_hook(before_unet),
            pipe.unet.register_forward_hook(after_unet),
            pipe.vae.decoder.register_forward_pre_hook(before_decoder),
        ]

    def _generate(self, pipe: Any, spec: JobSpec, profile: Profile, state: _Attempt) -> np.ndarray:
        state.enter(common_pb2.STAGE_ENCODE_PROMPT)
        device = pipe._execution_device
        positive, negative = encode_prompts(
            pipe.tokenizer, pipe.text_encoder, spec.prompt, spec.negative_prompt, device, spec.guidance_scale
        )
        generator = torch.Generator(device=self._device).manual_seed(spec.seed)
        cuda_devices = [self._device.index or 0] if self._device.type == "cuda" else []
        # The VAE samples the image latents from the global RNG (no generator argument): seed it too.
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(spec.seed)
            output = pipe(
                image=spec.image,
                prompt_embeds=positive,
                negative_prompt_embeds=negative,
                height=spec.height,
                width=spec.width,
                target_fps=spec.fps,
                num_frames=spec.frames,
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance_scale,
                decode_chunk_size=decode_chunk_arg(profile),
                generator=generator,
                output_type="np",
            )
        video = np.asarray(output.frames[0])
        frames: np.ndarray = np.clip(np.round(video * 255.0), 0, 255).astype(np.uint8)
        return frames

    def _free_memory(self) -> None:
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _metadata(self, spec: JobSpec, profile: Profile, first: Profile, attempts: int) -> dict[str, str]:
        return {
            "model": self.model_id,
            "device": self.device,
            "dtype": self.dtype_name,
            "seed": str(spec.seed),
            "profile": profile.name,
            "first_profile": first.name,
            "attempts": str(attempts),
            **_versions(),
        }

    def _memory_facts(self, requested: Size) -> str:
        free = int(torch.cuda.mem_get_info(self._device)[0]) if self.has_accelerator else None
        return memory_facts(
            requested, arch=self.arch, ladder=self.ladder, dtype_bytes=self._dtype_bytes, free_bytes=free
        )
