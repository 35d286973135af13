"""Node dispatch health (cooldown, set-aside, trial, re-registration), table-driven with a fake clock."""

from __future__ import annotations

import pytest

from i2v_coordinator.health import (
    HEALTHY,
    HealthPolicy,
    NodeHealth,
    Standing,
    cooldown_for,
    on_busy,
    on_failure,
    on_registration,
    on_report,
    on_success,
    standing,
)
from i2v_coordinator.jobs import FailureKind, NodeReport

POLICY = HealthPolicy(first_cooldown_s=2.0, max_cooldown_s=60.0, set_aside_after=3, trial_after_s=300.0)


@pytest.mark.parametrize(
    ("failures", "cooldown"), [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (40, 60.0)]
)
def test_cooldown_doubles_up_to_the_cap(failures: int, cooldown: float) -> None:
    assert cooldown_for(failures, POLICY) == cooldown


def test_failures_cool_down_then_set_aside_with_one_log_line_each() -> None:
    h = HEALTHY
    steps = []
    for now in (100.0, 110.0, 120.0):
        step = on_failure(h, "n1", now, "not claimed within 10 s", POLICY)
        steps.append(step)
        h = step.health
    assert [s.reason for s in steps[:2]] == [
        "node n1 cooling down 2 s after 1st failure: not claimed within 10 s",
        "node n1 cooling down 4 s after 2nd failure: not claimed within 10 s",
    ]
    assert [s.set_aside for s in steps] == [False, False, True]
    assert steps[2].reason.startswith("node n1 set aside after 3 consecutive failures (last: not claimed")
    assert (h.failures, h.set_aside, h.set_aside_since, h.reason) == (
        3,
        True,
        120.0,
        "not claimed within 10 s",
    )


@pytest.mark.parametrize(
    ("name", "health", "now", "expected"),
    [
        ("healthy", HEALTHY, 100.0, Standing(0.0, False)),
        ("cooling", NodeHealth(1, cooldown_until=102.0), 100.5, Standing(1.5, False)),
        ("cooldown over", NodeHealth(1, cooldown_until=102.0), 102.0, Standing(0.0, False)),
        ("set aside", NodeHealth(3, 100.0, set_aside_since=100.0), 399.0, Standing(0.0, True)),
        ("set aside, trial due", NodeHealth(3, 100.0, set_aside_since=100.0), 400.0, Standing(0.0, False)),
    ],
)
def test_standing(name: str, health: NodeHealth, now: float, expected: Standing) -> None:
    assert standing(health, now, POLICY) == expected, name


def test_a_failed_trial_sets_the_node_aside_again_from_now() -> None:
    aside = NodeHealth(3, 100.0, set_aside_since=100.0, reason="x")
    again = on_failure(aside, "n1", 400.0, "INTERNAL: boom", POLICY)
    assert again.set_aside and again.health.set_aside_since == 400.0 and again.health.failures == 4
    assert standing(again.health, 401.0, POLICY).set_aside


@pytest.mark.parametrize(
    ("name", "health", "changed"),
    [
        ("healthy stays as is", NodeHealth(registration=5), False),
        ("failures cleared", NodeHealth(2, 200.0, reason="x", registration=5), True),
        ("set aside cleared", NodeHealth(3, 100.0, 100.0, "x", registration=5), True),
    ],
)
def test_a_success_clears_everything_but_the_registration(
    name: str, health: NodeHealth, changed: bool
) -> None:
    step = on_success(health, "n1")
    assert step.changed == changed, name
    assert step.health == NodeHealth(registration=5), name
    assert ("back in full service" in step.reason) == changed


@pytest.mark.parametrize(
    ("name", "health", "registration", "changed", "after"),
    [
        ("first sight: adopt the key", HEALTHY, 7, False, NodeHealth(registration=7)),
        (
            "same key: nothing",
            NodeHealth(2, 50.0, registration=7),
            7,
            False,
            NodeHealth(2, 50.0, registration=7),
        ),
        (
            "re-registered while set aside: cleared",
            NodeHealth(3, 10.0, 10.0, "x", registration=7),
            9,
            True,
            NodeHealth(registration=9),
        ),
        ("healthy node re-registered", NodeHealth(registration=7), 9, False, NodeHealth(registration=9)),
    ],
)
def test_re_registration(
    name: str, health: NodeHealth, registration: int, changed: bool, after: NodeHealth
) -> None:
    step = on_registration(health, "n1", registration)
    assert (step.changed, step.health) == (changed, after), name
    if changed:
        assert step.reason == "node n1 re-registered: its 3 consecutive failures are cleared"


def test_busy_answers_cool_down_but_never_set_a_node_aside() -> None:
    h = on_failure(HEALTHY, "n1", 100.0, "not claimed within 10 s", POLICY).health
    for now in (110.0, 120.0, 130.0, 140.0):
        step = on_busy(h, "n1", now, "RESOURCE_EXHAUSTED: node busy", POLICY)
        h = step.health
        assert step.changed and "answered busy" in step.reason
        assert standing(h, now, POLICY) == Standing(2.0, False)
    assert h.failures == 1 and not h.set_aside  # the earlier real failure still counts, busy ones never


def test_busy_never_shortens_a_longer_cooldown() -> None:
    h = NodeHealth(failures=2, cooldown_until=200.0, reason="x")
    assert on_busy(h, "n1", 100.0, "busy", POLICY).health.cooldown_until == 200.0


COOLING = NodeHealth(failures=1, cooldown_until=102.0, reason="x", registration=4)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        pytest.param(NodeReport("n1", None), on_success(COOLING, "n1"), id="success clears"),
        pytest.param(
            NodeReport("n1", FailureKind.BUSY, "busy"),
            on_busy(COOLING, "n1", 100.0, "busy", POLICY),
            id="busy pauses, not counted",
        ),
        pytest.param(
            NodeReport("n1", FailureKind.DISPATCH, "UNAVAILABLE: x"),
            on_failure(COOLING, "n1", 100.0, "UNAVAILABLE: x", POLICY),
            id="dispatch failure counts",
        ),
        pytest.param(
            NodeReport("n1", FailureKind.CLAIM_TIMEOUT, "late"),
            on_failure(COOLING, "n1", 100.0, "late", POLICY),
            id="claim timeout counts",
        ),
        pytest.param(
            NodeReport("n1", FailureKind.RESULT, "INTERNAL: y"),
            on_failure(COOLING, "n1", 100.0, "INTERNAL: y", POLICY),
            id="node-side result failure counts",
        ),
    ],
)
def test_on_report_maps_what_an_attempt_showed_to_its_step(report: NodeReport, expected: object) -> None:
    assert on_report(COOLING, report, 100.0, POLICY) == expected


def test_on_report_sets_a_node_aside_on_the_last_allowed_failure() -> None:
    twice = NodeHealth(failures=2, cooldown_until=104.0, reason="x")
    step = on_report(twice, NodeReport("n1", FailureKind.DISPATCH, "z"), 100.0, POLICY)
    assert step.set_aside and step.health.set_aside and step.health.failures == 3
