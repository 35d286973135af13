"""The gateway's HTTP surface without a cluster: its own checks (body size, content type,
authorization, stream limit), 503 when no coordinator answers, the page's JSON, CORS, metrics and
the OpenAPI document. The coordinator address is a closed loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from i2v_gateway.app import create_app
from i2v_gateway.gateway import Gateway, Settings
from tests.etcd_cluster import free_port


def make(tmp_path: Path | None = None, **settings: object) -> TestClient:
    gw = Gateway.start(Settings(f"127.0.0.1:{free_port()}", **settings))  # type: ignore[arg-type]
    return TestClient(create_app(gw))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make(max_body_bytes=1000) as c:
        yield c


def test_no_coordinator_is_503_with_retry_after(client: TestClient) -> None:
    r = client.get("/v1/videos/abc")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "service_unavailable_error"
    assert client.get("/readyz").status_code == 503


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    r = client.post(
        "/v1/videos", files={"input_reference": ("a.png", b"x" * 2000, "image/png")}, data={"prompt": "p"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        pytest.param({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, None, id="text"),
        pytest.param(
            {"content": b"{", "headers": {"content-type": "application/json"}}, 400, None, id="bad-json"
        ),
        pytest.param({"json": [1]}, 400, None, id="json-array"),
        pytest.param({"json": {"prompt": "p"}}, 400, "input_reference", id="no-image"),
        pytest.param(
            {"data": {"prompt": "p", "size": "big"}, "files": {"input_reference": ("a", b"i", "image/png")}},
            400,
            "size",
            id="bad-size",
        ),
        pytest.param(
            {"data": {"prompt": "p"}, "files": {"other": ("a", b"i", "image/png")}},
            400,
            "other",
            id="other-file",
        ),
    ],
)
def test_bad_creates_are_answered_before_any_call(
    client: TestClient, kwargs: dict, status: int, param: str
) -> None:
    r = client.post("/v1/videos", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("header", ["Basic abc", "Bearer ", "token"])
def test_a_malformed_authorization_is_401(client: TestClient, header: str) -> None:
    r = client.get("/v1/videos/abc", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_query_validation_errors_name_the_parameter(client: TestClient) -> None:
    r = client.get("/v1/videos", params={"limit": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    assert client.get("/v1/videos", params={"order": "up"}).json()["error"]["param"] == "order"


def test_too_many_streams_is_429() -> None:
    with make(max_streams=1) as c:
        c.app.state.gateway.streams = 1  # type: ignore[attr-defined]
        r = c.get("/v1/videos/abc/events")
    assert r.status_code == 429 and r.headers["retry-after"] == "5"
    assert r.json()["error"]["code"] == "too_many_streams"


def test_unknown_routes_answer_in_the_error_shape(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_limits_page_index_health_and_openapi(client: TestClient) -> None:
    assert client.get("/v1/limits").json()["fields"]["frames"]["max"] == 64
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.get("/healthz").json() == {"status": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/videos",
        "/v1/videos/{video_id}",
        "/v1/videos/{video_id}/content",
        "/v1/videos/{video_id}/events",
        "/v1/limits",
        "/v1/cluster",
    } <= set(paths)
    assert client.get("/docs").status_code == 200


def test_metrics_label_routes_by_template(client: TestClient) -> None:
    client.get("/v1/videos/some-id")
    client.get("/v1/limits")
    text = client.get("/metrics").text
    assert 'i2v_gateway_requests_total{method="GET",route="/v1/videos/{video_id}",status="503"} 1.0' in text
    assert 'route="/v1/limits",status="200"' in text and "some-id" not in text
    assert "i2v_gateway_request_seconds_bucket" in text


def test_cors_is_off_by_default_and_on_for_named_origins(client: TestClient) -> None:
    asked = {"Origin": "http://page.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/videos", headers=asked).headers
    with make(cors_origins=("http://page.example",)) as c:
        r = c.options("/v1/videos", headers=asked)
    assert r.headers["access-control-allow-origin"] == "http://page.example"


def test_draining_is_not_ready() -> None:
    with make() as c:
        c.app.state.gateway.drain()  # type: ignore[attr-defined]
        assert c.get("/readyz").json() == {"status": "draining"}
        assert "i2v_gateway_draining 1.0" in c.get("/metrics").text
