"""Per-client limits on one coordinator: submit rate (a token bucket per client), queued jobs and
open streams; the decisions are i2v_contract.auth's, the state (buckets, counts) is kept here.

Only the leader admits jobs, so its buckets and counts are the cluster's; a new leader starts with
full buckets. Streams are counted where they are served (the leader for Watch and Generate, any
coordinator for Download). Clients are the names in the tokens file, so the state is bounded by
it; without authentication every caller is the one client "".
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from i2v_contract import auth
from i2v_contract.reasons import RETRY_AFTER_S, Reason


@dataclass(frozen=True)
class ClientLimits:
    """--max-queued-per-client, --submit-rate, --submit-burst, --max-streams-per-client (0 = none)."""

    max_queued: int = 0
    submit_rate: float = 0.0
    submit_burst: int = 0  # 0 = the rate rounded up (at least 1)
    max_streams: int = 0

    @property
    def rate(self) -> auth.RateLimit:
        return auth.RateLimit(self.submit_rate, self.submit_burst or max(1, math.ceil(self.submit_rate)))


@dataclass(frozen=True)
class Refusal:
    """RESOURCE_EXHAUSTED: why (`reason`), the message naming the limit, and when to retry."""

    reason: Reason
    message: str
    retry_after_s: float


class Quotas:
    def __init__(
        self, limits: ClientLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or ClientLimits()
        self._clock = clock
        self._buckets: dict[str, auth.Bucket] = {}
        self._streams: collections.Counter[str] = collections.Counter()

    def submit(self, who: auth.Principal) -> Refusal | None:
        """Take one submit from `who`'s bucket; the refusal when it is empty."""
        limit = self.limits.rate
        if limit.per_s <= 0:
            return None
        bucket, wait_s = auth.take(self._buckets.get(who.name), self._clock(), limit)
        self._buckets[who.name] = bucket
        if wait_s <= 0:
            return None
        return Refusal(Reason.SUBMIT_RATE, auth.rate_message(who, limit, wait_s), wait_s)

    def queued(self, who: auth.Principal, queued: int) -> Refusal | None:
        """The refusal when `who`, with `queued` jobs queued, may not queue another."""
        if not auth.over_quota(queued, self.limits.max_queued):
            return None
        message = auth.quota_message(who, queued, self.limits.max_queued)
        return Refusal(Reason.CLIENT_QUOTA, message, RETRY_AFTER_S[Reason.CLIENT_QUOTA])

    def open_stream(self, who: auth.Principal) -> Refusal | None:
        """Count a stream of `who`'s (close_stream uncounts it), or the refusal at the limit."""
        limit = self.limits.max_streams
        if limit > 0 and self._streams[who.name] >= limit:
            message = auth.streams_message(who, self._streams[who.name], limit)
            return Refusal(Reason.STREAM_LIMIT, message, RETRY_AFTER_S[Reason.STREAM_LIMIT])
        self._streams[who.name] += 1
        return None

    def close_stream(self, who: auth.Principal) -> None:
        self._streams[who.name] -= 1
        if self._streams[who.name] <= 0:
            del self._streams[who.name]

    def streams(self, name: str) -> int:
        return self._streams[name]
