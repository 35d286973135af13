"""Status numbers to and from grpc.StatusCode, for every code and for numbers gRPC does not define."""

from __future__ import annotations

import grpc
import pytest

from i2v_common.status import from_grpc, to_grpc
from i2v_contract.codes import Code


@pytest.mark.parametrize(
    "status", [pytest.param(status, id=status.name.lower().replace("_", "-")) for status in grpc.StatusCode]
)
def test_every_grpc_status_round_trips_through_its_number(status: grpc.StatusCode) -> None:
    code = from_grpc(status)
    assert isinstance(code, Code) and code.name == status.name
    assert to_grpc(code) is status
    assert to_grpc(int(code)) is status


@pytest.mark.parametrize(
    ("value", "status"),
    [
        pytest.param(0, grpc.StatusCode.OK, id="ok"),
        pytest.param(8, grpc.StatusCode.RESOURCE_EXHAUSTED, id="resource-exhausted"),
        pytest.param(14, grpc.StatusCode.UNAVAILABLE, id="unavailable"),
        pytest.param(-1, grpc.StatusCode.UNKNOWN, id="negative-is-unknown"),
        pytest.param(17, grpc.StatusCode.UNKNOWN, id="one-past-the-last-is-unknown"),
    ],
)
def test_a_status_number_becomes_its_grpc_status(value: int, status: grpc.StatusCode) -> None:
    assert to_grpc(value) is status
