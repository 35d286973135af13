"""What the node is now, besides its job: the engine once loaded, whether it drains, its last memory
reading and tier; and who to tell (on the event loop) when any of that or busy changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from i2v_contract.tiers import tier_name
from i2v_contract.wire import common_pb2
from i2v_node.gpu import MemoryMonitor, MemoryReading, tier_of
from i2v_node.metrics import NodeMetrics

if TYPE_CHECKING:
    from i2v_node.engine import Engine

log = logging.getLogger(__name__)


class ServingState:
    def __init__(self, monitor: MemoryMonitor, metrics: NodeMetrics) -> None:
        self.monitor = monitor
        self.metrics = metrics
        self.engine: Engine | None = None
        self.draining = False
        self.tier: int = common_pb2.TIER_UNSPECIFIED
        self.reading: MemoryReading | None = None  # the last memory probe
        self._listeners: list[Callable[[], None]] = []
        self._notifying = False

    @property
    def serving(self) -> bool:
        return self.engine is not None and not self.draining

    def set_engine(self, engine: Engine) -> None:
        self.engine = engine
        self.observe_memory()
        self.changed()  # now serving

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (on the event loop) whenever busy, serving or the memory reading changes."""
        self._listeners.append(callback)

    def changed(self) -> None:
        if self._notifying:  # a listener that probes memory must not re-enter
            return
        self._notifying = True
        try:
            for callback in self._listeners:
                try:
                    callback()
                except Exception:
                    log.exception("state listener failed")
        finally:
            self._notifying = False

    def observe_memory(self) -> MemoryReading:
        """Probe memory (blocking briefly) and update the tier; call on the event loop."""
        reading = self.monitor.read()
        self.note_reading(reading)
        return reading

    async def probe(self) -> MemoryReading:
        reading = await asyncio.to_thread(self.monitor.read)
        self.note_reading(reading)
        return reading

    def note_reading(self, reading: MemoryReading) -> None:
        """Keep the reading and update the tier from it, saying so when it moves."""
        previous, self.reading = self.reading, reading
        tier = tier_of(reading)
        if tier != self.tier:
            log.info(
                "tier %s -> %s because %s free is %d bytes",
                tier_name(self.tier),
                tier_name(tier),
                reading.label,
                reading.free_bytes,
            )
            self.tier = tier
            self.metrics.set_tier(tier)
        if reading != previous:
            self.changed()
