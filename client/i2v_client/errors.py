"""The one exception the SDK raises: a failed call, with its gRPC status code, the server's words and
the address that answered."""

from __future__ import annotations

from typing import Any

import grpc

STATUS_DETAILS_METADATA = "grpc-status-details-bin"  # gRPC's key for a google.rpc.Status


class CallError(Exception):
    """A failed call: the gRPC status code, the server's message and, when one server answered, its
    `address` ("" when no single server is to blame, e.g. none could be reached). `status_details`
    holds the serialized google.rpc.Status a server attached for structured error details (b""
    when none did): what the message says in words, for programs."""

    def __init__(
        self, code: grpc.StatusCode, message: str, *, address: str = "", status_details: bytes = b""
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.address = address
        self.status_details = status_details

    @classmethod
    def from_rpc(cls, err: grpc.RpcError, address: str = "") -> CallError:
        call: Any = err
        try:
            metadata = call.trailing_metadata() or ()
        except Exception:  # an error raised before any answer has no metadata to give
            metadata = ()
        details = next((v for k, v in metadata if k == STATUS_DETAILS_METADATA and isinstance(v, bytes)), b"")
        return cls(call.code(), call.details() or "", address=address, status_details=details)


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
