"""The one exception the SDK raises: a failed call, with its gRPC status code, the server's words,
the address that answered and the structured details the server sent (i2v_contract.reasons)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from i2v_common.errors import details_of
from i2v_contract.reasons import ErrorDetails, FieldViolation


class CallError(Exception):
    """A failed call: the gRPC status code, the server's message and, when one server answered, its
    `address` ("" when no single server is to blame, e.g. none could be reached); `reason`,
    `field_violations`, `retry_after` and `metadata` from its details (empty when it sent none)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        details: ErrorDetails | None = None,
        *,
        address: str = "",
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.address = address
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
    def from_rpc(cls, err: grpc.RpcError, address: str = "") -> CallError:
        call: Any = err
        return cls(call.code(), call.details() or "", details_of(err), address=address)


class DeadlinePassed(CallError):
    """The caller's own deadline (`timeout=`) passed while the client was still trying."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.DEADLINE_EXCEEDED, message)


class JobEnded(CallError):
    """A followed job ended without a video: FAILED or CANCELLED (`state`, a JobState value), with
    the job's own status code and error."""

    def __init__(self, code: grpc.StatusCode, message: str, *, job_id: str, state: int) -> None:
        super().__init__(code, message)
        self.job_id = job_id
        self.state = state
