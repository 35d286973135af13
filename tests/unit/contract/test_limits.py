"""Request validation: defaults, ranges with actionable messages, and safe image decoding."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from i2v_contract.limits import (
    DEFAULT_LIMITS,
    SEED_MAX,
    FieldError,
    Normalized,
    check_model,
    check_work,
    decode_image,
    normalize_request,
)
from i2v_contract.wire import common_pb2
from tests.media import png_claiming


def _normalize(**fields: object) -> Normalized:
    return normalize_request(common_pb2.GenerationRequest(**fields), DEFAULT_LIMITS, random_seed=lambda: 42)  # type: ignore[arg-type]


def test_zero_fields_take_defaults_and_unset_seed_is_random() -> None:
    norm = _normalize(prompt="a cat")
    assert (norm.width, norm.height, norm.frames, norm.fps, norm.steps) == (512, 512, 16, 8, 50)
    assert (norm.guidance_scale, norm.seed, norm.prompt) == (9.0, 42, "a cat")


def test_explicit_in_range_values_pass_through() -> None:
    norm = _normalize(
        width=1280, height=64, frames=64, fps=60, steps=200, guidance_scale=1.0, seed=0, model="m"
    )
    assert (
        norm.width,
        norm.height,
        norm.frames,
        norm.fps,
        norm.steps,
        norm.guidance_scale,
        norm.seed,
        norm.model,
    ) == (
        1280,
        64,
        64,
        60,
        200,
        1.0,
        0,
        "m",
    )


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(0, id="zero"),
        pytest.param(2**63 - 1, id="largest-int64"),
        pytest.param(2**63, id="above-int64"),
        pytest.param(SEED_MAX, id="largest-uint64"),
    ],
)
def test_every_uint64_seed_is_accepted_as_it_is(seed: int) -> None:
    assert SEED_MAX == 2**64 - 1
    assert _normalize(seed=seed).seed == seed


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        pytest.param(
            {"width": 1002},
            "width",
            "1002 is not a multiple of 8; use 64..1280 in steps of 8",
            id="width-not-a-multiple-of-8",
        ),
        pytest.param({"height": 1288}, "height", "out of range; use 64..1280", id="height-above-max"),
        pytest.param({"width": 56}, "width", "out of range", id="width-below-min"),
        pytest.param({"frames": 65}, "frames", "use 1..64", id="too-many-frames"),
        pytest.param({"steps": 201}, "steps", "use 1..200", id="too-many-steps"),
        pytest.param({"fps": 61}, "fps", "use 1..60", id="fps-above-max"),
        pytest.param({"guidance_scale": 0.5}, "guidance_scale", "use 1.0..30.0", id="guidance-below-min"),
        pytest.param({"guidance_scale": 31.0}, "guidance_scale", "use 1.0..30.0", id="guidance-above-max"),
        pytest.param({"guidance_scale": float("nan")}, "guidance_scale", "out of range", id="guidance-nan"),
        pytest.param({"prompt": "x" * 2001}, "prompt", "at most 2000", id="prompt-too-long"),
        pytest.param(
            {"negative_prompt": "x" * 2001}, "negative_prompt", "at most 2000", id="negative-prompt-too-long"
        ),
        pytest.param({"prompt": "a\x00b"}, "prompt", "NUL", id="nul-in-prompt"),
        pytest.param({"model": "m" * 257}, "model", "at most 256", id="model-too-long"),
    ],
)
def test_out_of_range_fields_name_the_field_and_the_fix(
    fields: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(FieldError) as info:
        _normalize(**fields)
    assert info.value.field == field
    assert words in str(info.value) and str(info.value).startswith(f"{field}: ")


def test_a_request_may_name_only_the_served_model_or_none() -> None:
    check_model("", "tiny")
    check_model("tiny", "tiny")
    with pytest.raises(FieldError, match="model: 'big' is not served here; send 'tiny'"):
        check_model("big", "tiny")


def _encoded(fmt: str, size: tuple[int, int] = (8, 6), mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (10, 20, 30)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt", [pytest.param("PNG", id="png"), pytest.param("JPEG", id="jpeg"), pytest.param("WEBP", id="webp")]
)
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    image = decode_image(_encoded(fmt, mode="RGB" if fmt == "JPEG" else "RGBA"), DEFAULT_LIMITS)
    assert (image.mode, image.size) == ("RGB", (8, 6))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"hello, this is a text file\n", "are not a PNG, JPEG, WEBP image", id="text-file"),
        pytest.param(
            b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "are not a PNG, JPEG, WEBP image", id="png-signature-only"
        ),
        pytest.param(_encoded("PNG", (64, 64))[:-30], "cannot be decoded", id="truncated-png"),
        pytest.param(
            _encoded("GIF", mode="P"), "are not a PNG, JPEG, WEBP image", id="real-gif-unsupported-format"
        ),
        pytest.param(png_claiming(100_000, 100_000), "too many", id="huge-claimed-size"),
        pytest.param(png_claiming(4097, 4096), "too many", id="one-column-over-pixel-limit"),
        pytest.param(b"\xff\xd8\xff" + b"\x00" * 100, "are not a PNG, JPEG, WEBP image", id="corrupt-jpeg"),
        pytest.param(b"\x00" * (20 * 1024 * 1024 + 1), "too large", id="over-20-mib"),
    ],
)
def test_bad_images_are_field_errors(data: bytes, words: str) -> None:
    with pytest.raises(FieldError) as info:
        decode_image(data, DEFAULT_LIMITS)
    assert info.value.field == "image" and words in str(info.value)


def test_pixel_limit_is_checked_before_decoding() -> None:
    # 4096x4096 is allowed by the header check; the file holds too little data to decode.
    with pytest.raises(FieldError, match="cannot be decoded"):
        decode_image(png_claiming(4096, 4096), DEFAULT_LIMITS)


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        pytest.param(
            {"width": 1280, "height": 1280, "frames": 64, "steps": 50}, True, id="largest-at-default-steps"
        ),
        pytest.param(
            {"width": 1280, "height": 64, "frames": 64, "steps": 200}, True, id="most-steps-small-frame"
        ),
        pytest.param({"width": 1280, "height": 1280, "frames": 64, "steps": 51}, False, id="one-step-over"),
        pytest.param({"width": 1280, "height": 1280, "frames": 64}, True, id="default-steps-are-within"),
        pytest.param(
            {"width": 1280, "height": 1280, "steps": 200}, True, id="default-frames-exactly-the-budget"
        ),
        pytest.param(
            {"width": 1280, "height": 1280, "frames": 17, "steps": 200}, False, id="over-by-a-frame"
        ),
    ],
)
def test_work_budget(fields: dict[str, int], ok: bool) -> None:
    if ok:
        _normalize(**fields)
        return
    with pytest.raises(FieldError) as err:
        _normalize(**fields)
    assert err.value.field == "steps"
    for name in ("width", "height", "frames", "steps", f"budget of {DEFAULT_LIMITS.max_work}"):
        assert name in err.value.message


def test_work_budget_says_how_many_steps_fit() -> None:
    with pytest.raises(FieldError) as err:
        check_work(1280, 1280, 64, 200, DEFAULT_LIMITS)
    assert "= 20971520000 is over the budget of 5242880000; use at most 50 steps" in err.value.message
    check_work(1280, 1280, 64, 50, DEFAULT_LIMITS)
