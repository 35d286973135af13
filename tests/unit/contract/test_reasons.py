"""The reasons a failed call names (ErrorInfo, domain i2v.v1), when waiting helps, and what a bad
field becomes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from i2v_contract.limits import FieldError
from i2v_contract.reasons import (
    DOMAIN,
    RETRY_AFTER_S,
    ErrorDetails,
    FieldViolation,
    Reason,
    details,
    field_details,
)


@pytest.mark.parametrize("reason", [pytest.param(r, id=r.value) for r in Reason])
def test_a_reason_is_upper_snake_and_its_own_name(reason: Reason) -> None:
    assert re.fullmatch(r"[A-Z][A-Z0-9_]+[A-Z0-9]", reason.value) and reason.value == reason.name


def test_the_domain_is_the_proto_package() -> None:
    assert DOMAIN == "i2v.v1"


@pytest.mark.parametrize(
    ("reason", "retry_after_s"),
    [
        pytest.param(Reason.NO_LEADER, 1.0, id="no-leader-yet"),
        pytest.param(Reason.QUEUE_FULL, 5.0, id="queue-full"),
        pytest.param(Reason.NODE_BUSY, 2.0, id="node-busy"),
        pytest.param(Reason.NODE_LOADING, 5.0, id="node-loading"),
        pytest.param(Reason.ETCD_UNAVAILABLE, 1.0, id="etcd"),
        pytest.param(Reason.NOT_LEADER, None, id="standby-go-to-the-leader-instead"),
        pytest.param(Reason.NO_NODE_FITS, None, id="never-fits-waiting-is-no-help"),
        pytest.param(Reason.OUT_OF_MEMORY, None, id="oom"),
    ],
)
def test_retry_info_only_where_waiting_helps(reason: Reason, retry_after_s: float | None) -> None:
    assert details(reason).retry_after_s == retry_after_s == RETRY_AFTER_S.get(reason)


def test_details_carry_the_reason_and_its_metadata() -> None:
    assert details(Reason.NODE_BUSY, node_id="n1", job_id="j7") == ErrorDetails(
        "NODE_BUSY", {"node_id": "n1", "job_id": "j7"}, (), 2.0
    )


def test_a_field_error_names_its_field_in_a_violation_without_the_prefix() -> None:
    err = FieldError("width", "1002 is not a multiple of 8; use 64..1280 in steps of 8")
    assert err.message == "width: 1002 is not a multiple of 8; use 64..1280 in steps of 8"
    assert field_details(err) == ErrorDetails(
        "INVALID_FIELD",
        {"field": "width"},
        (FieldViolation("width", "1002 is not a multiple of 8; use 64..1280 in steps of 8"),),
    )


def test_every_reason_is_documented_in_the_protos_for_other_languages() -> None:
    protos = Path(__file__).resolve().parents[3] / "proto" / "i2v_proto" / "v1"
    text = " ".join((protos / f"{name}.proto").read_text() for name in ("coordinator", "node"))
    documented = set(re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", " ".join(re.findall(r"//.*", text))))
    assert {r.value for r in Reason} <= documented
