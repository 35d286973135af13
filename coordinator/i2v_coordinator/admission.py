"""Submit's intake: validate, size, admit against the queue bound, store the image, commit the job.

Submit validates (i2v_contract.limits), sizes the job (sizing.py), admits it (routing.admit), stores
the image in the artifact store and commits the job with a fenced create-if-absent txn before
answering. Admission is exact under concurrent Submits: the queue slot is reserved in the same
synchronous step as the check (only the leader admits, so an in-process count of queued jobs plus
submissions in flight is the whole queue) and released when the submission ends, stored or not. The
request id is the job id: the same id with the same request returns the existing job, with a
different request ALREADY_EXISTS. With tokens, the job is stamped with its owner and an id is
one owner's: another client's identical request under it is a different request (quotas.py holds
the per-client submit rate and queued-job quota checked here, the quota in the same step as the
queue bound).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import grpc

from i2v_common.artifacts import ArtifactError, ArtifactStore
from i2v_contract import auth
from i2v_contract.ids import check_model_name, check_request_id, quote
from i2v_contract.kv import KVUnavailable
from i2v_contract.limits import DEFAULT_LIMITS, RANDOM_SEED_MAX, FieldError, Limits, Normalized, decode_image
from i2v_contract.limits import normalize_request as normalize
from i2v_contract.reasons import ErrorDetails, Reason, details, field_details
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.jobstore import IdConflict, JobStore
from i2v_coordinator.quotas import Quotas, Refusal
from i2v_coordinator.records import JobRecord, request_digest
from i2v_coordinator.routing import Admission, AdmissionKind, JobNeed, NodeView, admit
from i2v_coordinator.sizing import Adverts, ArchCache, job_need
from i2v_coordinator.term import Term

log = logging.getLogger(__name__)

_IMAGE_EXT = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"RIFF", "webp"))


class Refused(Exception):
    """Submit is answered with `code` and `message`, and `details` beside them."""

    def __init__(self, code: grpc.StatusCode, message: str, details: ErrorDetails) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def reason(self) -> str:
        """The bounded label i2v_submit_rejections_total counts this refusal under."""
        return _METRIC_REASONS.get(self.details.reason, "invalid")


class SubmitMetrics(Protocol):
    def rejected(self, reason: str) -> None: ...


class _NoMetrics:
    def rejected(self, reason: str) -> None:
        pass


_METRIC_REASONS = {
    Reason.INVALID_FIELD.value: "invalid",
    Reason.REQUEST_ID_CONFLICT.value: "conflict",
    Reason.QUEUE_FULL.value: "queue_full",
    Reason.NO_NODE_FITS.value: "too_large",
    Reason.STORE_UNAVAILABLE.value: "store_unavailable",
    Reason.ETCD_UNAVAILABLE.value: "etcd_unavailable",
    Reason.CLIENT_QUOTA.value: "client_quota",
    Reason.SUBMIT_RATE.value: "submit_rate",
}


class Nodes(Adverts, Protocol):
    def snapshot(self) -> tuple[NodeView, ...]: ...


class Queue(Protocol):
    """What admission reads of the dispatcher: the queue it holds and its bound."""

    @property
    def max_queue(self) -> int: ...

    def queue_depth(self) -> int: ...

    def wake(self) -> None: ...


def _refuse_over(refusal: Refusal | None) -> None:
    """Refused (RESOURCE_EXHAUSTED with RetryInfo) when a per-client limit said no."""
    if refusal is not None:
        log.info("submit rejected: %s", refusal.message)
        info = ErrorDetails(refusal.reason.value, {}, (), refusal.retry_after_s)
        raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message, info)


def image_ext(data: bytes) -> str:
    return next((ext for magic, ext in _IMAGE_EXT if data.startswith(magic)), "img")


def stored_request(norm: Normalized, image_uri: str) -> common_pb2.GenerationRequest:
    """The request as dispatched: defaults filled (seed fixed, so every attempt renders the same)."""
    return common_pb2.GenerationRequest(image_uri=image_uri, **dataclasses.asdict(norm))


def check_submitted(
    gen: common_pb2.GenerationRequest, limits: Limits, random_seed: Callable[[], int]
) -> Normalized:
    """A submitted request's fields, defaults filled; FieldError naming the field. (The image is
    decoded beside it, in a thread: decode_image.)"""
    if gen.image_uri:
        raise FieldError("image_uri", "is set by the coordinator; send the image bytes in `image`")
    check_model_name(gen.model)
    return normalize(gen, limits, random_seed=random_seed)


class Intake:
    def __init__(
        self,
        store: JobStore,
        nodes: Nodes,
        queue: Queue,
        artifacts: ArtifactStore,
        *,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
        random_seed: Callable[[], int] = lambda: uuid.uuid4().int % (RANDOM_SEED_MAX + 1),
        metrics: SubmitMetrics | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.metrics: SubmitMetrics = metrics or _NoMetrics()
        self.quotas = quotas or Quotas()
        self._store = store
        self._nodes = nodes
        self._queue = queue
        self._artifacts = artifacts
        self._limits = limits
        self._archs = ArchCache(nodes)
        self._clock = clock
        self._random_seed = random_seed
        self.admitting = 0  # admitted submissions not yet in the job table (or failed)
        self._admitting_of: collections.Counter[str] = collections.Counter()  # the same, per owner

    async def submit(
        self, request: coordinator_pb2.SubmitRequest, term: Term, who: auth.Principal = auth.OPEN
    ) -> tuple[JobRecord, bool]:
        """The stored job and whether this call created it; Refused, or Fenced once `term` is over."""
        try:
            return await self._submit(request, term, who)
        except Refused as err:
            self.metrics.rejected(err.reason)
            raise

    def _queued_of(self, owner: str) -> int:
        queued = sum(1 for r in self._store.table.queued() if r.owner == owner)
        return queued + self._admitting_of[owner]

    async def _submit(
        self, request: coordinator_pb2.SubmitRequest, term: Term, who: auth.Principal
    ) -> tuple[JobRecord, bool]:
        try:
            check_request_id(request.request_id)  # the front door checked it already; Intake may stand alone
        except FieldError as err:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, err.message, field_details(err)) from None
        job_id = request.request_id or uuid.uuid4().hex
        digest = request_digest(request.request, who.name)
        existing = self._store.table.get(job_id)  # open, or finished here lately (older: store.submit)
        if existing is not None:
            if existing.digest != digest:
                raise Refused(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"request_id {quote(job_id)} already names a different request; use a new request_id",
                    details(Reason.REQUEST_ID_CONFLICT, request_id=job_id),
                )
            return existing, False
        _refuse_over(self.quotas.submit(who))  # new jobs only: a retry or re-attach costs nothing
        gen = request.request
        norm = await self._normalized(job_id, gen)
        nodes = self._nodes.snapshot()
        arch, notes = self._archs.get(norm.model)
        for note in notes:
            log.warning("%s", note)
        need = job_need(job_id, norm, arch, nodes)
        admission = admit(need, nodes, self._queue.queue_depth() + self.admitting, self._queue.max_queue)
        if not admission.accepted:
            return await self._refuse(job_id, digest, admission)
        _refuse_over(self.quotas.queued(who, self._queued_of(who.name)))
        # No await between the checks and the reservation: that is what makes the bounds exact.
        self.admitting += 1
        self._admitting_of[who.name] += 1
        try:
            return await self._store_job(job_id, digest, gen, norm, need, term, admission.message, who)
        finally:
            self.admitting -= 1
            self._admitting_of[who.name] -= 1
            if self._admitting_of[who.name] <= 0:
                del self._admitting_of[who.name]

    async def _normalized(self, job_id: str, gen: common_pb2.GenerationRequest) -> Normalized:
        try:
            norm = check_submitted(gen, self._limits, self._random_seed)
            await asyncio.to_thread(decode_image, gen.image, self._limits)
        except FieldError as err:
            log.info("submit %s rejected: %s", job_id, err)
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(err), field_details(err)) from None
        return norm

    async def _refuse(self, job_id: str, digest: str, admission: Admission) -> tuple[JobRecord, bool]:
        # A retried submit of a job finished long ago (no longer in memory) is answered, not refused.
        with contextlib.suppress(KVUnavailable, ValueError):
            finished = await self._store.fetch(job_id)
            if finished is not None and finished.digest == digest:
                return finished, False
        log.info("submit %s rejected: %s", job_id, admission.message)
        full = admission.kind is AdmissionKind.REJECT_QUEUE_FULL
        reason = Reason.QUEUE_FULL if full else Reason.NO_NODE_FITS
        raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, admission.message, details(reason))

    async def _store_job(
        self,
        job_id: str,
        digest: str,
        gen: common_pb2.GenerationRequest,
        norm: Normalized,
        need: JobNeed,
        term: Term,
        admitted: str,
        who: auth.Principal,
    ) -> tuple[JobRecord, bool]:
        """Store the image and commit the job (its queue slot is reserved by the caller)."""
        name = f"jobs/{job_id}/input-{digest[:16]}.{image_ext(gen.image)}"
        try:
            input_uri = await asyncio.to_thread(self._artifacts.put, name, gen.image)
        except (ArtifactError, OSError) as exc:
            raise Refused(
                grpc.StatusCode.UNAVAILABLE,
                f"cannot store the input image ({exc}); retry with the same request_id",
                details(Reason.STORE_UNAVAILABLE),
            ) from None
        view = jobs.new_job(job_id, need.required_bytes, need.required_tier, norm.model, self._clock())
        record = JobRecord(view, stored_request(norm, input_uri), input_uri, digest, owner=who.name)
        try:
            stored, created = await self._store.submit(record, term.epoch)
        except IdConflict as err:
            raise Refused(
                grpc.StatusCode.ALREADY_EXISTS,
                str(err),
                details(Reason.REQUEST_ID_CONFLICT, request_id=job_id),
            ) from None
        except KVUnavailable as err:
            raise Refused(
                grpc.StatusCode.UNAVAILABLE,
                f"etcd did not confirm the job ({err}); it may or may not be stored: "
                "retry with the same request_id (idempotent)",
                details(Reason.ETCD_UNAVAILABLE),
            ) from None
        by = f" for {who.name}" if who.name else ""
        log.info("submit %s%s %s: %s", job_id, by, "created" if created else "already known", admitted)
        self._queue.wake()
        return stored, created
