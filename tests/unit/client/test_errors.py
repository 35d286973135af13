"""CallError: the code and the server's words, and the details it sent beside them."""

from __future__ import annotations

import grpc

from i2v_client import CallError
from i2v_common.errors import status_proto
from i2v_contract.reasons import ErrorDetails, FieldViolation, Reason, details
from tests.fakes.client import DetailedRpcError, FakeRpcError


def test_a_call_error_exposes_the_parsed_details() -> None:
    sent = ErrorDetails("INVALID_FIELD", {"field": "frames"}, (FieldViolation("frames", "65 is too many"),))
    message = "frames: 65 is too many"
    status = status_proto(grpc.StatusCode.INVALID_ARGUMENT, message, sent)
    err = CallError.from_rpc(DetailedRpcError(grpc.StatusCode.INVALID_ARGUMENT, message, status))
    assert (err.code, err.message, str(err)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
        f"INVALID_ARGUMENT: {message}",
    )
    assert (err.reason, dict(err.metadata), err.retry_after) == ("INVALID_FIELD", {"field": "frames"}, None)
    assert err.field_violations == (FieldViolation("frames", "65 is too many"),)


def test_retry_after_comes_from_retry_info() -> None:
    status = status_proto(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", details(Reason.QUEUE_FULL))
    err = CallError.from_rpc(DetailedRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", status))
    assert (err.reason, err.retry_after) == ("QUEUE_FULL", 5.0)


def test_without_details_everything_reads_empty() -> None:
    for err in (CallError(grpc.StatusCode.DATA_LOSS, "sha256 mismatch"), CallError.from_rpc(FakeRpcError())):
        assert (err.reason, dict(err.metadata), err.field_violations, err.retry_after) == ("", {}, (), None)
