"""Fuzz targets: each takes the bytes a caller controls and runs the code that checks them, the way
the servers do, expecting only the refusals the servers map to status codes (FieldError and NodeFault:
INVALID_ARGUMENT, FAILED_PRECONDITION). Any other exception is a finding: on a server it would be an
INTERNAL or UNKNOWN answer.

- image: the input image decoder both servers run on `GenerationRequest.image` (decode_image).
- node: a NodeGenerateRequest from raw bytes through the node's checks before any work: the dispatch
  fields, every request field, the model, the output and image URIs in a real artifact store, the image.
- coordinator: the first byte picks a request type (SubmitRequest, WatchRequest, ListJobsRequest,
  DownloadRequest); the rest, parsed as it, goes through the front door's checks and the servicer's
  validation: Submit's fields and image, job ids, ListJobs' limit, states and page token.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from google.protobuf.message import DecodeError

from i2v_common.artifacts import FileStore
from i2v_contract.ids import check_job_id
from i2v_contract.keys import Keys
from i2v_contract.limits import DEFAULT_LIMITS, FieldError, decode_image
from i2v_contract.wire import coordinator_pb2, node_pb2
from i2v_coordinator import listing
from i2v_coordinator.admission import check_submitted, image_ext
from i2v_coordinator.frontdoor import field_problem
from i2v_node.validation import NodeFault, RequestChecker, dispatch_error

LIMITS = DEFAULT_LIMITS
STORE = FileStore(Path(tempfile.mkdtemp(prefix="i2v-fuzz-store-")))
CHECKER = RequestChecker(LIMITS, STORE, random_seed=lambda: 7)
KEYS = Keys("/i2v/v1/")
REFUSALS = (FieldError, NodeFault)


def image(data: bytes) -> None:
    try:
        decoded = decode_image(data, LIMITS)
    except FieldError:
        return
    assert decoded.mode == "RGB" and decoded.width * decoded.height <= LIMITS.max_image_pixels


def node(data: bytes) -> None:
    try:
        request = node_pb2.NodeGenerateRequest.FromString(data)
    except DecodeError:
        return  # the servers answer these INVALID_ARGUMENT before any handler (handlers.guard_parse)
    if dispatch_error(request) is not None:
        return
    try:
        norm = CHECKER.check_fields(request, "tiny")
        if request.request.image:
            decode_image(request.request.image, LIMITS)
    except REFUSALS:
        return
    assert norm.width * norm.height * norm.frames * norm.steps <= LIMITS.max_work


def _submit(request: coordinator_pb2.SubmitRequest) -> None:
    if field_problem("Submit", request) is not None:
        return
    try:
        check_submitted(request.request, LIMITS, lambda: 7)
        decode_image(request.request.image, LIMITS)
    except FieldError:
        return
    image_ext(request.request.image)


def _watch(request: coordinator_pb2.WatchRequest) -> None:
    if field_problem("Watch", request) is None:
        KEYS.job(request.job_id)  # what the servicer builds from an id that passed


def _list_jobs(request: coordinator_pb2.ListJobsRequest) -> None:
    try:
        listing.list_limit(request.limit)
        listing.state_filter(request.states)
        listing.parse_page_token(request.page_token, KEYS)
    except FieldError:
        return


def _download(request: coordinator_pb2.DownloadRequest) -> None:
    try:
        check_job_id("job_id", request.job_id)
    except FieldError:
        return
    KEYS.job(request.job_id)


_COORDINATOR: list[tuple[type, Callable[..., None]]] = [
    (coordinator_pb2.SubmitRequest, _submit),
    (coordinator_pb2.WatchRequest, _watch),
    (coordinator_pb2.ListJobsRequest, _list_jobs),
    (coordinator_pb2.DownloadRequest, _download),
]


def coordinator(data: bytes) -> None:
    if not data:
        return
    kind, check = _COORDINATOR[data[0] % len(_COORDINATOR)]
    try:
        request = kind.FromString(data[1:])
    except DecodeError:
        return
    check(request)


TARGETS: dict[str, Callable[[bytes], None]] = {"image": image, "node": node, "coordinator": coordinator}
