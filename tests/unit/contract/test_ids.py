"""Caller-supplied ids and names: one rule each, and messages that quote input only up to a bound."""

from __future__ import annotations

import pytest

from i2v_contract.ids import (
    JOB_ID_MAX_CHARS,
    QUOTE_MAX_CHARS,
    check_job_id,
    check_model_name,
    check_request_id,
    clip,
    job_id_problem,
    quote,
)
from i2v_contract.keys import Keys
from i2v_contract.limits import FieldError


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param("job-1", "", id="plain"),
        pytest.param("0f" * 16, "", id="uuid4-hex"),
        pytest.param("a.b_c-d", "", id="dots-underscores-dashes"),
        pytest.param("x" * JOB_ID_MAX_CHARS, "", id="at-the-length-limit"),
        pytest.param("", "is empty", id="empty"),
        pytest.param("bad/id", "'bad/id' is not allowed", id="slash"),
        pytest.param("-lead", "'-lead' is not allowed", id="leading-dash"),
        pytest.param("a b", "'a b' is not allowed", id="space"),
        pytest.param("é", "'é' is not allowed", id="non-ascii"),
        pytest.param("a\n", "'a\\n' is not allowed", id="trailing-newline"),
        pytest.param("x" * (JOB_ID_MAX_CHARS + 1), "is longer than 128 characters", id="one-too-long"),
    ],
)
def test_job_id_rule(value: str, problem: str) -> None:
    found = job_id_problem(value)
    assert (found == "") == (problem == "") and problem in found


def test_a_bad_job_id_names_the_field_and_the_rule() -> None:
    with pytest.raises(FieldError) as err:
        check_job_id("job_id", "bad/id")
    assert err.value.field == "job_id"
    assert err.value.message.startswith("job_id: 'bad/id' is not allowed; job ids are 1-128 letters")


def test_a_request_id_may_be_empty_but_not_malformed() -> None:
    check_request_id("")
    check_request_id("mine-1")
    with pytest.raises(FieldError, match=r"^request_id: 'a/b' is not allowed; use 1-128 .* leave it empty"):
        check_request_id("a/b")


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("", id="empty"),
        pytest.param("tiny", id="short-name"),
        pytest.param("ali-vilab/i2vgen-xl", id="hub-id"),
        pytest.param("/models/i2vgen-xl", id="path"),
    ],
)
def test_model_names_that_pass(model: str) -> None:
    check_model_name(model)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        pytest.param("m" * 300, "longer than 256", id="too-long"),
        pytest.param("a b", "space or control", id="space"),
        pytest.param("a\x00", "space or control", id="nul"),
    ],
)
def test_model_names_that_fail(model: str, match: str) -> None:
    with pytest.raises(FieldError, match=match):
        check_model_name(model)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("short", "'short'", id="short-kept"),
        pytest.param("x" * QUOTE_MAX_CHARS, repr("x" * QUOTE_MAX_CHARS), id="at-the-limit-kept"),
        pytest.param("y" * 100, f"{'y' * QUOTE_MAX_CHARS!r}… (100 characters)", id="cut-with-length"),
    ],
)
def test_quote_is_bounded(value: str, expected: str) -> None:
    assert quote(value) == expected


def test_clip_cuts_without_quoting() -> None:
    assert clip("[1, 2]") == "[1, 2]"
    assert clip("9" * 100) == "9" * QUOTE_MAX_CHARS + "… (100 characters)"


def test_huge_input_never_makes_a_huge_message() -> None:
    huge = "z" * 2_000_000
    for check in (lambda: check_job_id("job_id", huge), lambda: check_model_name(huge)):
        with pytest.raises(FieldError) as err:
            check()
        assert len(err.value.message) < 400
    with pytest.raises(ValueError) as key_err:
        Keys().job(huge + "/")
    assert len(str(key_err.value)) < 200
