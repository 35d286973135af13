"""The leader's node book: health steps kept per node, recent assignments counted over a window."""

from __future__ import annotations

import pytest

from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2
from i2v_coordinator.fleet import Fleet
from i2v_coordinator.health import HealthPolicy
from i2v_coordinator.jobs import FailureKind, NodeReport
from i2v_coordinator.routing import NodeView
from tests.fakes.clock import ManualClock

POLICY = HealthPolicy(first_cooldown_s=2.0, max_cooldown_s=60.0, set_aside_after=2, trial_after_s=300.0)


def node(node_id: str, registration: int = 1) -> NodeView:
    return NodeView(node_id, f"a-{node_id}", common_pb2.TIER_CPU, GIB, busy=False, registration=registration)


@pytest.fixture
def fleet() -> tuple[Fleet, ManualClock]:
    clock = ManualClock(1000.0)
    return Fleet(POLICY, 60.0, clock), clock


def test_untouched_nodes_pass_through_as_they_are(fleet: tuple[Fleet, ManualClock]) -> None:
    book, clock = fleet
    nodes = [node("n1"), node("n2")]
    routable = book.routable(nodes, clock())
    assert routable == nodes and all(a is b for a, b in zip(routable, nodes, strict=True))


@pytest.mark.parametrize(
    ("ages", "count"),
    [
        pytest.param([], 0, id="none"),
        pytest.param([1.0, 30.0], 2, id="both inside the window"),
        pytest.param([61.0, 1.0], 1, id="one fell out of the window"),
    ],
)
def test_recent_assignments_count_within_the_window(
    fleet: tuple[Fleet, ManualClock], ages: list[float], count: int
) -> None:
    book, clock = fleet
    for age in sorted(ages, reverse=True):
        book.assigned("n1", clock() - age)
    (n1,) = book.routable([node("n1")], clock())
    assert n1.recent_assignments == count


def test_reports_cool_a_node_down_set_it_aside_and_a_re_registration_clears_it(
    fleet: tuple[Fleet, ManualClock],
) -> None:
    book, clock = fleet
    book.routable([node("n1")], clock())  # the registration the failures count against
    first = book.report(NodeReport("n1", FailureKind.DISPATCH, "UNAVAILABLE: x"))
    assert first.changed and not first.set_aside
    (n1,) = book.routable([node("n1")], clock())
    assert (n1.cooldown_s, n1.set_aside) == (2.0, False)
    assert book.report(NodeReport("n1", FailureKind.CLAIM_TIMEOUT, "late")).set_aside
    health, standing = book.health_of(node("n1"))
    assert health.failures == 2 and standing.set_aside
    assert book.health_of(node("n1", registration=2))[0].failures == 0  # shown healthy at once
    (again,) = book.routable([node("n1", registration=2)], clock())
    assert (again.cooldown_s, again.set_aside) == (0.0, False)
    assert book.health_of(node("n1", registration=2))[0].failures == 0


def test_a_success_puts_the_node_back_in_full_service(fleet: tuple[Fleet, ManualClock]) -> None:
    book, _ = fleet
    book.report(NodeReport("n1", FailureKind.RESULT, "INTERNAL: y"))
    assert book.health_of(node("n1"))[1].cooldown_s == 2.0
    assert book.report(NodeReport("n1", None)).changed
    assert book.health_of(node("n1"))[0].failures == 0
