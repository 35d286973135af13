"""The OpenAI videos API's request and Video object, mapped to and from the cluster's wire (pure).

A create request carries OpenAI's fields (prompt, input_reference, model, seconds, size) and, as
extra body fields, ours (negative_prompt, frames, fps, steps, guidance, seed, allow_degrade).
`size` "WxH" sets width and height; `seconds` sets frames at the request's fps (its `fps`, else the
default), so a clip is as long as asked. Values arrive as form strings (multipart) or JSON values;
range checks are the coordinator's, whose field violations name the wire fields: `renames` maps
those back to the parameters the caller sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from i2v_contract.limits import DEFAULT_LIMITS, Limits
from i2v_contract.states import ASSIGNED, CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_gateway.errors import ApiError

FIELDS = frozenset(
    {
        "prompt", "input_reference", "model", "seconds", "size",
        "negative_prompt", "frames", "fps", "steps", "guidance", "guidance_scale", "seed", "allow_degrade",
    }
)  # fmt: skip
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.DOTALL)


@dataclass
class Parsed:
    """A create request on the wire, and which wire fields came from which parameter."""

    request: common_pb2.GenerationRequest
    renames: dict[str, str] = field(default_factory=dict)


def _int(name: str, value: Any, maximum: int = 2**32 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ApiError(400, f"{name}: {value!r} is not a whole number", param=name, code="invalid_type")
    try:
        number = int(value)
    except ValueError:
        raise ApiError(
            400, f"{name}: {value!r} is not a whole number", param=name, code="invalid_type"
        ) from None
    if not 0 <= number <= maximum:
        raise ApiError(
            400, f"{name}: {number} is out of range; use 0..{maximum}", param=name, code="invalid_value"
        )
    return number


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(400, f"{name}: {value!r} is not a number", param=name, code="invalid_type")
    try:
        number = float(value)
    except ValueError:
        raise ApiError(400, f"{name}: {value!r} is not a number", param=name, code="invalid_type") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ApiError(400, f"{name}: {value!r} is not a finite number", param=name, code="invalid_value")
    return number


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, f"{name}: {value!r} is not true or false", param=name, code="invalid_type")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{name}: {value!r} is not a string", param=name, code="invalid_type")
    return value


def parse_size(value: Any) -> tuple[int, int]:
    """ "WxH" -> (width, height)."""
    found = _SIZE.match(value) if isinstance(value, str) else None
    if found is None:
        raise ApiError(
            400, f"size: {value!r} is not WIDTHxHEIGHT (e.g. 512x512)", param="size", code="invalid_value"
        )
    return int(found.group(1)), int(found.group(2))


def frames_for(seconds: float, fps: int) -> int:
    """Frames of a clip `seconds` long at `fps` (at least 1)."""
    return max(1, round(seconds * fps))


def image_from_reference(value: Any) -> bytes:
    """A JSON body's input_reference: {"image_url": "data:image/...;base64,..."} (the only form a
    gateway without outside access can read)."""
    url = value.get("image_url") if isinstance(value, dict) else value if isinstance(value, str) else None
    found = _DATA_URL.match(url) if isinstance(url, str) else None
    if found is None:
        raise ApiError(
            400,
            'input_reference: send the image as a multipart file, or as {"image_url": '
            '"data:image/png;base64,..."}; file ids and remote URLs are not fetched',
            param="input_reference",
            code="invalid_value",
        )
    try:
        return base64.b64decode(found.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400,
            "input_reference: the data URL is not valid base64",
            param="input_reference",
            code="invalid_value",
        ) from None


def parse_create(fields: Mapping[str, Any], image: bytes | None, limits: Limits = DEFAULT_LIMITS) -> Parsed:
    """A create request's fields (image bytes apart) -> the GenerationRequest it asks for."""
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise ApiError(
            400,
            f"{unknown[0]}: unknown parameter; known: {', '.join(sorted(FIELDS))}",
            param=unknown[0],
            code="unknown_parameter",
        )
    if "prompt" not in fields:
        raise ApiError(400, "prompt: missing; describe the video to make", param="prompt", code="missing")
    if image is None and "input_reference" in fields:
        image = image_from_reference(fields["input_reference"])
    if not image:
        raise ApiError(
            400,
            "input_reference: missing; this cluster turns an image into a video: "
            "send one (PNG, JPEG or WebP)",
            param="input_reference",
            code="missing",
        )
    parsed = Parsed(common_pb2.GenerationRequest(image=image, prompt=_text("prompt", fields["prompt"])))
    parsed.renames["image"] = "input_reference"
    _fill(parsed, fields, limits)
    return parsed


