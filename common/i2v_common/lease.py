"""LeaseKeeper: keeps one etcd lease alive and says, on the local clock, whether it may still be used."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from i2v_contract.kv import DEFAULT_LEASE_MARGIN_S, KV, KVUnavailable, LeaseLost

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Keeps one lease alive and knows, on the local monotonic clock, whether it may still act on it.

    valid() is true only while now < last_ok + ttl - margin, where last_ok is when the last
    successful keepalive was *sent* (the server's deadline can only be later). on_lost callbacks run
    once, when etcd reports the lease gone or when validity lapses; the keeper then stops.
    """

    def __init__(
        self,
        kv: KV,
        ttl: float,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        margin: float = DEFAULT_LEASE_MARGIN_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < interval < ttl - margin:
            raise ValueError(
                f"LeaseKeeper: need 0 < interval ({interval}) < ttl ({ttl}) - margin ({margin}); "
                f"lower the keepalive interval or raise the TTL"
            )
        self._kv = kv
        self.ttl = ttl
        self.interval = interval
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self.lease_id = 0
        self._last_ok = -math.inf
        self._lost_reason: str | None = None
        self._stopped = False
        self._callbacks: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Register a callback(reason) run once when the lease is lost (not on a planned stop)."""
        self._callbacks.append(callback)

    @property
    def lost_reason(self) -> str | None:
        return self._lost_reason

    def deadline(self) -> float:
        """Monotonic time at which valid() turns false unless a keepalive succeeds first."""
        return self._last_ok + self.ttl - self.margin

    def valid(self) -> bool:
        return (
            self.lease_id != 0
            and self._lost_reason is None
            and not self._stopped
            and self._clock() < self.deadline()
        )

    async def start(self) -> int:
        if self.lease_id:
            raise RuntimeError("LeaseKeeper.start called twice; create a new keeper for a new lease")
        sent = self._clock()
        self.lease_id = await self._kv.grant_lease(math.ceil(self.ttl))
        self._last_ok = sent
        log.info("lease %x granted ttl=%.1fs keepalive every %.1fs", self.lease_id, self.ttl, self.interval)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"lease-keeper-{self.lease_id:x}"
        )
        return self.lease_id

    async def tick(self) -> None:
        """One keepalive attempt plus the validity check (the loop calls this; tests call it directly)."""
        if self._lost_reason is not None or self._stopped:
            return
        if not self._check_deadline():
            return
        sent = self._clock()
        try:
            await self._kv.keepalive_once(self.lease_id)
        except LeaseLost:
            self._lose("etcd reports the lease expired or revoked")
            return
        except KVUnavailable as exc:
            log.warning(
                "lease %x keepalive failed (%s); valid for %.2fs more",
                self.lease_id,
                exc,
                self.deadline() - self._clock(),
            )
        else:
            self._last_ok = max(self._last_ok, sent)
        self._check_deadline()

    def _check_deadline(self) -> bool:
        if self._clock() < self.deadline():
            return True
        self._lose(f"no successful keepalive for {self.ttl - self.margin:.1f}s (ttl {self.ttl}s - margin)")
        return False

    def _lose(self, reason: str) -> None:
        if self._lost_reason is not None:
            return
        self._lost_reason = reason
        log.warning("lease %x lost: %s", self.lease_id, reason)
        for callback in self._callbacks:
            try:
                callback(reason)
            except Exception:
                log.exception("lease %x on_lost callback failed", self.lease_id)

    async def _run(self) -> None:
        while self._lost_reason is None and not self._stopped:
            # Wake no later than the validity deadline so on_lost fires on time.
            await self._sleep(max(0.0, min(self.interval, self.deadline() - self._clock())))
            await self.tick()

    async def stop(self, revoke: bool) -> None:
        """Stop keepalives; revoke=True deletes the lease's keys now (planned handover)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if revoke and self.lease_id and self._lost_reason is None:
            try:
                await self._kv.revoke_lease(self.lease_id)
                log.info("lease %x revoked (planned stop)", self.lease_id)
            except KVUnavailable as exc:
                log.warning(
                    "lease %x revoke failed (%s); it expires within %.1fs", self.lease_id, exc, self.ttl
                )
