"""Structured error details on the wire (gRPC's richer error model, through grpcio-status).

A server aborts a call with `abort`: the status code and message stay what they always were, and
a google.rpc.Status with ErrorInfo (reason, domain "i2v.v1", metadata), BadRequest (field
violations) and RetryInfo (retry delay) travels beside them in the `grpc-status-details-bin`
trailer, which clients in every language know how to read. A client reads them back with
`details_of`; a server that sent none (or an older one) reads as empty details.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from i2v_contract.reasons import DOMAIN, ErrorDetails, FieldViolation

Metadata = Sequence[tuple[str, str | bytes]]


class Aborts(Protocol):
    """What `abort` uses of a grpc.aio.ServicerContext."""

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Metadata) -> NoReturn: ...


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_proto(code: grpc.StatusCode, message: str, details: ErrorDetails) -> status_pb2.Status:
    """The google.rpc.Status for a failed call: code, message and the details that are set."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if details.reason:
        info = error_details_pb2.ErrorInfo(reason=details.reason, domain=DOMAIN, metadata=details.metadata)
        status.details.append(_packed(info))
    if details.field_violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in details.field_violations
            ]
        )
        status.details.append(_packed(bad))
    if details.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(details.retry_after_s * 1e9))
        status.details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status


async def abort(
    context: Aborts,
    code: grpc.StatusCode,
    message: str,
    details: ErrorDetails | None = None,
    *,
    trailing_metadata: Metadata = (),
) -> NoReturn:
    """End the call with `code` and `message`, `details` beside them, and `trailing_metadata` (which
    replaces any set before: pass all of it here)."""
    metadata = tuple(trailing_metadata)
    if details is not None:
        metadata += tuple(rpc_status.to_status(status_proto(code, message, details)).trailing_metadata)
    await context.abort(code, message, metadata)
    raise AssertionError("abort returned")


def details_of(err: grpc.RpcError) -> ErrorDetails:
    """The details a failed call carried; empty when it carried none or they do not match its status."""
    call: Any = err
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # a trailer that contradicts the call's own code or message
        return ErrorDetails()
    if status is None:
        return ErrorDetails()
    reason, metadata = "", {}
    violations: list[FieldViolation] = []
    retry_after_s: float | None = None
    for packed in status.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            packed.Unpack(retry)
            retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
    return ErrorDetails(reason, metadata, tuple(violations), retry_after_s)
