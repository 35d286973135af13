"""A job's progress on its way out: engine events become Progress messages in the engine thread,
cross into the event loop through the job's queue, and leave as the Generate stream's events, with
a Heartbeat whenever nothing else was sent for `heartbeat_interval` seconds (so a caller can tell a
slow step from a dead node)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from i2v_contract.wire import common_pb2
from i2v_node.job import ProgressEvent
from i2v_node.metrics import NodeMetrics
from i2v_node.running import Final, RunningJob

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0


class ProgressTracker:
    """Turns engine events into Progress messages (engine thread) and counts steps and OOM retries."""

    def __init__(
        self,
        node_id: str,
        metrics: NodeMetrics,
        job: RunningJob,
        post: Callable[[common_pb2.Progress], None],
    ) -> None:
        self._node_id = node_id
        self._metrics = metrics
        self._job = job
        self._post = post
        self._stage: int = common_pb2.STAGE_UNSPECIFIED
        self._last_step_at = time.monotonic()

    def on_event(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        job = self._job
        if event.stage == common_pb2.STAGE_RETRY:
            # The OOM happened in the stage that was running when the retry was announced.
            self._metrics.oom_caught(self._stage, job.tier)
            log.warning("job %s: out of memory in %s; %s", job.job_id, self._stage, event.message)
        else:
            if event.stage == common_pb2.STAGE_DENOISE:
                if event.step > 0:
                    self._metrics.step(now - self._last_step_at, job.tier)
                    job.last_step = event.step
                self._last_step_at = now
            self._stage = event.stage
        self._post(
            common_pb2.Progress(
                stage=event.stage,  # type: ignore[arg-type]
                step=event.step,
                total_steps=event.total_steps,
                elapsed_s=now - job.received,
                profile=event.profile,
                message=event.message,
                node_id=self._node_id,
                attempt=job.request.attempt,
            )
        )


class EventRelay:
    """The Generate stream's side of a job's queue: progress, heartbeats, then the job's Final."""

    def __init__(self, job: RunningJob, heartbeat_interval: float) -> None:
        self._job = job
        self._interval = heartbeat_interval
        self._get: asyncio.Task[common_pb2.Progress | Final] | None = None

    async def next(self) -> common_pb2.GenerateEvent | Final:
        """What to send next; call it again once the previous event was sent."""
        job = self._job
        # One get() outlives every heartbeat timeout, so no event is lost to a timeout.
        self._get = self._get or asyncio.get_running_loop().create_task(job.events.get())
        done, _ = await asyncio.wait({self._get}, timeout=self._interval)
        if not done:
            beat = common_pb2.Heartbeat(elapsed_s=time.monotonic() - job.received, stage=job.stage)  # type: ignore[arg-type]
            return common_pb2.GenerateEvent(heartbeat=beat)
        item, self._get = self._get.result(), None
        if isinstance(item, Final):
            return item
        job.stage = item.stage
        return common_pb2.GenerateEvent(progress=item)

    def close(self) -> None:
        if self._get is not None:
            self._get.cancel()
