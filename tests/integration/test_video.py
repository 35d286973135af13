"""MP4 and PNG output, checked by decoding with PyAV and Pillow."""

import io

import av
import numpy as np
import pytest
from PIL import Image

from i2v_node.video import encode_mp4, frames_to_png

pytestmark = pytest.mark.integration


def _frames(count: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("count", "fps", "height", "width"), [(8, 8, 64, 64), (16, 24, 48, 80), (1, 1, 8, 16), (25, 7, 64, 40)]
)
def test_mp4_has_exact_frames_and_fps(count, fps, height, width):
    data = encode_mp4(_frames(count, height, width), fps)
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == fps
        assert (stream.width, stream.height) == (width, height)
        decoded = list(container.decode(video=0))
    assert len(decoded) == count
    assert [round(f.time * fps) for f in decoded] == list(range(count))


def test_mp4_keeps_content():
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    frames[:, :, :16] = (200, 40, 40)
    with av.open(io.BytesIO(encode_mp4(frames, 4)), mode="r") as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs(first - frames[0]).mean() < 6


@pytest.mark.parametrize(
    ("frames", "fps", "needle"),
    [
        (np.zeros((2, 33, 32, 3), np.uint8), 8, "even width and height"),
        (np.zeros((2, 32, 32, 3), np.float32), 8, "uint8"),
        (np.zeros((0, 32, 32, 3), np.uint8), 8, "frames>=1"),
        (np.zeros((2, 32, 32), np.uint8), 8, "shape"),
        (np.zeros((2, 32, 32, 3), np.uint8), 0, "fps"),
    ],
)
def test_bad_input_is_a_clear_error(frames, fps, needle):
    with pytest.raises(ValueError, match=needle):
        encode_mp4(frames, fps)


def test_png_round_trip_is_lossless():
    frames = _frames(3, 24, 40)
    pngs = frames_to_png(frames)
    assert len(pngs) == 3
    for png, frame in zip(pngs, frames, strict=True):
        assert png.startswith(b"\x89PNG")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), frame)
