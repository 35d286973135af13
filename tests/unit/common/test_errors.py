"""Structured error details: what `abort` puts beside a call's status on a real gRPC connection,
and what `details_of` reads back (nothing, when a server sent none or contradicts itself)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from i2v_common import errors
from i2v_contract.reasons import DOMAIN, ErrorDetails, FieldViolation, Reason, details
from tests.fakes.client import DetailedRpcError, FakeRpcError

METHOD = "/i2v.test.Errors/Fail"
BAD_WIDTH = ErrorDetails(
    "INVALID_FIELD", {"field": "width"}, (FieldViolation("width", "1002 is not a multiple of 8"),)
)


class Failing:
    """A one-method service whose call ends the way `set` says."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.UNKNOWN
        self.message = ""
        self.details: ErrorDetails | None = None
        self.metadata: tuple[tuple[str, str], ...] = ()

    def set(
        self,
        code: grpc.StatusCode,
        message: str,
        detail: ErrorDetails | None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.code, self.message, self.details, self.metadata = code, message, detail, metadata

    async def fail(self, request: bytes, context: Any) -> bytes:
        await errors.abort(context, self.code, self.message, self.details, trailing_metadata=self.metadata)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Failing, grpc.aio.Channel]]:
    failing = Failing()
    handler = grpc.method_handlers_generic_handler(
        "i2v.test.Errors", {"Fail": grpc.unary_unary_rpc_method_handler(failing.fail)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield failing, channel
    finally:
        await server.stop(0)


async def _call(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary(METHOD)(b"", timeout=5)
    return err.value


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, BAD_WIDTH, id="bad-request"),
        pytest.param(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            ErrorDetails("QUEUE_FULL", {}, (), 5.0),
            id="error-info-and-retry-info",
        ),
        pytest.param(
            grpc.StatusCode.UNAVAILABLE,
            details(Reason.NOT_LEADER, leader_id="c1", leader_addr="10.0.0.1:50100"),
            id="reason-with-metadata-no-retry",
        ),
        pytest.param(grpc.StatusCode.RESOURCE_EXHAUSTED, details(Reason.NODE_BUSY), id="retry-after-2s"),
    ],
)
async def test_details_travel_beside_the_unchanged_code_and_message(
    served: tuple[Failing, grpc.aio.Channel], code: grpc.StatusCode, detail: ErrorDetails
) -> None:
    failing, channel = served
    failing.set(code, "the words the server always used", detail)
    err = await _call(channel)
    assert (err.code(), err.details()) == (code, "the words the server always used")
    assert errors.details_of(err) == detail


async def test_other_trailing_metadata_is_kept_beside_the_details(
    served: tuple[Failing, grpc.aio.Channel],
) -> None:
    failing, channel = served
    failing.set(
        grpc.StatusCode.UNAVAILABLE, "standby", details(Reason.NOT_LEADER), (("i2v-leader-addr", "x:1"),)
    )
    err = await _call(channel)
    assert ("i2v-leader-addr", "x:1") in tuple(err.trailing_metadata() or ())
    assert errors.details_of(err).reason == "NOT_LEADER"


async def test_no_details_sends_the_plain_status(served: tuple[Failing, grpc.aio.Channel]) -> None:
    failing, channel = served
    failing.set(grpc.StatusCode.INTERNAL, "boom", None)
    err = await _call(channel)
    assert (err.code(), err.details()) == (grpc.StatusCode.INTERNAL, "boom")
    assert errors.details_of(err) == ErrorDetails()


def test_the_status_proto_packs_each_detail_once_in_domain_i2v_v1() -> None:
    status = errors.status_proto(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", details(Reason.QUEUE_FULL))
    assert (status.code, status.message) == (8, "queue full")
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert [status.details[0].Unpack(info), status.details[1].Unpack(retry)] == [True, True]
    assert (info.reason, info.domain, DOMAIN) == ("QUEUE_FULL", "i2v.v1", "i2v.v1")
    assert retry.retry_delay.ToMilliseconds() == 5000 and len(status.details) == 2


def test_a_bad_request_names_each_field() -> None:
    status = errors.status_proto(grpc.StatusCode.INVALID_ARGUMENT, "width: ...", BAD_WIDTH)
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("width", "1002 is not a multiple of 8")
    ]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        pytest.param(grpc.StatusCode.UNAVAILABLE, "queue full", id="another-code"),
        pytest.param(grpc.StatusCode.RESOURCE_EXHAUSTED, "other words", id="another-message"),
    ],
)
def test_details_that_contradict_the_call_read_as_none(code: grpc.StatusCode, message: str) -> None:
    status = errors.status_proto(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", details(Reason.QUEUE_FULL))
    assert errors.details_of(DetailedRpcError(code, message, status)) == ErrorDetails()


def test_a_call_without_a_trailer_reads_as_no_details() -> None:
    assert (
        errors.details_of(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "refused", hint="x:1")) == ErrorDetails()
    )
