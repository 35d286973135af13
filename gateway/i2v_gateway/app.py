"""The FastAPI application: the videos API and its event streams, the page's JSON (limits,
cluster), the page itself, health, readiness and metrics; errors in OpenAI's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from i2v_gateway import stream, videos
from i2v_gateway.errors import ApiError
from i2v_gateway.gateway import Gateway, caller, gateway
from i2v_gateway.middleware import BodyLimit, MetricsMiddleware
from i2v_gateway.views import cluster_view, limits_view

Caller = Annotated[tuple[Gateway, str | None], Depends(caller)]
_HTTP_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
}


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "header", "body")]
    param = where[-1] if where else None
    message = f"{param}: {first.get('msg', 'invalid')}" if param else str(first.get("msg", "invalid request"))
    return _error_response(ApiError(400, message, param=param, code="invalid_value"))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
    return _error_response(ApiError(exc.status_code, str(exc.detail), type=kind, code=None))


def _ops_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Ready: not draining, and a coordinator leads")
    async def readyz(request: Request) -> JSONResponse:
        gw = gateway(request)
        verdict = await gw.cluster.readiness(gw.draining)
        if not verdict.ready:
            return JSONResponse({"status": verdict.status}, status_code=503)
        return JSONResponse({"status": "ready", "leader": verdict.leader})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        registry = gateway(request).metrics.registry
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)


def _page_routes(app: FastAPI, gw: Gateway) -> None:
    @app.get("/v1/limits", tags=["page"], summary="Every request field's range and default")
    async def limits(request: Request) -> JSONResponse:
        return JSONResponse(limits_view(gateway(request).limits))

    @app.get("/v1/cluster", tags=["page"], summary="Leader, nodes (tier, free memory, current job), queue")
    async def cluster(who: Caller) -> JSONResponse:
        gw, token = who
        client = gw.cluster.client_for(token)
        status = await gw.cluster.call(client.cluster_status)
        nodes = await gw.cluster.call(client.list_nodes)
        return JSONResponse(cluster_view(status, nodes))

    static = gw.settings.static_dir

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static, check_dir=False), name="static")


def create_app(gw: Gateway) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        gw.close()

    app = FastAPI(
        title="i2v-gateway",
        version="1",
        summary="Image-to-video on the i2v cluster, in the shape of OpenAI's videos API",
        lifespan=lifespan,
    )
    app.state.gateway = gw
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.include_router(videos.router)
    app.include_router(stream.router)
    _ops_routes(app)
    _page_routes(app, gw)
    gw.metrics.watches.set_function(gw.watches.count)
    if gw.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(gw.settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Range", "Idempotency-Key"],
            expose_headers=["Content-Range", "ETag", "Retry-After"],
        )
    app.add_middleware(BodyLimit, limit=gw.settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=gw.metrics)
    return app
