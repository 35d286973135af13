"""How long and how fast a coordinator client retries: which codes are worth another try, the
policy, and one call's backoff budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from i2v_contract.wire import coordinator_pb2

# Worth another try, elsewhere or later: a standby naming the leader, a refused or broken connection,
# a leader moving, a call past its deadline. Every other code is the answer: INVALID_ARGUMENT,
# NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION, OUT_OF_RANGE
# and UNIMPLEMENTED (the wrong server) would fail the same way again.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def retryable(code: grpc.StatusCode) -> bool:
    return code in RETRYABLE


@dataclass(frozen=True)
class RetryPolicy:
    reconnect_s: float = 30.0  # give up when no coordinator answered for this long (> lease TTL + margin)
    call_timeout_s: float = 10.0  # one unary attempt
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    idle_timeout_s: float = 8.0  # a stream silent this long (4 missed 2 s heartbeats) is a frozen coordinator
    suspect_s: float = 15.0  # a silent target is avoided this long (> lease TTL + margin: a successor leads)
    upload_floor_bps: float = 1024 * 1024  # a submit's image may take this long to send on top of the bounds
    # A connection is made (TCP and HTTP/2) within this or the address counts as unreachable; a
    # connected server's calls still get call_timeout_s, so a slow one is not taken for a dead one.
    connect_timeout_s: float = 2.0
    # A client that has not reached any coordinator yet gives up after this long (every address tried
    # once at least): a typo or a stopped cluster is said at once. After the first connection the
    # failover budget, reconnect_s, applies.
    unreachable_s: float = 0.5

    def upload_s(self, request: coordinator_pb2.SubmitRequest) -> float:
        """Extra time before a submit's first answer: its request uploaded at `upload_floor_bps`."""
        return request.ByteSize() / self.upload_floor_bps


class Reconnect:
    """Backoff and give-up bookkeeping across reconnects; reset whenever a coordinator answers."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self._since = self._clock()
        self._backoff = self._policy.initial_backoff_s
        self._followed_hint = False

    def remaining(self, reached: bool = True) -> float:
        """Seconds left before giving up: `reconnect_s` once a coordinator was reached, else the
        shorter `unreachable_s`."""
        budget = (
            self._policy.reconnect_s if reached else min(self._policy.unreachable_s, self._policy.reconnect_s)
        )
        return self._since + budget - self._clock()

    def next_delay(self, hinted: bool) -> float:
        """Pause before the next attempt: none for the first leader hint in a row."""
        if hinted and not self._followed_hint:
            self._followed_hint = True
            return 0.0
        self._followed_hint = hinted
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._policy.max_backoff_s)
        return delay
