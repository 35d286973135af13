"""`/v1/videos`: create (multipart or JSON), list, retrieve, cancel (DELETE) and the content, with
HTTP Range. Every call goes through `Gateway.cluster.client_for`, with the caller's bearer token."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.datastructures import UploadFile

from i2v_client import CoordinatorClient
from i2v_contract.states import FINAL_STATES, SUCCEEDED
from i2v_contract.wire import coordinator_pb2
from i2v_gateway.errors import ApiError
from i2v_gateway.gateway import Gateway, caller
from i2v_gateway.mapping import parse_create, video_object
from i2v_gateway.relay import relay
from i2v_gateway.views import Unsatisfiable, byte_range

router = APIRouter(prefix="/v1", tags=["videos"])
LIST_SCAN_MAX = 10_000  # jobs read at most to find `after`, or to sort a listing oldest first

Caller = Annotated[tuple[Gateway, str | None], Depends(caller)]


async def _fields(request: Request, limit: int) -> tuple[dict[str, Any], bytes | None]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        return body, None
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415, f"Content-Type {kind or 'missing'}: send multipart/form-data or application/json",
            code="unsupported_media_type",
        )  # fmt: skip
    form = await request.form(max_part_size=1024 * 1024)
    fields: dict[str, Any] = {}
    image: bytes | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "input_reference":
                raise ApiError(400, f"{name}: unexpected file; send the image as input_reference", param=name)
            image = await value.read(limit + 1)
            if len(image) > limit:
                raise ApiError(400, f"input_reference: over {limit} bytes", param="input_reference")
        else:
            fields[name] = value
    return fields, image


def _request_id(token: str | None, key: str | None) -> str:
    """The job id: from an Idempotency-Key (so a retried POST makes no second job), else new."""
    if not key:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{token or ''}\n{key}".encode()).hexdigest()[:32]


@router.post("/videos", summary="Create a video from an image and a prompt")
async def create_video(
    request: Request, who: Caller, idempotency_key: Annotated[str | None, Header()] = None
) -> JSONResponse:
    gw, token = who
    fields, image = await _fields(request, gw.limits.max_image_bytes)
    parsed = parse_create(fields, image, gw.limits)
    client = gw.cluster.client_for(token)
    request_id = _request_id(token, idempotency_key)
    submitted = await gw.cluster.call(
        lambda: client.submit(parsed.request, request_id=request_id), parsed.renames
    )
    job = await gw.cluster.call(lambda: client.get(submitted.job_id))
    return JSONResponse(video_object(job, None, gw.limits))


async def _job(gw: Gateway, client: CoordinatorClient, video_id: str) -> coordinator_pb2.Job:
    return await gw.cluster.call(lambda: client.get(video_id), {"job_id": "video_id"})


@router.get("/videos/{video_id}", summary="A video job: status and progress")
async def retrieve_video(video_id: str, who: Caller) -> JSONResponse:
    gw, token = who
    job = await _job(gw, gw.cluster.client_for(token), video_id)
    progress = None if job.state in FINAL_STATES else gw.watches.progress(video_id, token)
    return JSONResponse(video_object(job, progress, gw.limits))


@router.delete("/videos/{video_id}", summary="Cancel a video job (its record stays)")
async def delete_video(video_id: str, who: Caller) -> JSONResponse:
    gw, token = who
    client = gw.cluster.client_for(token)
    job = await gw.cluster.call(lambda: client.cancel(video_id), {"job_id": "video_id"})
    return JSONResponse({"id": job.job_id, "object": "video.deleted", "deleted": True, "status": "failed"})


def _scan(client: CoordinatorClient, until: int) -> Iterator[coordinator_pb2.Job]:
    """Jobs in the coordinators' order (open ones newest first, then finished newest first)."""
    seen = 0
    for page in client.job_pages(limit=min(1000, max(100, until))):
        for job in page.jobs:
            yield job
            seen += 1
            if seen >= until:
                return


def _listing(
    client: CoordinatorClient, after: str | None, limit: int, order: str
) -> list[coordinator_pb2.Job]:
    """`limit` + 1 jobs after `after` in `order` (the extra one says whether there are more)."""
    if order == "asc":
        every = sorted(_scan(client, LIST_SCAN_MAX), key=lambda j: (j.created_at, j.job_id))
    else:
        every = _scan(client, LIST_SCAN_MAX)  # type: ignore[assignment]
    out: list[coordinator_pb2.Job] = []
    found = after is None
    for job in every:
        if found:
            out.append(job)
            if len(out) > limit:
                break
        elif job.job_id == after:
            found = True
    if not found:
        raise ApiError(404, f"after: no video {after!r} in the listing", param="after", code="not_found")
    return out


@router.get("/videos", summary="Video jobs, newest first")
async def list_videos(
    who: Caller,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
) -> JSONResponse:
    gw, token = who
    client = gw.cluster.client_for(token)
    jobs = await gw.cluster.call(lambda: _listing(client, after, limit, order))
    page = [video_object(job, None, gw.limits) for job in jobs[:limit]]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(jobs) > limit,
        }
    )


def _content_headers(job: coordinator_pb2.Job) -> dict[str, str]:
    result = job.result
    return {
        "Accept-Ranges": "bytes",
        "ETag": f'"{result.sha256}"',
        "Content-Disposition": f'attachment; filename="{job.job_id}.mp4"',
        "Cache-Control": "private, max-age=3600, immutable",
    }


@router.get("/videos/{video_id}/content", summary="The MP4 (HTTP Range supported)", response_model=None)
async def download_content(video_id: str, request: Request, who: Caller, variant: str = "video") -> Response:
    gw, token = who
    if variant != "video":
        raise ApiError(
            400, f"variant: {variant!r} is not served; this cluster makes the video only", param="variant"
        )
    client = gw.cluster.client_for(token)
    job = await _job(gw, client, video_id)
    if job.state != SUCCEEDED:
        state = coordinator_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
        raise ApiError(
            409, f"video {video_id} is {state}; its content exists once it completed", code="not_ready"
        )
    size, sha256 = job.result.video_size, job.result.sha256
    headers = _content_headers(job)
    etag = headers["ETag"]
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    try:
        span = byte_range(wanted, size) if size and (if_range is None or if_range == etag) else None
    except Unsatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    first, last = span if span is not None else (0, size - 1)
    status = 206 if span is not None else 200
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if size:
        headers["Content-Length"] = str(last - first + 1)
    chunks = client.read(video_id, offset=first, limit=last - first + 1 if size else 0, sha256=sha256)
    # The first chunk now, so a failure is an error answer rather than a cut-off body.
    head = await gw.cluster.call(lambda: next(chunks, b""))
    return StreamingResponse(
        _body(head, chunks),
        status_code=status,
        media_type=job.result.mime_type or "video/mp4",
        headers=headers,
    )


async def _body(head: bytes, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async with aclosing(relay(chunks)) as rest:
        async for chunk in rest:
            yield chunk
