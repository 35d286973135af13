"""Who may dispatch to this node when callers present certificates (mTLS): a pure decision on the
names in the caller's certificate, with the reason in words."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from i2v_contract.wire import node_pb2


def is_dispatch(request: node_pb2.NodeGenerateRequest) -> bool:
    """A coordinator's call: it carries a job id, attempt, epoch or claim revision."""
    return bool(request.job_id or request.attempt or request.epoch or request.assign_revision)


def dispatcher_refusal(peer: Sequence[str], allowed: Collection[str], what: str) -> str | None:
    """Why a caller whose certificate names `peer` may not do `what` (a dispatch, a cancel of a
    dispatched job); None when it may."""
    if any(name in allowed for name in peer):
        return None
    names = ", ".join(repr(n) for n in peer) if peer else "no name"
    expected = ", ".join(sorted(allowed))
    return (
        f"{what} refused: the caller's certificate names {names}; this node takes dispatches and "
        f"their cancels only from {expected} (its --coordinator-identity): give the coordinator a "
        "certificate with one of those names, or add its name to the node's --coordinator-identity"
    )
