"""Errors in the OpenAI API's shape (`{"error": {"message", "type", "param", "code"}}`), and the
gRPC status codes of a failed coordinator call mapped onto HTTP statuses (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from i2v_contract.reasons import FieldViolation

# The error types OpenAI's API uses, by the kind of status.
INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
NOT_FOUND = "not_found_error"
CONFLICT = "conflict_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"
UNAVAILABLE = "service_unavailable_error"


class ApiError(Exception):
    """An HTTP error answer: status, message, OpenAI error type, the request parameter it is about,
    a machine-readable code and, where waiting helps, seconds to wait (Retry-After)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after + 0.499)))}


@dataclass(frozen=True)
class Failure:
    """What a failed SDK call said, without grpc types: the status code's name, the message, and
    the structured details (ErrorInfo reason, BadRequest violations, RetryInfo)."""

    code: str
    message: str
    reason: str = ""
    violations: Sequence[FieldViolation] = ()
    retry_after: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


# gRPC code -> (HTTP status, OpenAI error type).
_STATUS: Mapping[str, tuple[int, str]] = {
    "INVALID_ARGUMENT": (400, INVALID_REQUEST),
    "OUT_OF_RANGE": (400, INVALID_REQUEST),
    "UNAUTHENTICATED": (401, AUTHENTICATION),
    "PERMISSION_DENIED": (403, PERMISSION),
    "NOT_FOUND": (404, NOT_FOUND),
    "ALREADY_EXISTS": (409, CONFLICT),
    "FAILED_PRECONDITION": (409, CONFLICT),
    "ABORTED": (409, CONFLICT),
    "RESOURCE_EXHAUSTED": (429, RATE_LIMIT),
    "UNIMPLEMENTED": (501, SERVER),
    "UNAVAILABLE": (503, UNAVAILABLE),
    "DEADLINE_EXCEEDED": (503, UNAVAILABLE),
    "DATA_LOSS": (502, SERVER),
}
# Where the server sent no RetryInfo but waiting is the remedy.
_DEFAULT_RETRY_S: Mapping[int, float] = {429: 5.0, 503: 1.0}


def from_failure(failure: Failure, renames: Mapping[str, str] | None = None) -> ApiError:
    """The HTTP error for a failed coordinator call. `renames` maps the wire's field names to the
    request parameters they came from (e.g. width -> size), so a 400 names what the caller sent."""
    status, kind = _STATUS.get(failure.code, (500, SERVER))
    param = None
    message = failure.message
    if failure.violations:
        names = renames or {}
        param = names.get(failure.violations[0].field, failure.violations[0].field)
        message = "; ".join(_violation(v, names) for v in failure.violations)
    retry_after = failure.retry_after
    if retry_after is None:
        retry_after = _DEFAULT_RETRY_S.get(status)
    code = failure.reason.lower() if failure.reason else failure.code.lower()
    return ApiError(status, message, type=kind, param=param, code=code, retry_after=retry_after)


def _violation(violation: FieldViolation, renames: Mapping[str, str]) -> str:
    sent = renames.get(violation.field)
    if sent is None:
        return f"{violation.field}: {violation.description}"
    return f"{sent} ({violation.field}): {violation.description}"
