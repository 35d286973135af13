"""What a request must be before it runs, and what it becomes: checked fields, the decoded input
image, the engine's JobSpec and the first profile for its size.

Faults of the node itself (a request for a store it does not have, a store it cannot read) are
NodeFault (FAILED_PRECONDITION or UNAVAILABLE with what to fix), never FieldError, which is kept
for the caller's own mistakes (INVALID_ARGUMENT).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
from PIL import Image

from i2v_common.artifacts import ArtifactError, ArtifactMissing, ArtifactStore, check_name
from i2v_contract.ids import check_job_id, check_model_name, quote
from i2v_contract.limits import FieldError, Limits, Normalized, check_model, decode_image, normalize_request
from i2v_contract.outputs import frame_uri
from i2v_contract.wire import node_pb2
from i2v_node.gpu import MemoryReading, ProfileChoice, first_profile
from i2v_node.job import JobSpec

if TYPE_CHECKING:
    from i2v_node.engine import Engine

log = logging.getLogger(__name__)

Prepared = tuple[Normalized, Image.Image]  # a validated request and its decoded input image


class NodeFault(Exception):
    """A job cannot run because of this node's own setup or store, not the request."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def dispatch_error(request: node_pb2.NodeGenerateRequest) -> FieldError | None:
    """What is wrong with a dispatched request's job_id/attempt (the caller's fault), None if fine.
    Checked before the slot, the claim or any log line that names the job."""
    if not request.job_id:
        return None
    try:
        check_job_id("job_id", request.job_id)
    except FieldError as err:
        return err
    if request.attempt < 1:
        return FieldError(
            "attempt",
            f"{request.attempt} must be >= 1 for a dispatched job (job_id {request.job_id}); only a "
            "coordinator sets job_id, or leave job_id empty for a standalone run",
        )
    return None


def store_name(field: str, uri: str, store: ArtifactStore) -> str:
    """The store-relative name `uri` (the request's `field`) has in `store`: FAILED_PRECONDITION when
    it is in another store (the node's setup), a FieldError when no artifact may have that name
    ('..', extra segments, odd characters), so nothing is read or written outside the store."""
    prefix = store.root_url.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise NodeFault(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{field} {quote(uri)} is outside this node's artifact store ({store.root_url}): the node "
            "and its coordinators use different stores; give the node the coordinators' --artifacts",
        )
    name = uri[len(prefix) :]
    try:
        return check_name(name)
    except ArtifactError:
        raise FieldError(
            field,
            f"{quote(uri)} names {quote(name)} in the artifact store; names are 1-4 '/'-separated "
            "segments of letters, digits, '.', '_' or '-' starting with a letter or digit",
        ) from None


def output_name(uri: str, store: ArtifactStore) -> str:
    """The store-relative name of an output URI inside `store` (see store_name)."""
    return store_name("output_uri", uri, store)


def check_output_uri(uri: str, store: ArtifactStore) -> None:
    """The video's name and its frames' names beside it are all names the store allows."""
    output_name(uri, store)
    output_name(frame_uri(uri, 0), store)  # the longest frame name: every index has 4 digits


class RequestChecker:
    """Validates a request against the limits, the loaded model and this node's artifact store."""

    def __init__(
        self,
        limits: Limits,
        artifacts: ArtifactStore | None,
        random_seed: Callable[[], int] = lambda: secrets.randbits(63),
    ) -> None:
        self.limits = limits
        self.artifacts = artifacts
        self.random_seed = random_seed

    async def validate(self, request: node_pb2.NodeGenerateRequest, engine: Engine) -> Prepared:
        """The normalised request and its decoded image; FieldError or NodeFault otherwise."""
        req = request.request
        norm = self.check_fields(request, engine.model_id)
        data = req.image
        if not data and req.image_uri:
            data = await self._read_image(req.image_uri)
        image = await asyncio.to_thread(decode_image, data, self.limits)
        return norm, image

    def check_fields(self, request: node_pb2.NodeGenerateRequest, served_model: str) -> Normalized:
        """Every check that reads nothing: the fields, the model, the output URI (and the image URI's
        name when the image is to be read from the store)."""
        req = request.request
        norm = normalize_request(req, self.limits, random_seed=self.random_seed)
        check_model_name(norm.model)
        check_model(norm.model, served_model)
        if request.output_uri and self.artifacts is None:
            raise NodeFault(
                grpc.StatusCode.FAILED_PRECONDITION,
                "output_uri is set but this node has no artifact store: start it with --artifacts, "
                "or leave output_uri empty to get the video inline",
            )
        if self.artifacts is not None and request.output_uri:
            check_output_uri(request.output_uri, self.artifacts)
        if self.artifacts is not None and not req.image and req.image_uri:
            store_name("image_uri", req.image_uri, self.artifacts)
        return norm

    async def _read_image(self, uri: str) -> bytes:
        """The input image at `uri`; a missing one is the caller's fault, an unusable store the node's."""
        store = self.artifacts
        if store is None:
            raise NodeFault(
                grpc.StatusCode.FAILED_PRECONDITION,
                "image_uri is set but this node has no artifact store: start it with --artifacts, "
                "or send the image inline",
            )
        try:
            size = await asyncio.to_thread(store.size, uri)
            if size > self.limits.max_image_bytes:
                raise FieldError(
                    "image_uri",
                    f"names a {size}-byte file; images are at most {self.limits.max_image_bytes} bytes",
                )
            return await asyncio.to_thread(store.get, uri)
        except ArtifactMissing as err:
            raise FieldError("image_uri", str(err)) from None
        except (ArtifactError, OSError) as err:
            raise NodeFault(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this node cannot read image_uri from its artifact store ({store.root_url}): {err}; "
                "check the node uses the coordinators' store and can read it",
            ) from None


def job_spec(norm: Normalized, image: Image.Image) -> JobSpec:
    """What the engine runs for a validated request: the normalised fields the engine knows, by name
    (the model was chosen when the node loaded it), and the decoded image."""
    known = {f.name for f in dataclasses.fields(JobSpec)}
    fields = {f.name: getattr(norm, f.name) for f in dataclasses.fields(norm) if f.name in known}
    return JobSpec(image=image, **fields)


def profile_for(
    engine: Engine, reading: MemoryReading, width: int, height: int, frames: int
) -> ProfileChoice:
    """The first profile for a job of this size; logs the memory model's reason."""
    choice = first_profile(
        width,
        height,
        frames,
        reading,
        engine.ladder,
        arch=engine.arch,
        dtype_name=engine.dtype_name,
        accelerator=engine.has_accelerator,
    )
    log.info("%s", choice.reason)
    return choice


def default_profile(engine: Engine, reading: MemoryReading, limits: Limits) -> ProfileChoice:
    """The first profile for a request that leaves every size at the default."""
    return profile_for(engine, reading, limits.default_width, limits.default_height, limits.default_frames)
