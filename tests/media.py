"""Test media shared by the suites and benchmarks: input images and reading MP4s back."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import av
from PIL import Image


def png(width: int = 64, height: int = 64) -> bytes:
    """A gradient PNG (structure the image encoder can see, unlike a flat colour)."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 4 % 256, y * 4 % 256, 128) for y in range(height) for x in range(width)])
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def decode(video: bytes) -> tuple[int, float, int, int]:
    """(frames, fps, width, height) as a standard decoder (FFmpeg via PyAV) reads the MP4."""
    container: Any = av.open(io.BytesIO(video))
    with container:
        stream = container.streams.video[0]
        frames = len(list(container.decode(stream)))
        return frames, float(stream.average_rate), stream.codec_context.width, stream.codec_context.height
