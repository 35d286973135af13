"""The job that holds the node's one slot: its request, its cancel event and why it was set, and
the queue its progress and its end travel through to the Generate call that relays them."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

import grpc

from i2v_contract.reasons import ErrorDetails
from i2v_contract.wire import common_pb2, node_pb2

log = logging.getLogger(__name__)

# Why a job's cancel event was set; decides the status code the caller sees.
CLIENT, DEADLINE, CANCEL_RPC, DRAIN = "client", "deadline", "cancel_rpc", "drain"
CLAIM_GONE = "claim_gone"  # the hooks' stop(): the job is no longer this node's to finish
# gRPC ends a call a little before the node's own deadline timer fires.
DEADLINE_SLACK_S = 0.25


@dataclass(frozen=True)
class Final:
    """How a job ended, as its caller sees it: the result, or a status code and message (with the
    details beside them, when it is one of the families i2v_contract.reasons names)."""

    code: grpc.StatusCode
    message: str
    result: common_pb2.Result | None
    details: ErrorDetails | None = None


@dataclass
class RunningJob:
    job_id: str
    request: node_pb2.NodeGenerateRequest
    received: float
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    detail: str = ""  # why, in words, when the reason alone does not say it
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    events: asyncio.Queue[common_pb2.Progress | Final] = field(default_factory=asyncio.Queue)
    tier: int = common_pb2.TIER_UNSPECIFIED
    stage: int = common_pb2.STAGE_ASSIGNED  # of the last progress sent; assigned until the first
    last_step: int = 0
    deadline: float | None = None  # monotonic time the caller's deadline passes

    @property
    def dispatched(self) -> bool:
        return bool(self.request.job_id)

    def cancel_for(self, reason: str, detail: str = "") -> None:
        if not self.cancel.is_set():
            self.reason = reason
            self.detail = detail
            self.cancel.set()
            log.info("cancelling job %s: %s", self.job_id, detail or reason)

    def caller_gone(self) -> None:
        """The Generate call ended early: a standalone job stops, a dispatched one runs on."""
        if self.dispatched:
            log.info(
                "caller of job %s went away; the job keeps running (only Node.Cancel stops it)",
                self.job_id,
            )
            return
        past_deadline = self.deadline is not None and time.monotonic() >= self.deadline - DEADLINE_SLACK_S
        self.cancel_for(DEADLINE if past_deadline else CLIENT)
