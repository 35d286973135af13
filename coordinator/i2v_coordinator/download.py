"""What a Download sends (pure): which artifact of a job, which bytes of it, in which pieces.

Every refusal is a `Refused` with the status code the client sees, a message that says what to
do and the error details beside them: NOT_FOUND is the shell's (no such job, or the file is gone),
FAILED_PRECONDITION (NO_ARTIFACT) a job that has no such artifact (yet), INVALID_ARGUMENT
(INVALID_FIELD) a request field out of range, naming it, DATA_LOSS (ARTIFACT_CHANGED) stored bytes
that are not the ones written. transfer.py carries the plan out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from i2v_contract.codes import Code
from i2v_contract.limits import FieldError
from i2v_contract.reasons import ErrorDetails, Reason, details, field_details
from i2v_contract.states import SUCCEEDED, state_name
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.records import JobRecord

CHUNK_BYTES = 1024 * 1024  # data per message: a quarter of gRPC's default 4 MiB receive limit

VIDEO, INPUT_IMAGE, FRAME = (
    coordinator_pb2.ARTIFACT_VIDEO,
    coordinator_pb2.ARTIFACT_INPUT_IMAGE,
    coordinator_pb2.ARTIFACT_FRAME,
)
_IMAGE_MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


class Refused(Exception):
    def __init__(self, code: Code, message: str, details: ErrorDetails) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def _bad_field(field: str, description: str) -> Refused:
    err = FieldError(field, description)
    return Refused(Code.INVALID_ARGUMENT, err.message, field_details(err))


def _no_artifact(job_id: str, state: int, message: str) -> Refused:
    return Refused(
        Code.FAILED_PRECONDITION, message, details(Reason.NO_ARTIFACT, job_id=job_id, state=state_name(state))
    )


@dataclass(frozen=True)
class Source:
    """One artifact of a job, as far as its record tells."""

    uri: str
    mime_type: str
    label: str  # "the video of job J", for messages
    sha256: str = ""  # "" = the record does not say: hash the stored bytes
    size: int = 0  # 0 = the record does not say


def source(record: JobRecord, what: int, frame: int) -> Source:
    """The artifact a DownloadRequest names (`what` 0 is the video)."""
    job_id = record.job_id
    if what == INPUT_IMAGE:
        uri = record.input_uri
        ext = uri.rsplit(".", 1)[-1].lower()
        return Source(
            uri, _IMAGE_MIME.get(ext, "application/octet-stream"), f"the input image of job {job_id}"
        )
    if what not in (coordinator_pb2.ARTIFACT_UNSPECIFIED, VIDEO, FRAME):
        names = ", ".join(coordinator_pb2.Artifact.keys()[1:])  # all but ARTIFACT_UNSPECIFIED
        raise _bad_field("what", f"{what} is not an artifact; use one of {names}")
    result = _succeeded(record)
    if what == FRAME:
        return _frame(record, result, frame)
    uri = result.artifact_uri or record.view.artifact_uri
    if not uri:
        raise _no_artifact(job_id, SUCCEEDED, f"job {job_id} succeeded but names no stored video")
    return Source(
        uri, result.mime_type or "video/mp4", f"the video of job {job_id}", result.sha256, result.video_size
    )


def _succeeded(record: JobRecord) -> common_pb2.Result:
    view = record.view
    if not view.final:
        raise _no_artifact(
            view.job_id,
            view.state,
            f"job {view.job_id} is {state_name(view.state)}, not finished: its video exists once it "
            f"succeeds; watch it to the end (`i2v watch {view.job_id}`), then download",
        )
    if view.state != SUCCEEDED:
        detail = f": {view.error}" if view.error else ""
        raise _no_artifact(
            view.job_id,
            view.state,
            f"job {view.job_id} ended {state_name(view.state)}{detail}; it has no video (its input "
            "image can still be downloaded)",
        )
    return record.result or common_pb2.Result(artifact_uri=view.artifact_uri)


def _frame(record: JobRecord, result: common_pb2.Result, frame: int) -> Source:
    job_id = record.job_id
    uris = result.frame_uris
    if not uris:
        raise _no_artifact(
            job_id,
            record.view.state,
            f"job {job_id} stored no frames: frames are kept only for requests with "
            "return_frames=true; download its video instead",
        )
    if frame >= len(uris):
        raise _bad_field(
            "frame", f"{frame} is out of range; job {job_id} has {len(uris)} frames (0..{len(uris) - 1})"
        )
    return Source(uris[frame], "image/png", f"frame {frame} of job {job_id}")


def check_size(src: Source, size: int) -> None:
    """DATA_LOSS when the store holds other bytes than the node reported writing."""
    if src.size and size != src.size:
        raise Refused(
            Code.DATA_LOSS,
            f"{src.label} is {size} bytes in the artifact store, but {src.size} bytes were written; "
            "the store lost or changed it: run the job again",
            details(Reason.ARTIFACT_CHANGED, uri=src.uri),
        )


def byte_range(total: int, offset: int, limit: int) -> tuple[int, int]:
    """[start, end) of a request's `offset` and `limit` (0 = to the end) within `total` bytes."""
    if offset > total:
        raise _bad_field(
            "offset",
            f"{offset} is beyond the artifact's {total} bytes; resume from at most {total} "
            "(the bytes you already have), or 0 to start over",
        )
    return offset, total if not limit else min(total, offset + limit)


def pieces(start: int, end: int, chunk: int = CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """(offset, length) of each message's data for [start, end)."""
    for offset in range(start, end, chunk):
        yield offset, min(chunk, end - offset)
