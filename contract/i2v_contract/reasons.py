"""Why a call failed, in terms a program can match on: the details the servers attach beside a
failed call's status code and message (i2v_common.errors puts them on the wire as google.rpc
ErrorInfo, BadRequest and RetryInfo).

ErrorInfo.reason is one of `Reason` (UPPER_SNAKE, in domain "i2v.v1", which is the proto package);
its metadata names what the reason is about. INVALID_ARGUMENT from request validation also carries
a BadRequest naming the field. RetryInfo says how long to wait where waiting helps.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from i2v_contract.limits import FieldError

DOMAIN = "i2v.v1"


class Reason(enum.StrEnum):
    # Coordinator.
    NOT_LEADER = "NOT_LEADER"  # UNAVAILABLE: a standby; metadata leader_id, leader_addr: go there
    NO_LEADER = "NO_LEADER"  # UNAVAILABLE: no leader known yet (an election is under way)
    INVALID_FIELD = "INVALID_FIELD"  # INVALID_ARGUMENT: metadata field, and a BadRequest
    REQUEST_ID_CONFLICT = "REQUEST_ID_CONFLICT"  # ALREADY_EXISTS: request_id names another request
    QUEUE_FULL = "QUEUE_FULL"  # RESOURCE_EXHAUSTED: the queue is at --max-queue
    NO_NODE_FITS = "NO_NODE_FITS"  # RESOURCE_EXHAUSTED: no node in the cluster could ever run it
    JOB_NOT_FOUND = "JOB_NOT_FOUND"  # NOT_FOUND: never known
    JOB_EXPIRED = "JOB_EXPIRED"  # NOT_FOUND: removed by retention (its tombstone says when)
    JOB_FINISHED = "JOB_FINISHED"  # FAILED_PRECONDITION: a cancel of a job that already ended
    ETCD_UNAVAILABLE = "ETCD_UNAVAILABLE"  # UNAVAILABLE: etcd did not answer or confirm
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"  # UNAVAILABLE: the artifact store did not take or give bytes
    NO_ARTIFACT = "NO_ARTIFACT"  # FAILED_PRECONDITION: no such download (yet); metadata job_id, state
    ARTIFACT_MISSING = "ARTIFACT_MISSING"  # NOT_FOUND: the store lost an artifact (metadata uri)
    ARTIFACT_CHANGED = "ARTIFACT_CHANGED"  # DATA_LOSS: stored bytes other than those written (metadata uri)
    # Authentication and per-client limits (coordinator and node).
    UNAUTHENTICATED = "UNAUTHENTICATED"  # UNAUTHENTICATED: no token, or one the server does not know
    NOT_PERMITTED = "NOT_PERMITTED"  # PERMISSION_DENIED: not the caller's job (or none), or admins only
    CLIENT_QUOTA = "CLIENT_QUOTA"  # RESOURCE_EXHAUSTED: the client's queued jobs at --max-queued-per-client
    SUBMIT_RATE = "SUBMIT_RATE"  # RESOURCE_EXHAUSTED: over --submit-rate; RetryInfo says when
    STREAM_LIMIT = "STREAM_LIMIT"  # RESOURCE_EXHAUSTED: the client's streams at --max-streams-per-client
    # Node.
    NODE_LOADING = "NODE_LOADING"  # UNAVAILABLE: the model is still loading
    NODE_DRAINING = "NODE_DRAINING"  # UNAVAILABLE: shutting down; use another node
    NODE_BUSY = "NODE_BUSY"  # RESOURCE_EXHAUSTED: running another job (metadata job_id)
    INVALID_DISPATCH = "INVALID_DISPATCH"  # INVALID_ARGUMENT: job_id, attempt, epoch or revision
    NOT_A_DISPATCHER = "NOT_A_DISPATCHER"  # PERMISSION_DENIED: the caller's certificate may not dispatch
    STALE_DISPATCH = "STALE_DISPATCH"  # FAILED_PRECONDITION: the claim lost (leader or job moved on)
    CLAIM_GONE = "CLAIM_GONE"  # UNAVAILABLE: the claim went while the job ran; no result written
    OUT_OF_MEMORY = "OUT_OF_MEMORY"  # RESOURCE_EXHAUSTED: out of memory at every profile (metadata stage)
    RESULT_TOO_LARGE = "RESULT_TOO_LARGE"  # RESOURCE_EXHAUSTED: over the node's message limit


# Where waiting helps, how long: the same server will likely take the call by then.
RETRY_AFTER_S: Mapping[Reason, float] = {
    Reason.NO_LEADER: 1.0,  # as its message says: "retry in a second"
    Reason.QUEUE_FULL: 5.0,
    Reason.CLIENT_QUOTA: 5.0,
    Reason.STREAM_LIMIT: 1.0,
    Reason.ETCD_UNAVAILABLE: 1.0,
    Reason.STORE_UNAVAILABLE: 1.0,
    Reason.NODE_LOADING: 5.0,
    Reason.NODE_BUSY: 2.0,  # the coordinator's own pause before it dispatches to a busy node again
}


@dataclass(frozen=True)
class FieldViolation:
    field: str  # the request field, as named in the .proto
    description: str  # what is wrong and what to send instead


@dataclass(frozen=True)
class ErrorDetails:
    """What travels beside a failed call's code and message; empty parts are not sent."""

    reason: str = ""  # a Reason, or what a newer server sent
    metadata: Mapping[str, str] = field(default_factory=dict)
    field_violations: tuple[FieldViolation, ...] = ()
    retry_after_s: float | None = None


def details(reason: Reason, **metadata: str) -> ErrorDetails:
    """ErrorInfo for `reason`, with RetryInfo where RETRY_AFTER_S has a delay for it."""
    return ErrorDetails(reason.value, metadata, (), RETRY_AFTER_S.get(reason))


def field_details(err: FieldError) -> ErrorDetails:
    """INVALID_FIELD naming the field, and the BadRequest violation saying what is wrong with it."""
    return ErrorDetails(
        Reason.INVALID_FIELD.value, {"field": err.field}, (FieldViolation(err.field, err.description),)
    )
