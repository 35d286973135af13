"""Whether the gateway is ready, from what the coordinators' health services say: which addresses
to ask, and the verdict. Pure: the asking is leaders.py's.

Readiness asks grpc.health.v1, which needs no token, for `i2v.v1.Coordinator.Leader` (SERVING only
on the coordinator that leads): with --tokens-file on the coordinators the fleet view is an
admin's, and this gateway holds no token, so a ClusterStatus could not say whether one leads. A
Service address reaches one coordinator per connection, which is why every address a target's
name resolves to is asked too (a headless Service, or one DNS name for all coordinators)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


class Answer(enum.Enum):
    LEADS = "leads"  # the leader health name is SERVING
    FOLLOWS = "follows"  # a coordinator answered: NOT_SERVING, or a name it does not know
    SILENT = "silent"  # no answer in time: refused, unreachable, a failed handshake


@dataclass(frozen=True)
class Verdict:
    ready: bool
    status: str  # "ready", "draining", "no leader", "no coordinator answers"
    leader: str = ""  # the address that answered LEADS
    reason: str = ""  # for the log line when not ready


def candidates(
    targets: Sequence[str], resolved: Mapping[str, Sequence[str]], hinted: Iterable[str]
) -> list[str]:
    """Each configured target, then the addresses its name resolves to (only where there are
    several: one is the target itself), then leaders the SDK was told of; each once, in order."""
    out: list[str] = []
    for address in [
        *targets,
        *(a for t in targets if len(resolved.get(t, ())) > 1 for a in resolved[t]),
        *hinted,
    ]:
        if address not in out:
            out.append(address)
    return out


def decide(draining: bool, answers: Mapping[str, Answer]) -> Verdict:
    """Ready when not draining and some coordinator says it leads; else 503 with the reason."""
    if draining:
        return Verdict(False, "draining", reason="draining")
    leaders = [a for a, answer in answers.items() if answer is Answer.LEADS]
    if leaders:
        return Verdict(True, "ready", leader=leaders[0])
    asked = ", ".join(answers) or "none"
    if any(answer is Answer.FOLLOWS for answer in answers.values()):
        return Verdict(False, "no leader", reason=f"coordinators answer but none leads (asked {asked})")
    return Verdict(False, "no coordinator answers", reason=f"no coordinator answered health (asked {asked})")
