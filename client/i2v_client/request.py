"""What goes in and what comes back: a GenerationRequest from plain arguments, and a Result checked
against its sha256."""

from __future__ import annotations

import hashlib

import grpc

from i2v_client.errors import CallError
from i2v_contract.wire import common_pb2


def build_request(
    image: bytes,
    *,
    prompt: str,
    negative_prompt: str = "",
    width: int = 0,
    height: int = 0,
    frames: int = 0,
    fps: int = 0,
    steps: int = 0,
    guidance_scale: float = 0.0,
    seed: int | None = None,
    allow_degrade: bool = False,
    model: str = "",
    return_frames: bool = False,
) -> common_pb2.GenerationRequest:
    """A GenerationRequest; zeros mean "the server's default"."""
    req = common_pb2.GenerationRequest(
        image=image,
        prompt=prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        frames=frames,
        fps=fps,
        steps=steps,
        guidance_scale=guidance_scale,
        allow_degrade=allow_degrade,
        model=model,
        return_frames=return_frames,
    )
    if seed is not None:
        req.seed = seed
    return req


def checked(result: common_pb2.Result) -> common_pb2.Result:
    """The result, if its inline video matches its sha256 (DATA_LOSS otherwise)."""
    if result.video and result.sha256 and hashlib.sha256(result.video).hexdigest() != result.sha256:
        raise CallError(grpc.StatusCode.DATA_LOSS, "video bytes do not match the result's sha256; retry")
    return result
