"""Request validation: what a GenerationRequest may ask for, and turning 0/unset into defaults.

Nothing is clipped or truncated silently: a value out of range is a FieldError naming the field,
the allowed range and what to send instead (the gRPC layers map it to INVALID_ARGUMENT).

Defaults follow I2VGen-XL's own: 16 frames at 8 fps, 50 DDIM steps, guidance 9, 512x512 (its
reference resolution in the practitioners' figures; a node may override every default).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from i2v_contract.wire import common_pb2

MIB = 1024**2


class FieldError(ValueError):
    """A request field is out of range. `message` names the field, the range and the fix;
    `description` is the same without the field's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message
        self.message = f"{field}: {message}"


@dataclass(frozen=True)
class Limits:
    min_size: int = 64  # below one VAE tile of latents (8x8) the UNet's 3 downsamplings fail
    # 1280 px: beyond 1024 the largest published runs stop (21.3 GB on a 24 GB card); 1280 still
    # fits a 40 GB card without offload (memory model). Larger asks go nowhere.
    max_width: int = 1280
    max_height: int = 1280
    size_multiple: int = 8  # the VAE's scale factor
    max_frames: int = 64
    max_steps: int = 200
    max_fps: int = 60
    # 0 on the wire means "default", so guidance below 1 (which disables classifier-free
    # guidance) cannot be asked for; 1.0 is the least: the conditional branch alone.
    min_guidance: float = 1.0
    max_guidance: float = 30.0
    # CLIP reads 77 tokens (about 300 characters of English); longer prompts are cut by the
    # tokenizer. Absurd lengths are refused rather than shipped around the cluster.
    max_prompt_chars: int = 2000
    max_model_chars: int = 256  # a hub id or a path; bounded so every message about the job stays small
    max_image_bytes: int = 20 * MIB
    max_image_pixels: int = 4096 * 4096
    # A job's work grows with width x height x frames x steps (every step denoises every pixel of
    # every frame). The budget is the largest frame at the most frames at the default 50 steps: the
    # longest job the fleet takes (hours on a 40 GB card); more steps need a smaller video.
    max_work: int = 1280 * 1280 * 64 * 50
    image_formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
    default_width: int = 512
    default_height: int = 512
    default_frames: int = 16
    default_fps: int = 8
    default_steps: int = 50
    default_guidance: float = 9.0


DEFAULT_LIMITS = Limits()

# Every value of the wire's uint64 is a seed: torch's generators take 0..2**64-1 as they are (CUDA's
# Philox keys on all 64 bits, the CPU's Mersenne Twister on the low 32), so nothing is refused or
# remapped and a seed renders the same as before the range grew.
SEED_MAX = 2**64 - 1
# Seeds drawn for requests that leave it unset stay below 2**63: nodes of earlier versions refused
# larger ones, and a rolling upgrade mixes versions.
RANDOM_SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class Normalized:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    guidance_scale: float
    seed: int
    allow_degrade: bool
    return_frames: bool
    model: str


def _size(field: str, value: int, default: int, limits: Limits, maximum: int) -> int:
    if value == 0:
        return default
    step = limits.size_multiple
    allowed = f"use {limits.min_size}..{maximum} in steps of {step}"
    if value % step:
        raise FieldError(field, f"{value} is not a multiple of {step}; {allowed}")
    if not limits.min_size <= value <= maximum:
        raise FieldError(field, f"{value} is out of range; {allowed}")
    return value


def _count(field: str, value: int, default: int, maximum: int, unit: str) -> int:
    if value == 0:
        return default
    if value > maximum:
        raise FieldError(field, f"{value} is too many {unit}; use 1..{maximum} (0 = default)")
    return value


def _text(field: str, value: str, limits: Limits) -> str:
    if len(value) > limits.max_prompt_chars:
        raise FieldError(
            field,
            f"{len(value)} characters is too long; use at most {limits.max_prompt_chars} "
            "(the text encoder reads about the first 300)",
        )
    if "\x00" in value:
        raise FieldError(field, "contains a NUL character; send plain text")
    return value


