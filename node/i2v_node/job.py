"""Values passed between the node's gRPC layer and its generation engine (no torch, no gRPC here)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from i2v_contract.wire import common_pb2


@dataclass(frozen=True)
class JobSpec:
    """A validated request with defaults filled in; what the engine runs."""

    image: Image.Image  # decoded RGB image, already size-checked
    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    guidance_scale: float
    seed: int
    allow_degrade: bool = False
    return_frames: bool = False


@dataclass(frozen=True)
class ProgressEvent:
    stage: int  # common_pb2.Stage value
    step: int = 0
    total_steps: int = 0
    profile: str = ""
    message: str = ""


@dataclass(frozen=True)
class Outcome:
    """What one successful engine run produced."""

    frames: np.ndarray  # uint8, shape (frames, height, width, 3)
    spec: JobSpec  # the spec actually run (differs from the request after degradations)
    profile: str
    degradations: tuple[str, ...]
    peak_bytes: int
    timings: dict[str, float] = field(default_factory=dict)  # encode_s, denoise_s, decode_s
    metadata: dict[str, str] = field(default_factory=dict)


class Cancelled(Exception):
    """The caller cancelled (or its deadline passed); raised from inside the denoising loop."""


class OutOfMemoryExhausted(Exception):
    """Even the leanest profile (and every allowed degradation) ran out of memory."""

    def __init__(self, message: str, stage: int = common_pb2.STAGE_UNSPECIFIED) -> None:
        super().__init__(message)
        self.stage = stage
