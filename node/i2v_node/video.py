"""Frames to MP4 (H.264, yuv420p) and to PNGs, in memory."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
from PIL import Image

_ENCODER = "libx264"  # the H.264 encoder bundled in the PyAV wheels


def _check_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[0] < 1:
        raise ValueError(
            f"frames must be uint8 of shape (frames>=1, height, width, 3), got {frames.dtype} {frames.shape}"
        )


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    """H.264/yuv420p MP4 with exactly len(frames) frames at exactly `fps` (time base 1/fps)."""
    _check_frames(frames)
    count, height, width, _ = frames.shape
    if width % 2 or height % 2:
        # yuv420p subsamples chroma 2x2; request limits keep sizes at multiples of 8
        raise ValueError(f"H.264 yuv420p needs even width and height, got {width}x{height}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(_ENCODER, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": "18", "preset": "medium"}
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def frames_to_png(frames: np.ndarray) -> list[bytes]:
    """Each frame as a PNG image."""
    _check_frames(frames)
    out: list[bytes] = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out
