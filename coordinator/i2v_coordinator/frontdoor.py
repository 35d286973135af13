"""The front door's decisions: whether a coordinator serves a call itself, forwards it to the leader
or refuses it, and which metadata crosses the hop; pure (entry.py and forwarder.py act on them).

Any coordinator is a front door. Job calls (Submit, Watch, Generate, Get, Cancel) need the leader:
a standby forwards them to the leader it sees in `coord/leader`, so a load balancer or a plain
client given one address (a Service spanning all coordinators) always succeeds. The cluster views
(ListJobs, ListNodes, ClusterStatus) and Download are answered wherever they arrive: Download reads
only etcd and the shared artifact store, so a standby streams the bytes itself instead of relaying
them through the leader (it checks its own request, transfer.py).

- Requests are checked before anything else: a malformed id is INVALID_ARGUMENT on the first
  coordinator, whichever it is, never a hop or an etcd read.
- One hop at most: a forwarded call carries `i2v-forwarded-by`, and a coordinator that gets one but
  does not lead refuses it (UNAVAILABLE naming the leader it sees) instead of forwarding again.
- A coordinator never forwards to itself: when the leader key names it but it does not lead (the
  term is starting, or its lease lapsed) it answers as before (UNAVAILABLE, retry).
- No leader known: UNAVAILABLE "no leader elected yet; retry", with a retry hint.
- etcd out of reach: a call this coordinator would serve itself, or one with no leader to forward
  to, is UNAVAILABLE naming etcd (etcdhealth.py); a known leader still gets the call, since the
  outage may be this coordinator's alone.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from i2v_contract.ids import check_job_id, check_model_name, check_request_id
from i2v_contract.limits import FieldError
from i2v_contract.wire import LEADER_ADDR_METADATA

JOB_METHODS = frozenset({"Submit", "Watch", "Generate", "Get", "Cancel"})
FORWARDED_BY_METADATA = "i2v-forwarded-by"  # set on a forwarded call: the forwarding coordinator's id
RETRY_AFTER_METADATA = "i2v-retry-after-ms"  # on a refusal: when a retry may find things changed
RETRY_AFTER_MS = 1000

# Transport headers that belong to one hop; grpc sets its own on the next (the deadline travels as
# the call's timeout). grpc-status-details-bin (structured error details) is the one grpc- trailer
# passed on.
_HOP_HEADERS = frozenset({"user-agent", "content-type", "te", "host", "accept-encoding"})
_DETAILS_TRAILER = "grpc-status-details-bin"

Metadata = tuple[tuple[str, str | bytes], ...]


class Route(enum.Enum):
    LOCAL = "local"  # this coordinator's servicer answers
    FORWARD = "forward"  # relay to leader_addr
    REFUSE = "refuse"  # UNAVAILABLE with `message`, hint `leader_addr` when known


@dataclass(frozen=True)
class Routing:
    route: Route
    leader_id: str = ""
    leader_addr: str = ""
    message: str = ""


LOCAL = Routing(Route.LOCAL)


def route(
    method: str,
    *,
    me: str,
    my_addr: str,
    leading: bool,
    leader: tuple[str, str] | None,
    forwarded_by: str,
    etcd_error: str,
) -> Routing:
    """Where a call of `method` goes, from what this coordinator knows now."""
    if method not in JOB_METHODS:
        return LOCAL
    leader_id, leader_addr = leader or ("", "")
    if leading or leader_id == me or (leader_addr and leader_addr == my_addr):
        # Served here (or refused here by the servicer: the key names me but I do not lead yet).
        return Routing(Route.REFUSE, message=etcd_error) if etcd_error else LOCAL
    if forwarded_by:
        seen = f"the leader is {leader_id} at {leader_addr}" if leader_addr else "no leader is known"
        return Routing(
            Route.REFUSE,
            leader_id,
            leader_addr,
            f"coordinator {me} got {method} forwarded by {forwarded_by} but does not lead ({seen}); "
            "a forwarded call is never forwarded again: retry",
        )
    if leader_id and leader_addr:
        return Routing(Route.FORWARD, leader_id, leader_addr)
    if etcd_error:
        return Routing(Route.REFUSE, message=etcd_error)
    return Routing(Route.REFUSE, message=f"no leader elected yet; retry (coordinator {me} is a standby)")


def field_problem(method: str, request: Any) -> FieldError | None:
    """Why `request` cannot be served, naming the field (None when it can); before any work."""
    try:
        if method in ("Watch", "Get", "Cancel"):
            check_job_id("job_id", request.job_id)
        elif method in ("Submit", "Generate"):
            check_request_id(request.request_id)
            check_model_name(request.request.model)
    except FieldError as err:
        return err
    return None


def forwarded_by(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    return next((str(v) for k, v in metadata if k == FORWARDED_BY_METADATA), "")


def _end_to_end(key: str) -> bool:
    return not key.startswith((":", "grpc-")) and key not in _HOP_HEADERS


def outgoing(invocation: Iterable[tuple[str, str | bytes]], me: str) -> Metadata:
    """The caller's metadata for the hop to the leader, marked as forwarded by `me`."""
    kept = tuple((k, v) for k, v in invocation if _end_to_end(k) and k != FORWARDED_BY_METADATA)
    return (*kept, (FORWARDED_BY_METADATA, me))


def relayed_initial(metadata: Iterable[tuple[str, str | bytes]] | None) -> Metadata:
    return tuple((k, v) for k, v in metadata or () if _end_to_end(k))


def relayed_trailers(trailers: Iterable[tuple[str, str | bytes]] | None, leader_addr: str) -> Metadata:
    """The leader's trailers for the caller, with the leader's address added (so a client that can
    reach the leader learns where it is) unless the leader named one itself."""
    kept = tuple((k, v) for k, v in trailers or () if _end_to_end(k) or k == _DETAILS_TRAILER)
    if leader_addr and all(k != LEADER_ADDR_METADATA for k, _ in kept):
        kept = (*kept, (LEADER_ADDR_METADATA, leader_addr))
    return kept


def refusal_trailers(leader_addr: str) -> Metadata:
    hint: Metadata = ((LEADER_ADDR_METADATA, leader_addr),) if leader_addr else ()
    return (*hint, (RETRY_AFTER_METADATA, str(RETRY_AFTER_MS)))


def moved(method: str, me: str, routing: Routing, now: tuple[str, str] | None) -> Routing:
    """The refusal that ends a forwarded call whose leader is no longer the one seen now."""
    was = f"{routing.leader_id} at {routing.leader_addr}"
    new_id, new_addr = now or ("", "")
    to = f"{new_id} at {new_addr}" if new_addr else "no leader known yet"
    return Routing(
        Route.REFUSE,
        new_id,
        new_addr,
        f"the leader changed from {was} to {to} while coordinator {me} forwarded {method}; retry "
        "(job calls are idempotent by request id, and a watch re-attaches by job id)",
    )


def same_leader(routing: Routing, now: tuple[str, str] | None) -> bool:
    return now == (routing.leader_id, routing.leader_addr)