def _fill(parsed: Parsed, fields: Mapping[str, Any], limits: Limits) -> None:
    req, renames = parsed.request, parsed.renames
    req.negative_prompt = _text("negative_prompt", fields.get("negative_prompt", ""))
    req.model = _text("model", fields.get("model", ""))
    if "size" in fields:
        req.width, req.height = parse_size(fields["size"])
        renames.update(width="size", height="size")
    req.fps = _int("fps", fields.get("fps", 0))
    req.steps = _int("steps", fields.get("steps", 0))
    if "guidance" in fields and "guidance_scale" in fields:
        raise ApiError(400, "guidance: give guidance or guidance_scale, not both", param="guidance")
    if "guidance" in fields:
        renames["guidance_scale"] = "guidance"
    req.guidance_scale = _float("guidance", fields.get("guidance", fields.get("guidance_scale", 0.0)))
    if fields.get("seed") not in (None, ""):
        req.seed = _int("seed", fields["seed"], 2**64 - 1)
    req.allow_degrade = _bool("allow_degrade", fields.get("allow_degrade", False))
    if "seconds" in fields:
        if "frames" in fields:
            raise ApiError(400, "seconds: give seconds or frames, not both", param="seconds")
        seconds = _float("seconds", fields["seconds"])
        if seconds <= 0:
            raise ApiError(
                400, f"seconds: {seconds:g} is not positive", param="seconds", code="invalid_value"
            )
        req.fps = req.fps or limits.default_fps
        req.frames = frames_for(seconds, req.fps)
        renames["frames"] = "seconds"
    else:
        req.frames = _int("frames", fields.get("frames", 0))


# --- the Video object -------------------------------------------------------------------------

STATUS = {
    QUEUED: "queued",
    ASSIGNED: "in_progress",
    RUNNING: "in_progress",
    SUCCEEDED: "completed",
    FAILED: "failed",
    CANCELLED: "failed",
}
# Where each stage starts on the percentage bar; denoising fills most of it, step by step.
_STAGE_PERCENT = {
    common_pb2.STAGE_QUEUED: 0,
    common_pb2.STAGE_ASSIGNED: 1,
    common_pb2.STAGE_LOADING: 2,
    common_pb2.STAGE_ENCODE_PROMPT: 3,
    common_pb2.STAGE_ENCODE_IMAGE: 4,
    common_pb2.STAGE_RETRY: 5,
    common_pb2.STAGE_DENOISE: 5,
    common_pb2.STAGE_DECODE: 91,
    common_pb2.STAGE_ENCODE_VIDEO: 96,
}
DENOISE_SHARE = 86


def percent(state: int, progress: common_pb2.Progress | None) -> int:
    """The Video object's `progress`: 0 queued, 100 done, stages and denoise steps between."""
    if state == SUCCEEDED:
        return 100
    if progress is None or state == QUEUED:
        return 1 if state == ASSIGNED else 0
    done = _STAGE_PERCENT.get(progress.stage, 0)
    if progress.stage == common_pb2.STAGE_DENOISE and progress.total_steps:
        done += DENOISE_SHARE * min(progress.step, progress.total_steps) // progress.total_steps
    return min(done, 99)


def seconds_text(frames: int, fps: int) -> str:
    """A clip's length as OpenAI writes it ("4"), with decimals where it is not whole ("2.5")."""
    return f"{frames / fps:.3g}" if fps else "0"


def _error(job: coordinator_pb2.Job) -> dict[str, str] | None:
    if job.state == CANCELLED:
        return {"code": "cancelled", "message": job.error or "cancelled"}
    if job.state == FAILED:
        return {"code": "generation_failed", "message": job.error or "the job failed"}
    return None


def video_object(
    job: coordinator_pb2.Job, progress: common_pb2.Progress | None = None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """The OpenAI Video object for a job, with our own fields beside OpenAI's."""
    req, result = job.request, job.result
    done = job.state == SUCCEEDED
    width = (done and result.width) or req.width or limits.default_width
    height = (done and result.height) or req.height or limits.default_height
    frames = (done and result.frames) or req.frames or limits.default_frames
    fps = (done and result.fps) or req.fps or limits.default_fps
    video: dict[str, Any] = {
        "id": job.job_id,
        "object": "video",
        "created_at": int(job.created_at),
        "completed_at": int(job.finished_at) if job.finished_at else None,
        "expires_at": None,
        "model": result.metadata.get("model") or req.model or "i2vgen-xl",
        "progress": percent(job.state, progress),
        "prompt": req.prompt,
        "remixed_from_video_id": None,
        "seconds": seconds_text(frames, fps),
        "size": f"{width}x{height}",
        "status": STATUS.get(job.state, "queued"),
        "error": _error(job),
        # Ours: the request as the cluster runs it and, once done, what was made.
        "state": coordinator_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower(),
        "frames": frames,
        "fps": fps,
        "steps": (done and result.steps) or req.steps or limits.default_steps,
        "guidance": req.guidance_scale or limits.default_guidance,
        "seed": (done and result.seed) or (req.seed if req.HasField("seed") else None),
        "negative_prompt": req.negative_prompt,
        "allow_degrade": req.allow_degrade,
        "attempt": job.attempt,
        "node_id": job.node_id or None,
        "profile": (done and result.profile) or (progress.profile if progress is not None else "") or None,
        "degradations": list(result.degradations) if done else [],
        "video_bytes": (done and result.video_size) or None,
    }
    return video
