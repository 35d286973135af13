"""The one exception the SDK raises: a failed call, with its gRPC status code and the server's words,
and the structured details the server sent beside them (i2v_contract.reasons)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from i2v_common.errors import details_of
from i2v_contract.reasons import ErrorDetails, FieldViolation


class CallError(Exception):
    """A failed call: the gRPC status code and the server's message; `reason`, `field_violations`,
    `retry_after` and `metadata` from its details (empty when the server sent none)."""

    def __init__(self, code: grpc.StatusCode, message: str, details: ErrorDetails | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = details if details is not None else ErrorDetails()

    @property
    def reason(self) -> str:
        """ErrorInfo.reason (domain "i2v.v1"), e.g. "QUEUE_FULL"; "" when none was sent."""
        return self.details.reason

    @property
    def metadata(self) -> Mapping[str, str]:
        """ErrorInfo.metadata: what the reason is about (e.g. leader_addr for NOT_LEADER)."""
        return self.details.metadata

    @property
    def field_violations(self) -> tuple[FieldViolation, ...]:
        """BadRequest: each bad request field and what is wrong with it (INVALID_ARGUMENT)."""
        return self.details.field_violations

    @property
    def retry_after(self) -> float | None:
        """RetryInfo: seconds to wait before the same call may succeed; None when waiting is no help."""
        return self.details.retry_after_s

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> CallError:
        call: Any = err
        return cls(call.code(), call.details() or "", details_of(err))
