"""Election decisions, table-driven: fencing at the validity edge, refusals vs timeouts."""

from __future__ import annotations

from typing import Any

import pytest

from i2v_coordinator.election import (
    DEFAULT_TIMINGS,
    DecisionKind,
    ElectionTimings,
    LeaderKey,
    LeaderView,
    ProbeOutcome,
    ProbeTally,
    decide,
)

ME = "coord-a"
MY_LEASE = 0xA
OTHER = LeaderKey("coord-b", "127.0.0.1:7001", create_revision=42, lease=0xB)
MINE = LeaderKey(ME, "127.0.0.1:7000", create_revision=17, lease=MY_LEASE)
T = DEFAULT_TIMINGS
NO_PROBES = ProbeTally()


def view(
    leader: LeaderKey | None, valid_until: float | None = 10.0, probes: ProbeTally = NO_PROBES
) -> LeaderView:
    return LeaderView(ME, MY_LEASE, valid_until, leader, probes)


def tally(leader: LeaderKey, outcomes: list[tuple[ProbeOutcome, float]]) -> ProbeTally:
    t = ProbeTally()
    for outcome, at in outcomes:
        t = t.record(leader, outcome, at)
    return t


R = ProbeOutcome.REFUSED
REFUSED_3_OVER_300MS = [(R, 1.0), (R, 1.15), (R, 1.3)]


@pytest.mark.parametrize(
    ("name", "v", "now", "kind", "epoch"),
    [
        ("absent key, valid lease", view(None), 5.0, DecisionKind.CAMPAIGN, 0),
        ("my key, lease valid", view(MINE), 5.0, DecisionKind.LEAD, 17),
        ("my key, just before the edge", view(MINE, valid_until=8.5), 8.499, DecisionKind.LEAD, 17),
        ("my key, exactly at ttl - margin", view(MINE, valid_until=8.5), 8.5, DecisionKind.STEP_DOWN, 17),
        ("my key, past the edge", view(MINE, valid_until=8.5), 9.0, DecisionKind.STEP_DOWN, 17),
        ("my key, never renewed", view(MINE, valid_until=None), 0.0, DecisionKind.STEP_DOWN, 17),
        ("other leads, no probes", view(OTHER), 5.0, DecisionKind.FOLLOW, 0),
        ("other leads, I have no valid lease", view(OTHER, valid_until=None), 5.0, DecisionKind.FOLLOW, 0),
    ],
)
def test_decide_basic(name: str, v: LeaderView, now: float, kind: DecisionKind, epoch: int) -> None:
    d = decide(v, now)
    assert d.kind is kind, name
    assert d.epoch == epoch
    assert d.reason


def test_lease_deadline_is_counted_from_the_keepalive_send_time() -> None:
    sent_at = 100.0
    valid_until = T.lease_valid_until(sent_at)
    assert valid_until == pytest.approx(sent_at + T.ttl_s - T.margin_s) == pytest.approx(103.5)
    assert decide(view(MINE, valid_until), 103.49).kind is DecisionKind.LEAD
    assert decide(view(MINE, valid_until), 103.5).kind is DecisionKind.STEP_DOWN


def test_campaign_without_valid_lease_asks_for_a_fresh_one() -> None:
    assert decide(view(None, valid_until=None), 1.0).needs_fresh_lease
    assert decide(view(None, valid_until=0.5), 1.0).needs_fresh_lease
    assert not decide(view(None, valid_until=2.0), 1.0).needs_fresh_lease


def test_follow_names_the_leader_for_clients() -> None:
    d = decide(view(OTHER), 1.0)
    assert (d.leader_id, d.leader_addr) == ("coord-b", "127.0.0.1:7001")


@pytest.mark.parametrize(
    ("name", "outcomes", "now", "kind"),
    [
        ("3 refusals over 300 ms", REFUSED_3_OVER_300MS, 1.3, DecisionKind.REVOKE_DEAD_LEADER),
        ("3 refusals, evidence 1 s old", REFUSED_3_OVER_300MS, 2.3, DecisionKind.REVOKE_DEAD_LEADER),
        ("3 refusals, evidence stale", REFUSED_3_OVER_300MS, 2.31, DecisionKind.FOLLOW),
        ("2 refusals only", [(R, 1.0), (R, 1.3)], 1.3, DecisionKind.FOLLOW),
        ("3 refusals within 200 ms", [(R, 1.0), (R, 1.1), (R, 1.2)], 1.2, DecisionKind.FOLLOW),
        (
            "timeouts never count",
            [(ProbeOutcome.TIMEOUT, 1.0 + i / 10) for i in range(10)],
            2.0,
            DecisionKind.FOLLOW,
        ),
        (
            "errors never count",
            [(ProbeOutcome.ERROR, 1.0 + i / 10) for i in range(10)],
            2.0,
            DecisionKind.FOLLOW,
        ),
        (
            "a timeout breaks the run",
            [(R, 1.0), (R, 1.1), (ProbeOutcome.TIMEOUT, 1.2), (R, 1.3), (R, 1.4)],
            1.4,
            DecisionKind.FOLLOW,
        ),
        (
            "an answer breaks the run",
            [(R, 1.0), (R, 1.2), (ProbeOutcome.OK, 1.3), (R, 1.4)],
            1.4,
            DecisionKind.FOLLOW,
        ),
        (
            "run restarts and completes",
            [(R, 0.5), (ProbeOutcome.OK, 0.6), *REFUSED_3_OVER_300MS],
            1.3,
            DecisionKind.REVOKE_DEAD_LEADER,
        ),
    ],
)
def test_fast_failover_only_on_refused_connections(
    name: str, outcomes: list[tuple[ProbeOutcome, float]], now: float, kind: DecisionKind
) -> None:
    d = decide(view(OTHER, probes=tally(OTHER, outcomes)), now)
    assert d.kind is kind, name
    if kind is DecisionKind.REVOKE_DEAD_LEADER:
        assert d.revoke_lease == OTHER.lease
        assert "refused 3 consecutive" in d.reason


def test_refusals_against_a_previous_leader_do_not_count_against_the_new_one() -> None:
    old_probes = tally(OTHER, REFUSED_3_OVER_300MS)
    successor = LeaderKey("coord-c", OTHER.addr, create_revision=50, lease=0xC)
    assert decide(view(successor, probes=old_probes), 1.3).kind is DecisionKind.FOLLOW
    # Probing the successor starts a fresh run.
    assert old_probes.record(successor, R, 1.4).refused == 1


def test_refusals_never_make_me_revoke_myself() -> None:
    probes = tally(MINE, REFUSED_3_OVER_300MS)
    assert decide(view(MINE, probes=probes), 1.3).kind is DecisionKind.LEAD


def test_key_of_my_previous_incarnation_is_revoked() -> None:
    stale = LeaderKey(ME, "127.0.0.1:7000", create_revision=9, lease=0x99)
    d = decide(view(stale), 1.0)
    assert d.kind is DecisionKind.REVOKE_DEAD_LEADER
    assert d.revoke_lease == 0x99


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"margin_s": 5.0}, "margin_s"),
        ({"margin_s": 0.0}, "margin_s"),
        ({"keepalive_s": 3.5}, "keepalive_s"),
        ({"refused_probes": 0}, "refused_probes"),
    ],
)
def test_timings_reject_unsafe_settings(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ElectionTimings(**kwargs)


def test_default_timings_match_design() -> None:
    assert (T.ttl_s, T.keepalive_s, T.call_timeout_s, T.margin_s) == (5.0, 1.0, 1.5, 1.5)
    assert T.validity_s == pytest.approx(3.5)
