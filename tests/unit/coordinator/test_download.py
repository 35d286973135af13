"""What a Download sends: the artifact a request names, its byte range and pieces, and the refusals."""

from __future__ import annotations

import dataclasses

import pytest

from i2v_contract import states
from i2v_contract.codes import Code
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.download import (
    CHUNK_BYTES,
    Refused,
    Source,
    byte_range,
    check_size,
    pieces,
    source,
)
from i2v_coordinator.records import JobRecord
from tests.fakes.coordinator import job_record

VIDEO, IMAGE, FRAME = (
    coordinator_pb2.ARTIFACT_VIDEO,
    coordinator_pb2.ARTIFACT_INPUT_IMAGE,
    coordinator_pb2.ARTIFACT_FRAME,
)
RESULT = common_pb2.Result(
    artifact_uri="file:///store/jobs/job1/attempt-1.mp4",
    mime_type="video/mp4",
    sha256="ab" * 32,
    video_size=1234,
    frame_uris=["file:///store/jobs/job1/attempt-1-frame-0000.png", "file:///store/f1.png"],
)


def ended(state: int, result: common_pb2.Result | None = RESULT, error: str = "") -> JobRecord:
    record = job_record()
    view = dataclasses.replace(record.view, state=state, error=error, finished_at=2.0)
    return dataclasses.replace(record, view=view, result=result)


@pytest.mark.parametrize(
    ("what", "frame", "want"),
    [
        pytest.param(
            coordinator_pb2.ARTIFACT_UNSPECIFIED,
            0,
            Source(RESULT.artifact_uri, "video/mp4", "the video of job job1", "ab" * 32, 1234),
            id="default-is-the-video",
        ),
        pytest.param(
            VIDEO,
            0,
            Source(RESULT.artifact_uri, "video/mp4", "the video of job job1", "ab" * 32, 1234),
            id="video",
        ),
        pytest.param(
            IMAGE,
            0,
            Source("file:///store/jobs/job1/input.png", "image/png", "the input image of job job1"),
            id="input-image-hashed-from-the-store",
        ),
        pytest.param(
            FRAME, 1, Source("file:///store/f1.png", "image/png", "frame 1 of job job1"), id="a-frame"
        ),
    ],
)
def test_a_succeeded_job_offers_its_video_input_and_frames(what: int, frame: int, want: Source) -> None:
    assert source(ended(states.SUCCEEDED), what, frame) == want


def test_a_finished_record_without_an_embedded_result_names_its_view_uri() -> None:
    record = ended(states.SUCCEEDED, result=None)
    record = dataclasses.replace(record, view=dataclasses.replace(record.view, artifact_uri="file:///v.mp4"))
    assert source(record, VIDEO, 0) == Source("file:///v.mp4", "video/mp4", "the video of job job1")


def test_the_input_image_of_an_open_job_can_be_downloaded() -> None:
    assert source(job_record(), IMAGE, 0).uri == "file:///store/jobs/job1/input.png"


@pytest.mark.parametrize(
    ("record", "what", "frame", "code", "words"),
    [
        pytest.param(
            job_record(), VIDEO, 0, Code.FAILED_PRECONDITION, "is QUEUED, not finished", id="queued"
        ),
        pytest.param(
            ended(states.FAILED, error="out of memory"),
            VIDEO,
            0,
            Code.FAILED_PRECONDITION,
            "ended FAILED: out of memory; it has no video",
            id="failed",
        ),
        pytest.param(
            ended(states.CANCELLED), FRAME, 0, Code.FAILED_PRECONDITION, "ended CANCELLED", id="cancelled"
        ),
        pytest.param(
            ended(states.SUCCEEDED, result=common_pb2.Result(artifact_uri="file:///v.mp4")),
            FRAME,
            0,
            Code.FAILED_PRECONDITION,
            "stored no frames: frames are kept only for requests with return_frames=true",
            id="no-frames",
        ),
        pytest.param(
            ended(states.SUCCEEDED),
            FRAME,
            2,
            Code.INVALID_ARGUMENT,
            "frame: 2 is out of range; job job1 has 2 frames (0..1)",
            id="frame-out-of-range",
        ),
        pytest.param(
            ended(states.SUCCEEDED),
            9,
            0,
            Code.INVALID_ARGUMENT,
            "what: 9 is not an artifact; use one of ARTIFACT_VIDEO, ARTIFACT_INPUT_IMAGE, ARTIFACT_FRAME",
            id="unknown-artifact",
        ),
    ],
)
def test_refusals_say_what_to_do(record: JobRecord, what: int, frame: int, code: Code, words: str) -> None:
    with pytest.raises(Refused) as refused:
        source(record, what, frame)
    assert refused.value.code == code and words in refused.value.message
    # The details beside the message: a bad field is named, a missing artifact says the job's state.
    reason = "INVALID_FIELD" if code == Code.INVALID_ARGUMENT else "NO_ARTIFACT"
    assert refused.value.details.reason == reason
    assert refused.value.details.metadata.get("field") or refused.value.details.metadata["job_id"] == "job1"


@pytest.mark.parametrize(
    ("total", "offset", "limit", "want"),
    [
        pytest.param(10, 0, 0, (0, 10), id="all"),
        pytest.param(10, 4, 0, (4, 10), id="resume"),
        pytest.param(10, 4, 3, (4, 7), id="limited"),
        pytest.param(10, 4, 100, (4, 10), id="limit-past-the-end"),
        pytest.param(10, 10, 0, (10, 10), id="at-the-end-sends-nothing"),
        pytest.param(0, 0, 0, (0, 0), id="empty"),
    ],
)
def test_byte_range(total: int, offset: int, limit: int, want: tuple[int, int]) -> None:
    assert byte_range(total, offset, limit) == want


def test_an_offset_beyond_the_artifact_is_invalid_naming_the_field() -> None:
    with pytest.raises(Refused) as refused:
        byte_range(10, 11, 0)
    assert refused.value.code == Code.INVALID_ARGUMENT
    assert refused.value.message.startswith(
        "offset: 11 is beyond the artifact's 10 bytes; resume from at most 10"
    )
    (violation,) = refused.value.details.field_violations
    assert violation.field == "offset" and violation.description.startswith("11 is beyond")


@pytest.mark.parametrize(
    ("start", "end", "want"),
    [
        pytest.param(0, 0, [], id="nothing"),
        pytest.param(0, 5, [(0, 5)], id="one-short-piece"),
        pytest.param(0, 2 * CHUNK_BYTES, [(0, CHUNK_BYTES), (CHUNK_BYTES, CHUNK_BYTES)], id="two-whole"),
        pytest.param(3, CHUNK_BYTES + 4, [(3, CHUNK_BYTES), (CHUNK_BYTES + 3, 1)], id="from-an-offset"),
    ],
)
def test_pieces_are_at_most_one_mib(start: int, end: int, want: list[tuple[int, int]]) -> None:
    assert list(pieces(start, end)) == want


def test_a_stored_size_other_than_the_reported_one_is_data_loss() -> None:
    src = Source("u", "video/mp4", "the video of job j", size=100)
    check_size(src, 100)
    check_size(dataclasses.replace(src, size=0), 7)  # not reported: nothing to compare
    with pytest.raises(Refused) as refused:
        check_size(src, 99)
    assert (
        refused.value.code == Code.DATA_LOSS
        and "99 bytes in the artifact store, but 100" in refused.value.message
    )
