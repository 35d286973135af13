"""Failed coordinator calls -> HTTP errors in OpenAI's shape (pure, table-driven)."""

from __future__ import annotations

import pytest

from i2v_contract.reasons import FieldViolation
from i2v_gateway.errors import ApiError, Failure, from_failure


@pytest.mark.parametrize(
    ("failure", "status", "kind", "code", "retry_after"),
    [
        pytest.param(
            Failure("INVALID_ARGUMENT", "bad"),
            400,
            "invalid_request_error",
            "invalid_argument",
            None,
            id="invalid",
        ),
        pytest.param(
            Failure("UNAUTHENTICATED", "who"),
            401,
            "authentication_error",
            "unauthenticated",
            None,
            id="unauthenticated",
        ),
        pytest.param(
            Failure("PERMISSION_DENIED", "not yours"),
            403,
            "permission_error",
            "permission_denied",
            None,
            id="forbidden",
        ),
        pytest.param(
            Failure("NOT_FOUND", "gone", "JOB_NOT_FOUND"),
            404,
            "not_found_error",
            "job_not_found",
            None,
            id="not-found",
        ),
        pytest.param(
            Failure("ALREADY_EXISTS", "dup", "REQUEST_ID_CONFLICT"),
            409,
            "conflict_error",
            "request_id_conflict",
            None,
            id="conflict",
        ),
        pytest.param(
            Failure("FAILED_PRECONDITION", "ended", "JOB_FINISHED"),
            409,
            "conflict_error",
            "job_finished",
            None,
            id="finished",
        ),
        pytest.param(
            Failure("RESOURCE_EXHAUSTED", "full", "QUEUE_FULL", retry_after=5.0),
            429,
            "rate_limit_error",
            "queue_full",
            5.0,
            id="queue-full-retry-info",
        ),
        pytest.param(
            Failure("RESOURCE_EXHAUSTED", "no node", "NO_NODE_FITS"),
            429,
            "rate_limit_error",
            "no_node_fits",
            5.0,
            id="exhausted-default-wait",
        ),
        pytest.param(
            Failure("UNAVAILABLE", "no leader", "NO_LEADER", retry_after=1.0),
            503,
            "service_unavailable_error",
            "no_leader",
            1.0,
            id="no-leader",
        ),
        pytest.param(
            Failure("DEADLINE_EXCEEDED", "slow"),
            503,
            "service_unavailable_error",
            "deadline_exceeded",
            1.0,
            id="deadline",
        ),
        pytest.param(Failure("DATA_LOSS", "hash"), 502, "server_error", "data_loss", None, id="data-loss"),
        pytest.param(Failure("INTERNAL", "bug"), 500, "server_error", "internal", None, id="internal"),
    ],
)
def test_status_codes_map_to_http(
    failure: Failure, status: int, kind: str, code: str, retry_after: float | None
) -> None:
    error = from_failure(failure)
    assert (error.status, error.type, error.code, error.retry_after) == (status, kind, code, retry_after)
    assert error.body() == {"error": {"message": failure.message, "type": kind, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("violations", "renames", "param", "message"),
    [
        pytest.param(
            [FieldViolation("steps", "201 is too many")], {}, "steps", "steps: 201 is too many", id="as-sent"
        ),
        pytest.param(
            [FieldViolation("width", "65 is not a multiple of 8")],
            {"width": "size"},
            "size",
            "size (width): 65 is not a multiple of 8",
            id="renamed",
        ),
        pytest.param(
            [FieldViolation("frames", "too many"), FieldViolation("fps", "too fast")],
            {"frames": "seconds"},
            "seconds",
            "seconds (frames): too many; fps: too fast",
            id="several",
        ),
    ],
)
def test_field_violations_name_the_parameter(
    violations: list[FieldViolation], renames: dict[str, str], param: str, message: str
) -> None:
    error = from_failure(Failure("INVALID_ARGUMENT", "x", "INVALID_FIELD", violations), renames)
    assert (error.status, error.param, error.message) == (400, param, message)


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        pytest.param(None, {}, id="none"),
        pytest.param(0.2, {"Retry-After": "1"}, id="at-least-1"),
        pytest.param(2.2, {"Retry-After": "3"}, id="rounds-up"),
    ],
)
def test_retry_after_header(retry_after: float | None, header: dict[str, str]) -> None:
    assert ApiError(429, "x", retry_after=retry_after).headers() == header
