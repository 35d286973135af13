"""Node dispatch health: cooldown after failures that are not the request's fault, set-aside after many.

A node that fails a dispatch (stream broke or went silent before its claim, claim never made, result
INTERNAL, UNAVAILABLE, FAILED_PRECONDITION ...) gets no new job for a cooldown that doubles with each
consecutive failure (2 s, 4 s, ... up to 60 s by default). After `set_aside_after` consecutive failures
it is set aside: it gets no work until it re-registers (its node key is created anew, i.e. the node
restarted or rejoined) or, after `trial_after_s`, for one trial job. A success clears it all. A node
that answers busy only pauses for the first cooldown and is not counted (`on_busy`).

Pure: every function maps a `NodeHealth` snapshot and the time to a `Step` (the new health and the
log line saying why); `on_report` takes what jobs.py says an attempt showed about its node. The
leader keeps one `NodeHealth` per node (fleet.py) and feeds `standing` into routing as an input
(NodeView.cooldown_s, NodeView.set_aside); routing never reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from i2v_coordinator.jobs import FailureKind, NodeReport


@dataclass(frozen=True)
class HealthPolicy:
    first_cooldown_s: float = 2.0
    max_cooldown_s: float = 60.0
    set_aside_after: int = 3  # consecutive failures
    trial_after_s: float = 300.0  # a set-aside node gets one trial job after this long


DEFAULT_HEALTH = HealthPolicy()


@dataclass(frozen=True)
class NodeHealth:
    failures: int = 0  # consecutive failures that were not the request's fault
    cooldown_until: float = 0.0  # no new job before this time
    set_aside_since: float = 0.0  # 0 = in service
    reason: str = ""  # the last failure
    registration: int = 0  # the node key's create revision the failures were counted against

    @property
    def set_aside(self) -> bool:
        return self.set_aside_since > 0


HEALTHY = NodeHealth()


@dataclass(frozen=True)
class Standing:
    """What routing needs to know about a node's health now."""

    cooldown_s: float  # seconds of cooldown left (0 = none)
    set_aside: bool  # set aside and its trial is not due yet


@dataclass(frozen=True)
class Step:
    health: NodeHealth
    changed: bool
    reason: str  # the decision for the log ("" when nothing changed)
    set_aside: bool = False  # this step set the node aside


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def cooldown_for(failures: int, policy: HealthPolicy) -> float:
    """The cooldown after the `failures`-th consecutive failure: doubling, capped."""
    return min(policy.max_cooldown_s, policy.first_cooldown_s * 2.0 ** max(0, failures - 1))


def on_failure(
    health: NodeHealth, node_id: str, now: float, reason: str, policy: HealthPolicy = DEFAULT_HEALTH
) -> Step:
    failures = health.failures + 1
    if failures >= policy.set_aside_after:
        new = replace(health, failures=failures, cooldown_until=now, set_aside_since=now, reason=reason)
        return Step(
            new,
            True,
            f"node {node_id} set aside after {failures} consecutive failures (last: {reason}); it gets "
            f"work again when it re-registers, or one trial job in {policy.trial_after_s:g} s",
            set_aside=True,
        )
    cooldown = cooldown_for(failures, policy)
    new = replace(health, failures=failures, cooldown_until=now + cooldown, reason=reason)
    return Step(
        new, True, f"node {node_id} cooling down {cooldown:g} s after {_ordinal(failures)} failure: {reason}"
    )


def on_busy(
    health: NodeHealth, node_id: str, now: float, reason: str, policy: HealthPolicy = DEFAULT_HEALTH
) -> Step:
    """The node answered busy: no new job for the first cooldown, and no count toward set-aside (a
    working node whose busy flag had not reached routing yet)."""
    until = max(health.cooldown_until, now + policy.first_cooldown_s)
    return Step(
        replace(health, cooldown_until=until),
        True,
        f"node {node_id} cooling down {until - now:g} s: it answered busy ({reason})",
    )


def on_success(health: NodeHealth, node_id: str) -> Step:
    if health.failures == 0 and not health.set_aside:
        return Step(health, False, "")
    was = "set aside" if health.set_aside else f"{health.failures} consecutive failures"
    return Step(
        replace(HEALTHY, registration=health.registration),
        True,
        f"node {node_id} back in full service after a success (was {was})",
    )


def on_report(
    health: NodeHealth, report: NodeReport, now: float, policy: HealthPolicy = DEFAULT_HEALTH
) -> Step:
    """What the end of an attempt says about its node: a success clears, a busy answer pauses, any
    other failure counts toward the cooldown and set-aside."""
    if report.failure is None:
        return on_success(health, report.node_id)
    if report.failure is FailureKind.BUSY:
        return on_busy(health, report.node_id, now, report.reason, policy)
    return on_failure(health, report.node_id, now, report.reason, policy)


def on_registration(health: NodeHealth, node_id: str, registration: int) -> Step:
    """The node's key as the registry sees it now; a new key (the node re-registered) clears the count."""
    if registration == health.registration:
        return Step(health, False, "")
    if health.failures == 0 or not health.registration:
        return Step(replace(health, registration=registration), False, "")
    return Step(
        NodeHealth(registration=registration),
        True,
        f"node {node_id} re-registered: its {health.failures} consecutive failures are cleared",
    )


def standing(health: NodeHealth, now: float, policy: HealthPolicy = DEFAULT_HEALTH) -> Standing:
    if health.set_aside:
        return Standing(0.0, now < health.set_aside_since + policy.trial_after_s)
    return Standing(max(0.0, health.cooldown_until - now), False)
