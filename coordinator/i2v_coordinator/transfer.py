"""The Download RPC's shell: the job record from etcd, the artifact from the store, in pieces.

Any coordinator serves it, standbys included: it needs only the job's record (read from etcd, never
from a possibly stale table) and the artifact store every coordinator shares. The artifact is read
one piece (1 MiB) at a time with a ranged read, the next piece while the last one is being sent, so
a download holds at most two pieces in memory whatever the artifact's size. What to send is decided
in download.py. With a tokens file, only the job's owner or an admin gets its bytes (access.py),
on a standby too.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

import grpc

from i2v_common import errors
from i2v_common.artifacts import ArtifactError, ArtifactMissing, ArtifactStore
from i2v_common.status import to_grpc
from i2v_contract import auth
from i2v_contract.ids import check_job_id
from i2v_contract.keys import DoneRecord
from i2v_contract.kv import KVUnavailable
from i2v_contract.limits import FieldError
from i2v_contract.reasons import ErrorDetails, Reason, details, field_details
from i2v_contract.wire import coordinator_pb2
from i2v_coordinator import download
from i2v_coordinator.access import Access
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.records import JobRecord, decode_job

log = logging.getLogger(__name__)

HASH_PIECE_BYTES = 8 * 1024 * 1024  # reads while hashing an artifact whose record has no sha256


async def read_record(store: JobStore, job_id: str) -> JobRecord | None:
    """The job from etcd, open (jobs/) or finished (done/ -> history/), without touching the
    coordinator's table. jobs/ first: finishing deletes it in the txn that writes done/."""
    kv = await store.kv.get(store.keys.job(job_id))
    if kv is not None:
        return decode_job(kv)
    pointer = await store.kv.get(store.keys.done_of(job_id))
    if pointer is None:
        return None
    entry = await store.kv.get(DoneRecord.from_json(pointer.value).key)
    return None if entry is None else decode_job(entry)


NotFound = Callable[[str, grpc.aio.ServicerContext], Awaitable[NoReturn]]


class Downloads:
    def __init__(
        self, store: JobStore, artifacts: ArtifactStore, not_found: NotFound, access: Access | None = None
    ) -> None:
        self._store = store
        self._access = access or Access()
        self._artifacts = artifacts
        self._not_found = not_found  # the servicer's NOT_FOUND for a job id (retention's tombstone)

    async def serve(
        self,
        request: coordinator_pb2.DownloadRequest,
        context: grpc.aio.ServicerContext,
        who: auth.Principal = auth.OPEN,
    ) -> AsyncIterator[coordinator_pb2.DownloadResponse]:
        src, size, start, end, digest = await self._plan(request, context, who)
        yield coordinator_pb2.DownloadResponse(
            total_size=size, sha256=digest, mime_type=src.mime_type, offset=start
        )
        try:
            async for offset, length, data in self._read_ahead(src.uri, start, end):
                if len(data) != length:
                    await errors.abort(
                        context,
                        grpc.StatusCode.DATA_LOSS,
                        f"{src.label} changed while being sent ({len(data)} of {length} bytes at "
                        f"offset {offset}); download it again from offset 0",
                        details(Reason.ARTIFACT_CHANGED, uri=src.uri),
                    )
                yield coordinator_pb2.DownloadResponse(offset=offset, data=data)
        except (ArtifactError, OSError) as exc:
            await errors.abort(context, *self._unreadable(src, exc))

    async def _read_ahead(self, uri: str, start: int, end: int) -> AsyncIterator[tuple[int, int, bytes]]:
        """(offset, length, data) of each piece of [start, end); the next piece is read while the
        caller sends this one."""
        reads: collections.deque[tuple[int, int, asyncio.Future[bytes]]] = collections.deque()
        try:
            for offset, length in download.pieces(start, end):
                reads.append((offset, length, asyncio.ensure_future(self._read(uri, offset, length))))
                if len(reads) > 1:
                    offset, length, read = reads.popleft()
                    yield offset, length, await read
            while reads:
                offset, length, read = reads.popleft()
                yield offset, length, await read
        finally:
            for _, _, read in reads:
                read.cancel()

    async def _read(self, uri: str, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self._artifacts.read_range, uri, offset, length)

    async def _plan(
        self, request: coordinator_pb2.DownloadRequest, context: grpc.aio.ServicerContext, who: auth.Principal
    ) -> tuple[download.Source, int, int, int, str]:
        """The artifact, its size, the [start, end) to send and its sha256; aborts with the refusal."""
        job_id = request.job_id
        try:
            check_job_id("job_id", job_id)  # before any etcd read: no key is built from a bad id
        except FieldError as err:
            await errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, err.message, field_details(err))
        try:
            record = await read_record(self._store, job_id)
        except (KVUnavailable, ValueError) as exc:
            await errors.abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"cannot read job {job_id}: {exc}; retry",
                details(Reason.ETCD_UNAVAILABLE),
            )
        owner = None if record is None else record.owner
        await self._access.job(who, auth.Action.DOWNLOAD, job_id, owner, context)
        if record is None:
            await self._not_found(job_id, context)
        try:
            src = download.source(record, request.what, request.frame)
        except download.Refused as err:
            await errors.abort(context, to_grpc(err.code), err.message, err.details)
        try:
            size = await asyncio.to_thread(self._artifacts.size, src.uri)
            download.check_size(src, size)
            start, end = download.byte_range(size, request.offset, request.limit)
            digest = src.sha256 or await self._hash(src.uri, size)
        except download.Refused as err:
            await errors.abort(context, to_grpc(err.code), err.message, err.details)
        except (ArtifactError, OSError) as exc:
            await errors.abort(context, *self._unreadable(src, exc))
        return src, size, start, end, digest

    async def _hash(self, uri: str, size: int) -> str:
        digest = hashlib.sha256()
        for offset, length in download.pieces(0, size, HASH_PIECE_BYTES):
            digest.update(await self._read(uri, offset, length))
        return digest.hexdigest()

    @staticmethod
    def _unreadable(src: download.Source, exc: Exception) -> tuple[grpc.StatusCode, str, ErrorDetails]:
        if isinstance(exc, ArtifactMissing):
            return (
                grpc.StatusCode.NOT_FOUND,
                f"{src.label} is no longer in the artifact store ({src.uri}): it was removed outside "
                "retention; run the job again",
                details(Reason.ARTIFACT_MISSING, uri=src.uri),
            )
        log.warning("download of %s failed: %s", src.uri, exc)
        return (
            grpc.StatusCode.UNAVAILABLE,
            f"cannot read {src.label} from the artifact store ({exc}); retry",
            details(Reason.STORE_UNAVAILABLE),
        )
