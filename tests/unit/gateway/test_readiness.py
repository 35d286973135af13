"""Readiness from the coordinators' health answers: which addresses are asked, and the verdict."""

from __future__ import annotations

import pytest

from i2v_gateway.readiness import Answer, Verdict, candidates, decide

LEADS, FOLLOWS, SILENT = Answer.LEADS, Answer.FOLLOWS, Answer.SILENT


@pytest.mark.parametrize(
    ("targets", "resolved", "hinted", "expected"),
    [
        pytest.param(["a:1"], {}, [], ["a:1"], id="one-target"),
        pytest.param(["svc:1"], {"svc:1": ["10.0.0.1:1"]}, [], ["svc:1"], id="one-address-is-the-target"),
        pytest.param(
            ["svc:1"], {"svc:1": ["10.0.0.1:1", "10.0.0.2:1"]}, [], ["svc:1", "10.0.0.1:1", "10.0.0.2:1"],
            id="headless-service-every-pod",
        ),
        pytest.param(
            ["a:1", "b:1"], {}, ["a:1", "b:1", "10.0.0.9:1"], ["a:1", "b:1", "10.0.0.9:1"],
            id="sdk-targets-add-the-hinted-leader-once",
        ),
        pytest.param(["a:1"], {"a:1": []}, [], ["a:1"], id="unresolvable"),
    ],
)  # fmt: skip
def test_candidates(
    targets: list[str], resolved: dict[str, list[str]], hinted: list[str], expected: list[str]
) -> None:
    assert candidates(targets, resolved, hinted) == expected


@pytest.mark.parametrize(
    ("draining", "answers", "ready", "status", "leader"),
    [
        pytest.param(False, {"a:1": FOLLOWS, "b:1": LEADS}, True, "ready", "b:1", id="a-leader"),
        pytest.param(False, {"a:1": SILENT, "b:1": LEADS}, True, "ready", "b:1", id="leader-despite-silence"),
        pytest.param(False, {"a:1": FOLLOWS, "b:1": SILENT}, False, "no leader", "", id="standbys-only"),
        pytest.param(False, {"a:1": SILENT}, False, "no coordinator answers", "", id="silence"),
        pytest.param(False, {}, False, "no coordinator answers", "", id="nothing-asked"),
        pytest.param(True, {"a:1": LEADS}, False, "draining", "", id="draining-wins"),
    ],
)
def test_decide(draining: bool, answers: dict[str, Answer], ready: bool, status: str, leader: str) -> None:
    verdict = decide(draining, answers)
    assert (verdict.ready, verdict.status, verdict.leader) == (ready, status, leader)
    assert verdict.ready or verdict.reason, "a refusal says why"


def test_the_reason_names_what_was_asked() -> None:
    verdict = decide(False, {"a:1": FOLLOWS, "b:1": SILENT})
    assert verdict == Verdict(
        False, "no leader", reason="coordinators answer but none leads (asked a:1, b:1)"
    )
