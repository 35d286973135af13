"""The node's one job slot: the running job's task, its engine thread, cancel, drain.

Once a job holds the slot it runs in its own task, and the Generate call only relays its events.
The engine runs in a dedicated one-thread executor; its progress callbacks cross into the event
loop with `call_soon_threadsafe`. Cancellation (client cancel, deadline, Cancel RPC, drain, the
hooks' stop) sets a threading.Event that the denoising loop checks every step. The node counts as
busy until the engine thread has returned, so a cancelled job never overlaps the next one.

A dispatched request (job_id set) is claimed first and validated after: from the claim on, every
outcome (bad input included) reaches the hooks' `after_run`, so the coordinator always gets a
result.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
from PIL import Image

from i2v_common.artifacts import ArtifactStore
from i2v_contract.limits import FieldError, Normalized
from i2v_contract.reasons import field_details
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node import result as results
from i2v_node.gpu import ProfileChoice
from i2v_node.hooks import JobHooks, JobRejected, JobReport, NoHooks
from i2v_node.job import Cancelled, Outcome, ProgressEvent
from i2v_node.metrics import NodeMetrics
from i2v_node.progress import ProgressTracker
from i2v_node.running import CANCEL_RPC, CLAIM_GONE, DRAIN, Final, RunningJob
from i2v_node.state import ServingState
from i2v_node.validation import NodeFault, Prepared, RequestChecker, job_spec, profile_for
from i2v_node.video import encode_mp4, frames_to_png

if TYPE_CHECKING:
    from i2v_node.engine import Engine

log = logging.getLogger(__name__)

# A cancelled job stops within one denoising step; a full-size step can take many seconds.
CANCEL_WAIT_S = 120.0


class JobSlot:
    def __init__(
        self,
        *,
        node_id: str,
        state: ServingState,
        metrics: NodeMetrics,
        checker: RequestChecker,
        max_result_bytes: int,
        hooks: JobHooks | None = None,
    ) -> None:
        self.node_id = node_id
        self.state = state
        self.metrics = metrics
        self.checker = checker
        self.max_result_bytes = max_result_bytes
        self.hooks: JobHooks = hooks or NoHooks()
        self.drain_grace_seconds = 0.0  # of the last drain: its cancel message names it
        self.job: RunningJob | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="i2v-engine")
        self._runs: set[asyncio.Task[None]] = set()

    @property
    def artifacts(self) -> ArtifactStore | None:
        return self.checker.artifacts

    # --- the slot ----------------------------------------------------------------------------

    def take(self, request: node_pb2.NodeGenerateRequest, received: float) -> RunningJob:
        """Occupy the slot (the caller checked it is free): the node is busy from here."""
        job = RunningJob(request.job_id or f"local-{uuid.uuid4().hex[:12]}", request, received)
        self.job = job
        self.metrics.busy.set(1)
        self.state.changed()
        return job

    def start(self, job: RunningJob, engine: Engine, prepared: Prepared | None) -> None:
        """Run the job in its own task; its events and its Final go to `job.events`."""
        run = asyncio.get_running_loop().create_task(
            self._drive(job, engine, prepared), name=f"job-{job.job_id}"
        )
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)

    def cancel(self, job_id: str) -> bool:
        """Cancel the running job (any, when `job_id` is empty); False when no such job runs."""
        job = self.job
        if job is None or (job_id and job_id != job.job_id):
            return False
        job.cancel_for(CANCEL_RPC)
        return True

    def start_drain(self) -> None:
        if not self.state.draining:
            self.state.draining = True
            if self.job is None:
                log.info("draining: refusing new jobs; no job running")
            else:
                log.info("draining: refusing new jobs, letting job %s finish", self.job.job_id)
            self.state.changed()

    async def wait_idle(self, grace_seconds: float) -> bool:
        """Wait for the running job; cancel it after `grace_seconds`. True if it finished by itself."""
        self.drain_grace_seconds = grace_seconds
        job = self.job
        if job is None:
            return True
        try:
            await asyncio.wait_for(job.finished.wait(), grace_seconds)
            return True
        except TimeoutError:
            job.cancel_for(DRAIN)
        try:
            await asyncio.wait_for(job.finished.wait(), CANCEL_WAIT_S)
        except TimeoutError:
            log.error("job %s ignored its cancel for %g s; stopping anyway", job.job_id, CANCEL_WAIT_S)
        return False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- a job's life ------------------------------------------------------------------------

    async def _drive(self, job: RunningJob, engine: Engine, prepared: Prepared | None) -> None:
        """A job's life once it holds the slot, independent of the call that started it.

        Once before_run accepted the job (a dispatched job's claim), after_run sees how it ended,
        whatever that is, so the claim always gets its result.
        """
        final = Final(grpc.StatusCode.INTERNAL, f"job {job.job_id} ended without an outcome", None)
        accepted = False
        try:
            try:
                await self.hooks.before_run(
                    job.job_id, job.request, lambda why: job.cancel_for(CLAIM_GONE, why)
                )
            except JobRejected as err:
                log.info("job %s refused by before_run: %s", job.job_id, err.message)
                final = Final(err.code, err.message, None, err.details)
                return
            accepted = True
            if prepared is None:
                checked = await self._validate_claimed(job, engine)
                if isinstance(checked, Final):
                    final = checked
                    return
                prepared = checked
            final = await self._execute(job, engine, prepared)
        except Exception:
            log.exception("job %s: unexpected error", job.job_id)
            final = Final(
                grpc.StatusCode.INTERNAL, f"internal error in job {job.job_id}; see the node log", None
            )
        finally:
            if accepted:
                await self._after_run(job, final)
            self._release(job)
            job.events.put_nowait(final)

    async def _validate_claimed(self, job: RunningJob, engine: Engine) -> Prepared | Final:
        """A dispatched job's checks, after its claim: a refusal is its Final (a failed result follows)."""
        try:
            return await self.checker.validate(job.request, engine)
        except FieldError as err:
            self.metrics.job_done("invalid")
            log.info("job %s rejected after its claim (a failed result follows): %s", job.job_id, err)
            return Final(grpc.StatusCode.INVALID_ARGUMENT, str(err), None, field_details(err))
        except NodeFault as err:
            self.metrics.job_done("failed")
            log.warning("job %s cannot run here (a failed result follows): %s", job.job_id, err.message)
            return Final(err.code, err.message, None)

    async def _execute(self, job: RunningJob, engine: Engine, prepared: Prepared) -> Final:
        """Run the engine in its thread; progress goes to the job's event queue."""
        norm, image = prepared
        reading = await self.state.probe()
        job.tier = self.state.tier
        choice = profile_for(engine, reading, norm.width, norm.height, norm.frames)
        self.metrics.job_running(choice.estimated_bytes)
        loop = asyncio.get_running_loop()

        def post(item: common_pb2.Progress) -> None:
            loop.call_soon_threadsafe(job.events.put_nowait, item)

        future = loop.run_in_executor(self._executor, self._work, engine, job, norm, image, choice, post)
        future.add_done_callback(lambda f: results.record_finished(self.metrics, job, f))
        # The thread's last progress posts are queued on the loop before the future completes.
        await asyncio.wait([future])
        return results.classify(
            job, future, max_result_bytes=self.max_result_bytes, drain_grace_seconds=self.drain_grace_seconds
        )

    def _release(self, job: RunningJob) -> None:
        if self.job is job:
            self.job = None
        self.metrics.busy.set(0)
        self.metrics.job_released()
        job.finished.set()
        self.state.changed()

    async def _after_run(self, job: RunningJob, final: Final) -> None:
        try:
            await self.hooks.after_run(
                JobReport(job.job_id, job.request, final.code, final.message, final.result)
            )
        except Exception:
            log.exception("after_run hook failed for job %s", job.job_id)

    def _work(
        self,
        engine: Engine,
        job: RunningJob,
        norm: Normalized,
        image: Image.Image,
        choice: ProfileChoice,
        post: Callable[[common_pb2.Progress], None],
    ) -> tuple[common_pb2.Result, Outcome]:
        """Runs in the engine thread: the engine, video encoding, the Result."""
        if job.cancel.is_set():
            raise Cancelled(f"job {job.job_id} cancelled before it started")
        log.info(
            "job %s: %dx%d, %d frames, %d steps; first profile %s because %s (free %d bytes)",
            job.job_id,
            norm.width,
            norm.height,
            norm.frames,
            norm.steps,
            choice.profile.name,
            "it is the fastest that fits" if choice.fits else "nothing fits by the model, trying the leanest",
            choice.free_bytes,
        )
        engine_start = time.monotonic()
        tracker = ProgressTracker(self.node_id, self.metrics, job, post)
        outcome = engine.run(job_spec(norm, image), choice.profile, tracker.on_event, job.cancel)
        if job.cancel.is_set():
            raise Cancelled(f"job {job.job_id} cancelled after the last step")
        tracker.on_event(ProgressEvent(common_pb2.STAGE_ENCODE_VIDEO, profile=outcome.profile))
        video_start = time.monotonic()
        video = encode_mp4(outcome.frames, outcome.spec.fps)
        pngs = frames_to_png(outcome.frames) if norm.return_frames else []
        video_s = time.monotonic() - video_start
        info = results.RunInfo(self.node_id, engine.model_id, engine.device, engine.dtype_name, choice)
        result = results.assemble(outcome, job, info, video, pngs)
        if job.request.output_uri and self.artifacts is not None:
            results.store_outputs(self.artifacts, job, result, video, self.node_id)
        else:
            result.video = video
        result.timings.CopyFrom(results.timings(outcome, job, engine_start=engine_start, video_s=video_s))
        return result, outcome
