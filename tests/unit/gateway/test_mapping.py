"""OpenAI request fields -> GenerationRequest, and a Job -> the Video object (pure, table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from i2v_contract.states import ASSIGNED, CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_gateway.errors import ApiError
from i2v_gateway.mapping import frames_for, parse_create, parse_size, percent, seconds_text, video_object

IMG = b"\x89PNG fake"


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        pytest.param(
            {"prompt": "p"}, {"width": 0, "height": 0, "frames": 0, "fps": 0}, id="defaults-left-to-node"
        ),
        pytest.param({"prompt": "p", "size": "768x512"}, {"width": 768, "height": 512}, id="size"),
        pytest.param(
            {"prompt": "p", "size": " 64X72 "}, {"width": 64, "height": 72}, id="size-spaces-upper-x"
        ),
        pytest.param({"prompt": "p", "seconds": "4"}, {"frames": 32, "fps": 8}, id="seconds-at-default-fps"),
        pytest.param(
            {"prompt": "p", "seconds": "0.5", "fps": "6"}, {"frames": 3, "fps": 6}, id="seconds-at-fps"
        ),
        pytest.param({"prompt": "p", "seconds": 2, "fps": 12}, {"frames": 24, "fps": 12}, id="json-numbers"),
        pytest.param({"prompt": "p", "frames": "5"}, {"frames": 5}, id="frames"),
        pytest.param({"prompt": "p", "guidance": "7.5"}, {"guidance_scale": 7.5}, id="guidance"),
        pytest.param({"prompt": "p", "guidance_scale": 3}, {"guidance_scale": 3.0}, id="guidance-scale"),
        pytest.param({"prompt": "p", "allow_degrade": "true"}, {"allow_degrade": True}, id="bool-form"),
        pytest.param({"prompt": "p", "allow_degrade": False}, {"allow_degrade": False}, id="bool-json"),
        pytest.param({"prompt": "p", "seed": str(2**64 - 1)}, {"seed": 2**64 - 1}, id="seed-max"),
        pytest.param(
            {"prompt": "p", "negative_prompt": "blur", "model": "tiny"},
            {"negative_prompt": "blur", "model": "tiny"},
            id="texts",
        ),
    ],
)
def test_fields_map_to_the_wire(fields: dict[str, Any], want: dict[str, Any]) -> None:
    req = parse_create(fields, IMG).request
    assert req.image == IMG and req.prompt == "p"
    assert {k: getattr(req, k) for k in want} == want


def test_a_seed_left_out_stays_unset() -> None:
    assert not parse_create({"prompt": "p"}, IMG).request.HasField("seed")


@pytest.mark.parametrize(
    ("fields", "image", "param"),
    [
        pytest.param({}, IMG, "prompt", id="no-prompt"),
        pytest.param({"prompt": "p"}, None, "input_reference", id="no-image"),
        pytest.param(
            {"prompt": "p", "input_reference": {"file_id": "f"}}, None, "input_reference", id="file-id"
        ),
        pytest.param({"prompt": "p", "size": "big"}, IMG, "size", id="size-words"),
        pytest.param({"prompt": "p", "size": "64x"}, IMG, "size", id="size-half"),
        pytest.param({"prompt": "p", "seconds": "0"}, IMG, "seconds", id="seconds-zero"),
        pytest.param({"prompt": "p", "seconds": "nan"}, IMG, "seconds", id="seconds-nan"),
        pytest.param({"prompt": "p", "seconds": "4", "frames": "8"}, IMG, "seconds", id="seconds-and-frames"),
        pytest.param({"prompt": "p", "frames": "-1"}, IMG, "frames", id="frames-negative"),
        pytest.param({"prompt": "p", "steps": "2.5"}, IMG, "steps", id="steps-fraction"),
        pytest.param({"prompt": "p", "steps": True}, IMG, "steps", id="steps-bool"),
        pytest.param({"prompt": "p", "seed": str(2**64)}, IMG, "seed", id="seed-too-big"),
        pytest.param({"prompt": "p", "allow_degrade": "maybe"}, IMG, "allow_degrade", id="bool-words"),
        pytest.param({"prompt": 5}, IMG, "prompt", id="prompt-number"),
        pytest.param({"prompt": "p", "stepz": 2}, IMG, "stepz", id="unknown"),
        pytest.param(
            {"prompt": "p", "guidance": 1, "guidance_scale": 2}, IMG, "guidance", id="both-guidances"
        ),
    ],
)
def test_bad_fields_are_400_naming_the_parameter(
    fields: dict[str, Any], image: bytes | None, param: str
) -> None:
    with pytest.raises(ApiError) as err:
        parse_create(fields, image)
    assert err.value.status == 400 and err.value.param == param
    assert err.value.message.startswith(param)


def test_a_data_url_reference_is_the_image() -> None:
    req = parse_create({"prompt": "p", "input_reference": {"image_url": "data:image/png;base64,aGk="}}, None)
    assert req.request.image == b"hi"


def test_renames_name_the_parameters_the_caller_sent() -> None:
    renames = parse_create({"prompt": "p", "size": "64x64", "seconds": "1", "guidance": 2}, IMG).renames
    assert renames == {"image": "input_reference", "width": "size", "height": "size", "frames": "seconds",
                       "guidance_scale": "guidance"}  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "fps", "frames"),
    [
        pytest.param(4, 8, 32, id="4s"),
        pytest.param(0.01, 8, 1, id="at-least-one"),
        pytest.param(1.3, 6, 8, id="rounds"),
    ],
)
def test_frames_for(seconds: float, fps: int, frames: int) -> None:
    assert frames_for(seconds, fps) == frames


@pytest.mark.parametrize(
    ("frames", "fps", "text"),
    [
        pytest.param(32, 8, "4", id="whole"),
        pytest.param(3, 6, "0.5", id="half"),
        pytest.param(16, 0, "0", id="no-fps"),
    ],
)
def test_seconds_text(frames: int, fps: int, text: str) -> None:
    assert seconds_text(frames, fps) == text


def test_parse_size() -> None:
    assert parse_size("1024x576") == (1024, 576)


def _progress(stage: int, step: int = 0, total: int = 0) -> common_pb2.Progress:
    return common_pb2.Progress(stage=stage, step=step, total_steps=total)


@pytest.mark.parametrize(
    ("state", "progress", "want"),
    [
        pytest.param(QUEUED, None, 0, id="queued"),
        pytest.param(ASSIGNED, None, 1, id="assigned"),
        pytest.param(RUNNING, _progress(common_pb2.STAGE_LOADING), 2, id="loading"),
        pytest.param(RUNNING, _progress(common_pb2.STAGE_DENOISE, 0, 10), 5, id="denoise-start"),
        pytest.param(RUNNING, _progress(common_pb2.STAGE_DENOISE, 5, 10), 48, id="denoise-half"),
        pytest.param(RUNNING, _progress(common_pb2.STAGE_DENOISE, 10, 10), 91, id="denoise-done"),
        pytest.param(RUNNING, _progress(common_pb2.STAGE_ENCODE_VIDEO), 96, id="encode-video"),
        pytest.param(SUCCEEDED, None, 100, id="succeeded"),
        pytest.param(FAILED, None, 0, id="failed"),
    ],
)
def test_percent(state: int, progress: common_pb2.Progress | None, want: int) -> None:
    assert percent(state, progress) == want


def _job(state: int, **kw: Any) -> coordinator_pb2.Job:
    req = common_pb2.GenerationRequest(prompt="fox", width=64, height=72, frames=3, fps=6, steps=2, seed=5)
    return coordinator_pb2.Job(job_id="j1", state=state, created_at=100.7, request=req, attempt=1, **kw)


@pytest.mark.parametrize(
    ("job", "want"),
    [
        pytest.param(
            _job(QUEUED),
            {
                "status": "queued",
                "progress": 0,
                "completed_at": None,
                "error": None,
                "size": "64x72",
                "seconds": "0.5",
            },
            id="queued",
        ),
        pytest.param(_job(RUNNING, node_id="n1"), {"status": "in_progress", "node_id": "n1"}, id="running"),
        pytest.param(
            _job(
                SUCCEEDED,
                finished_at=110.2,
                result=common_pb2.Result(
                    width=32,
                    height=32,
                    frames=2,
                    fps=2,
                    steps=2,
                    seed=5,
                    profile="p0",
                    degradations=["size"],
                    video_size=99,
                    metadata={"model": "tiny"},
                ),
            ),
            {
                "status": "completed",
                "progress": 100,
                "completed_at": 110,
                "size": "32x32",
                "seconds": "1",
                "model": "tiny",
                "profile": "p0",
                "degradations": ["size"],
                "video_bytes": 99,
            },
            id="degraded",
        ),
        pytest.param(
            _job(FAILED, error="oom", finished_at=101),
            {"status": "failed", "error": {"code": "generation_failed", "message": "oom"}},
            id="failed",
        ),
        pytest.param(
            _job(CANCELLED, finished_at=101),
            {
                "status": "failed",
                "state": "cancelled",
                "error": {"code": "cancelled", "message": "cancelled"},
            },
            id="cancelled",
        ),
    ],
)
def test_video_object(job: coordinator_pb2.Job, want: dict[str, Any]) -> None:
    video = video_object(job)
    assert video["id"] == "j1" and video["object"] == "video" and video["created_at"] == 100
    assert {k: video[k] for k in want} == want
