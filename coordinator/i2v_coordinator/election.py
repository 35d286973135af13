"""Leader election decisions: what a coordinator should do given what etcd and its probes show.

Leadership is the `coord/leader` key created-if-absent on the coordinator's lease; the epoch is that
key's create revision (docs/architecture.md, fencing). This module only decides; the election shell
reads etcd, runs the txn, keeps the lease alive and probes the leader, then calls `decide` once per
tick and logs the decision's reason.

Times here are monotonic seconds from the calling process: they never leave the process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class ElectionTimings:
    ttl_s: float = 5.0  # coordinator lease TTL
    keepalive_s: float = 1.0  # one keepalive per interval
    call_timeout_s: float = 1.5  # every etcd call
    # A leader stops dispatching when its last successful keepalive is older than ttl - margin: the
    # margin covers one call timeout in flight, so etcd cannot expire the lease while we still act.
    margin_s: float = 1.5
    # Fast failover: this many consecutive refused connections to the leader's address, spread over
    # at least `refused_window_s`, the latest no older than `refused_max_age_s`, prove a crashed process.
    refused_probes: int = 3
    refused_window_s: float = 0.3
    refused_max_age_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.margin_s < self.ttl_s:
            raise ValueError(f"margin_s must be in (0, ttl_s={self.ttl_s}); got {self.margin_s}")
        if not 0 < self.keepalive_s < self.validity_s:
            raise ValueError(
                f"keepalive_s must be in (0, ttl_s - margin_s = {self.validity_s}) so at least one "
                f"renewal fits in the validity window; got {self.keepalive_s}"
            )
        if self.refused_probes < 1:
            raise ValueError(f"refused_probes must be >= 1; got {self.refused_probes}")

    @property
    def validity_s(self) -> float:
        """How long one successful keepalive lets a leader act."""
        return self.ttl_s - self.margin_s

    def lease_valid_until(self, keepalive_sent_at: float) -> float:
        """Validity deadline after a successful keepalive that was SENT at `keepalive_sent_at`.

        The send time, not the reply time: etcd may have renewed the lease as soon as the request
        arrived, so counting from the reply would overstate how long the lease lives.
        """
        return keepalive_sent_at + self.validity_s


DEFAULT_TIMINGS = ElectionTimings()


@dataclass(frozen=True)
class LeaderKey:
    """The `coord/leader` key as etcd showed it."""

    holder_id: str
    addr: str
    create_revision: int  # the holder's epoch
    lease: int


class ProbeOutcome(enum.Enum):
    OK = "ok"  # TCP connect (or health call) succeeded: the process is alive
    REFUSED = "refused"  # connection refused: nothing listens, the process is gone
    TIMEOUT = "timeout"  # no answer: host or network trouble, or a paused process; proves nothing
    ERROR = "error"  # anything else (unreachable host, reset, TLS): proves nothing


@dataclass(frozen=True)
class ProbeTally:
    """Consecutive refused connections to one leader incarnation (addr + epoch)."""

    addr: str = ""
    epoch: int = 0
    refused: int = 0
    first_refused_at: float = 0.0
    last_refused_at: float = 0.0

    def record(self, leader: LeaderKey, outcome: ProbeOutcome, at: float) -> ProbeTally:
        """The tally after probing `leader` at time `at` with `outcome`.

        Only an unbroken run of refusals counts: any other outcome, or a different leader
        incarnation, starts over.
        """
        same = self.addr == leader.addr and self.epoch == leader.create_revision
        if outcome is not ProbeOutcome.REFUSED:
            return ProbeTally(leader.addr, leader.create_revision)
        if same and self.refused > 0:
            return ProbeTally(
                leader.addr, leader.create_revision, self.refused + 1, self.first_refused_at, at
            )
        return ProbeTally(leader.addr, leader.create_revision, 1, at, at)


@dataclass(frozen=True)
class LeaderView:
    """What this coordinator knows at one tick."""

    my_id: str
    my_lease: int  # 0 = no lease granted yet
    # Validity deadline from ElectionTimings.lease_valid_until; None = no successful keepalive yet.
    my_lease_valid_until: float | None
    leader: LeaderKey | None  # None = the key is absent
    probes: ProbeTally = ProbeTally()


class DecisionKind(enum.Enum):
    CAMPAIGN = "campaign"  # key absent: run the create-if-absent txn
    LEAD = "lead"  # I hold the key with a valid lease: dispatch under `epoch`
    STEP_DOWN = "step_down"  # I hold the key but my lease validity lapsed: stop dispatching now
    FOLLOW = "follow"  # someone else leads: answer clients with `leader_addr`
    REVOKE_DEAD_LEADER = "revoke_dead_leader"  # revoke `revoke_lease`, then campaign


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    reason: str
    epoch: int = 0  # LEAD and STEP_DOWN: the epoch held
    leader_id: str = ""
    leader_addr: str = ""
    revoke_lease: int = 0  # REVOKE_DEAD_LEADER: the lease to revoke
    needs_fresh_lease: bool = False  # CAMPAIGN: my lease is not valid, grant a new one first


def lease_valid(view: LeaderView, now: float) -> bool:
    """True while this coordinator may act on its lease; exactly at the deadline it may not."""
    return view.my_lease != 0 and view.my_lease_valid_until is not None and now < view.my_lease_valid_until


def decide(view: LeaderView, now: float, timings: ElectionTimings = DEFAULT_TIMINGS) -> Decision:
    leader = view.leader
    valid = lease_valid(view, now)
    if leader is None:
        if valid:
            return Decision(DecisionKind.CAMPAIGN, "leader key absent: campaigning with my lease")
        return Decision(
            DecisionKind.CAMPAIGN,
            "leader key absent and my lease is not valid: campaigning with a fresh lease",
            needs_fresh_lease=True,
        )
    if leader.holder_id == view.my_id and leader.lease == view.my_lease:
        if valid:
            return _about(
                leader,
                DecisionKind.LEAD,
                f"I hold the leader key, epoch {leader.create_revision}, lease valid",
                epoch=leader.create_revision,
            )
        return _about(
            leader,
            DecisionKind.STEP_DOWN,
            f"I hold the leader key (epoch {leader.create_revision}) but had no successful keepalive "
            f"for {timings.validity_s:g} s (ttl {timings.ttl_s:g} s - margin {timings.margin_s:g} s): "
            "stopping dispatch",
            epoch=leader.create_revision,
        )
    if leader.holder_id == view.my_id:
        # My id on another lease: a previous incarnation of this process (ids are unique per member,
        # the member key enforces it), which cannot renew it any more.
        return _about(
            leader,
            DecisionKind.REVOKE_DEAD_LEADER,
            f"leader key held by a previous incarnation of me on lease {leader.lease:x} "
            f"(mine is {view.my_lease:x}): revoking it",
            revoke_lease=leader.lease,
        )
    evidence = _crash_evidence(view.probes, leader, now, timings)
    if evidence:
        return _about(
            leader,
            DecisionKind.REVOKE_DEAD_LEADER,
            f"leader {leader.holder_id} at {leader.addr} (epoch {leader.create_revision}) {evidence}: "
            f"revoking its lease {leader.lease:x}",
            revoke_lease=leader.lease,
        )
    return _about(
        leader,
        DecisionKind.FOLLOW,
        f"following leader {leader.holder_id} at {leader.addr} (epoch {leader.create_revision})",
    )


def _about(
    leader: LeaderKey, kind: DecisionKind, reason: str, *, epoch: int = 0, revoke_lease: int = 0
) -> Decision:
    return Decision(
        kind,
        reason,
        epoch=epoch,
        leader_id=leader.holder_id,
        leader_addr=leader.addr,
        revoke_lease=revoke_lease,
    )


def _crash_evidence(probes: ProbeTally, leader: LeaderKey, now: float, timings: ElectionTimings) -> str:
    """A description of the crash evidence against `leader`, or "" when there is not enough."""
    if probes.addr != leader.addr or probes.epoch != leader.create_revision:
        return ""
    span = probes.last_refused_at - probes.first_refused_at
    age = now - probes.last_refused_at
    if (
        probes.refused >= timings.refused_probes
        and span >= timings.refused_window_s
        and 0 <= age <= timings.refused_max_age_s
    ):
        return f"refused {probes.refused} consecutive connections over {span * 1000:.0f} ms"
    return ""
