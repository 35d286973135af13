"""gRPC status codes as plain numbers: every code by name and number, unknowns as UNKNOWN, and the
numbers are gRPC's own."""

from __future__ import annotations

import grpc
import pytest

from i2v_contract.codes import Code, code_name, code_of

ALL_CODES = [pytest.param(code, id=code.name.lower().replace("_", "-")) for code in Code]


def test_there_are_the_seventeen_canonical_codes() -> None:
    assert len(Code) == 17
    assert [code.value for code in Code] == list(range(17))


@pytest.mark.parametrize("code", ALL_CODES)
def test_a_code_round_trips_through_its_name_and_its_number(code: Code) -> None:
    assert code_of(code.name) is code
    assert code_name(code.value) == code.name
    assert code_of(code_name(int(code))) is code


@pytest.mark.parametrize("code", ALL_CODES)
def test_a_code_has_the_number_grpc_gives_it(code: Code) -> None:
    assert grpc.StatusCode[code.name].value[0] == code.value


def test_grpc_has_no_code_the_contract_lacks() -> None:
    assert {status.name for status in grpc.StatusCode} == {code.name for code in Code}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("resource_exhausted", id="lower-case"),
        pytest.param("RESOURCE EXHAUSTED", id="space-for-underscore"),
        pytest.param("OUT_OF_MEMORY", id="not-a-grpc-code"),
    ],
)
def test_a_name_grpc_does_not_define_is_unknown(name: str) -> None:
    assert code_of(name) is Code.UNKNOWN


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative"),
        pytest.param(17, id="one-past-the-last"),
        pytest.param(999, id="far-out"),
    ],
)
def test_a_number_grpc_does_not_define_is_unknown(value: int) -> None:
    assert code_name(value) == "UNKNOWN"