def normalize_request(
    req: common_pb2.GenerationRequest, limits: Limits, *, random_seed: Callable[[], int]
) -> Normalized:
    """Fill defaults and range-check every field except the image bytes (see decode_image)."""
    guidance = float(req.guidance_scale)
    if guidance == 0.0:
        guidance = limits.default_guidance
    elif not limits.min_guidance <= guidance <= limits.max_guidance:  # NaN fails this too
        raise FieldError(
            "guidance_scale",
            f"{guidance} is out of range; use {limits.min_guidance}..{limits.max_guidance} (0 = default)",
        )
    seed = req.seed if req.HasField("seed") else random_seed()
    norm = Normalized(
        prompt=_text("prompt", req.prompt, limits),
        negative_prompt=_text("negative_prompt", req.negative_prompt, limits),
        width=_size("width", req.width, limits.default_width, limits, limits.max_width),
        height=_size("height", req.height, limits.default_height, limits, limits.max_height),
        frames=_count("frames", req.frames, limits.default_frames, limits.max_frames, "frames"),
        fps=_count("fps", req.fps, limits.default_fps, limits.max_fps, "frames per second"),
        steps=_count("steps", req.steps, limits.default_steps, limits.max_steps, "steps"),
        guidance_scale=guidance,
        seed=seed,
        allow_degrade=req.allow_degrade,
        return_frames=req.return_frames,
        model=_model(req.model, limits),
    )
    check_work(norm.width, norm.height, norm.frames, norm.steps, limits)
    return norm


def check_work(width: int, height: int, frames: int, steps: int, limits: Limits) -> None:
    """width x height x frames x steps within the budget (limits.max_work); a FieldError naming
    steps (the one field that can always bring a valid size within it) and the product otherwise."""
    work = width * height * frames * steps
    if work <= limits.max_work:
        return
    most_steps = limits.max_work // (width * height * frames)
    raise FieldError(
        "steps",
        f"width x height x frames x steps = {width} x {height} x {frames} x {steps} = {work} is over "
        f"the budget of {limits.max_work}; use at most {most_steps} steps at this size, or fewer "
        "frames or pixels",
    )


def _model(value: str, limits: Limits) -> str:
    if len(value) > limits.max_model_chars:
        raise FieldError(
            "model",
            f"{len(value)} characters is too long; use at most {limits.max_model_chars} (a model id or "
            "path), or leave it empty for whatever the node serves",
        )
    return value


def check_model(requested: str, served: str) -> None:
    """An empty request means "whatever is served"; anything else must match exactly."""
    if requested and requested != served:
        raise FieldError("model", f"{requested!r} is not served here; send {served!r} or leave it empty")


def decode_image(data: bytes, limits: Limits) -> Image.Image:
    """Decode an input image to RGB. The pixel count is checked from the header before any pixel
    is decoded, so a small file claiming a huge canvas costs nothing."""
    if not data:
        raise FieldError("image", "is empty; send a PNG, JPEG or WebP image")
    if len(data) > limits.max_image_bytes:
        raise FieldError(
            "image",
            f"{len(data)} bytes is too large; send at most {limits.max_image_bytes} bytes",
        )
    formats = ", ".join(limits.image_formats)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image = Image.open(io.BytesIO(data), formats=list(limits.image_formats))
            except UnidentifiedImageError:
                raise FieldError(
                    "image", f"{len(data)} bytes are not a {formats} image; send one of those formats"
                ) from None
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise FieldError(
                    "image",
                    f"{width}x{height} pixels is too many; send at most "
                    f"{limits.max_image_pixels} pixels (e.g. 4096x4096)",
                )
            image.load()
            return image.convert("RGB")
    except FieldError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FieldError(
            "image",
            f"claims too many pixels, a decompression bomb ({exc}); send at most "
            f"{limits.max_image_pixels} pixels",
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # PIL reports unknown, corrupt and truncated data as these.
        raise FieldError(
            "image", f"cannot be decoded ({type(exc).__name__}: {exc}); send {formats}"
        ) from None
