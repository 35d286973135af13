"""`GET /v1/videos/{id}/events`: a job's progress as Server-Sent Events (events.py), resumable with
Last-Event-ID, at most `max_streams` open at once (429 beyond), ended cleanly on SIGTERM with a
`retry` hint so the client reconnects (to another replica) and resumes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from i2v_client import CallError, Pause
from i2v_contract.states import FINAL_STATES
from i2v_contract.wire import coordinator_pb2
from i2v_gateway.cluster import api_error
from i2v_gateway.errors import ApiError
from i2v_gateway.events import Narrator, Sse, final_key, key_text, parse_key
from i2v_gateway.gateway import Gateway, caller
from i2v_gateway.mapping import video_object
from i2v_gateway.watch import Closed, Item

router = APIRouter(prefix="/v1", tags=["videos"])
Caller = Annotated[tuple[Gateway, str | None], Depends(caller)]
RECONNECT_MS = 1000


async def _final_video(gw: Gateway, token: str | None, event: coordinator_pb2.JobEvent) -> dict[str, Any]:
    """The Video object for the `done` event (a Get, so it carries the job's timestamps)."""
    client = gw.cluster.client_for(token)
    try:
        job = await gw.cluster.call(lambda: client.get(event.job_id))
    except ApiError:
        job = coordinator_pb2.Job(
            job_id=event.job_id, state=event.state, attempt=event.attempt, node_id=event.node_id,
            result=event.result, error=event.error, error_code=event.error_code,
        )  # fmt: skip
    return video_object(job, None, gw.limits)


async def _events(
    gw: Gateway, token: str | None, job_id: str, narrator: Narrator, queue: asyncio.Queue[Item]
) -> AsyncIterator[bytes]:
    yield Sse("open", {"id": job_id}, retry_ms=RECONNECT_MS).encode()
    while not narrator.ended:
        try:
            item = await asyncio.wait_for(queue.get(), gw.settings.heartbeat_s)
        except TimeoutError:
            yield b": keep-alive\n\n"
            continue
        if isinstance(item, Closed):
            yield Sse(
                "shutdown", {"reason": "the gateway is shutting down; reconnect"}, retry_ms=RECONNECT_MS
            ).encode()
            return
        if isinstance(item, CallError):
            error = api_error(item)
            yield Sse("error", {**error.body(), "status": error.status}).encode()
            return
        if isinstance(item, Pause):
            yield narrator.failover(item.lost, item.reason, item.next).encode()
            continue
        for sse in narrator.event(item):
            if sse.event == "done":
                sse = Sse("done", await _final_video(gw, token, item), sse.id)
            yield sse.encode()


@router.get(
    "/videos/{video_id}/events",
    summary="Live progress as Server-Sent Events (resumable with Last-Event-ID)",
    response_class=StreamingResponse,
)
async def video_events(
    video_id: str,
    who: Caller,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        str | None, Query(description="the same as Last-Event-ID, for clients that cannot set it")
    ] = None,
) -> StreamingResponse:
    gw, token = who
    if gw.streams >= gw.settings.max_streams:
        raise ApiError(
            429,
            f"{gw.settings.max_streams} event streams are open on this gateway; "
            f"poll GET /v1/videos/{video_id} or retry later",
            type="rate_limit_error",
            code="too_many_streams",
            retry_after=5.0,
        )
    client = gw.cluster.client_for(token)
    job = await gw.cluster.call(lambda: client.get(video_id), {"job_id": "video_id"})  # 404 before the stream
    narrator = Narrator(video_id, parse_key(last_event_id or after))
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _counted(gw, token, job, narrator), media_type="text/event-stream", headers=headers
    )


async def _counted(
    gw: Gateway, token: str | None, job: coordinator_pb2.Job, narrator: Narrator
) -> AsyncIterator[bytes]:
    """The stream, counted while open; a finished job's is its end alone, without a watch."""
    gw.streams += 1
    gw.metrics.streams.set(gw.streams)
    try:
        if job.state in FINAL_STATES:
            yield Sse("open", {"id": job.job_id}, retry_ms=RECONNECT_MS).encode()
            yield Sse("done", video_object(job, None, gw.limits), key_text(final_key(job))).encode()
            return
        queue = gw.watches.subscribe(job.job_id, token)
        try:
            async for chunk in _events(gw, token, job.job_id, narrator, queue):
                yield chunk
        finally:
            gw.watches.unsubscribe(job.job_id, token, queue)
    finally:
        gw.streams -= 1
        gw.metrics.streams.set(gw.streams)
