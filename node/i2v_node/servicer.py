"""The i2v.v1.Node gRPC servicer: validation, one job at a time, progress streaming, cancellation.

The engine runs in a dedicated one-thread executor; its progress callbacks cross into the event loop
with `call_soon_threadsafe`. Cancellation (client cancel, deadline, Cancel RPC, drain) sets a
threading.Event that the denoising loop checks every step. The node counts as busy until the engine
thread has returned, so a cancelled job never overlaps the next one.

Seams for the coordinator: `JobHooks.before_run` runs after the busy slot is taken and before the
engine starts (the fenced claim goes there) and gets a `stop(why)` it may call while the job runs
(the claim is gone: the job stops within one denoising step, like a cancel); `after_run` sees
every finished job (result records); an `ArtifactStore` resolves `image_uri` and writes `output_uri`.

While a job runs, its Generate stream carries a Heartbeat whenever nothing else was sent for
`heartbeat_interval` seconds, so a caller can tell a slow step from a dead node. Faults of the node
itself (a request for a store it does not have, a store it cannot write) are FAILED_PRECONDITION or
UNAVAILABLE with what to fix, never INVALID_ARGUMENT, which is kept for the caller's own mistakes.

Once a job holds the slot it runs in its own task, and the Generate call only relays its events.
A standalone request (no job_id) is validated before it takes the slot, and its caller's cancel or
deadline stops it. A dispatched request (job_id set) is claimed first and validated after: from the
claim on, every outcome (bad input included) reaches `after_run`, so the coordinator always gets a
result, and the job keeps running when the caller's stream drops (a leader crash): only
Node.Cancel(job_id) or the drain grace period stops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from PIL import Image

from i2v_common.artifacts import ArtifactError, ArtifactMissing, ArtifactStore
from i2v_common.rpc import node_pb2_grpc
from i2v_contract.limits import FieldError, Limits, Normalized, check_model, decode_image, normalize_request
from i2v_contract.tiers import tier_name
from i2v_contract.version import package_version
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.engine import Engine
from i2v_node.gpu import MemoryMonitor, MemoryReading, ProfileChoice, first_profile, tier_of
from i2v_node.hooks import JobHooks, JobRejected, JobReport, NoHooks
from i2v_node.job import Cancelled, JobSpec, Outcome, OutOfMemoryExhausted, ProgressEvent
from i2v_node.metrics import NodeMetrics
from i2v_node.video import encode_mp4, frames_to_png

log = logging.getLogger(__name__)

# Why a job's cancel event was set; decides the status code the caller sees.
CLIENT, DEADLINE, CANCEL_RPC, DRAIN = "client", "deadline", "cancel_rpc", "drain"
CLAIM_GONE = "claim_gone"  # the hooks' stop(): the job is no longer this node's to finish
HEARTBEAT_INTERVAL_S = 2.0
# A cancelled job stops within one denoising step; a full-size step can take many seconds.
CANCEL_WAIT_S = 120.0
DEADLINE_SLACK_S = 0.25


class NodeFault(Exception):
    """A job cannot run because of this node's own setup or store, not the request."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def dispatch_error(request: node_pb2.NodeGenerateRequest) -> str | None:
    """What is wrong with a dispatched request's job_id/attempt (the caller's fault), None if fine."""
    if not request.job_id:
        return None
    if "/" in request.job_id:
        return f"job_id {request.job_id!r} must not contain '/'"
    if request.attempt < 1:
        return f"attempt ({request.attempt}) must be >= 1 for a dispatched job (job_id {request.job_id})"
    return None


@dataclass(frozen=True)
class _Final:
    """How a job ended, as its caller sees it: the result, or a status code and message."""

    code: grpc.StatusCode
    message: str
    result: common_pb2.Result | None


_Prepared = tuple[Normalized, Image.Image]  # a validated request and its decoded input image


@dataclass
class _Job:
    job_id: str
    request: node_pb2.NodeGenerateRequest
    received: float
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    detail: str = ""  # why, in words, when the reason alone does not say it
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    events: asyncio.Queue[common_pb2.Progress | _Final] = field(default_factory=asyncio.Queue)
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


def output_name(uri: str, store: ArtifactStore) -> str:
    """The store-relative name of an output URI inside `store`; FAILED_PRECONDITION if outside it."""
    prefix = store.root_url.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise NodeFault(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"output_uri {uri!r} is outside this node's artifact store ({store.root_url}): the node "
            "and its coordinators use different stores; give the node the coordinators' --artifacts",
        )
    return uri[len(prefix) :]


def profile_for(
    engine: Engine, reading: MemoryReading, width: int, height: int, frames: int
) -> ProfileChoice:
    """The first profile for a job of this size; logs the memory model's reason."""
    choice = first_profile(
        width,
        height,
        frames,
        reading,
        engine.ladder,
        arch=engine.arch,
        dtype_name=engine.dtype_name,
        accelerator=engine.has_accelerator,
    )
    log.info("%s", choice.reason)
    return choice


def default_profile(engine: Engine, reading: MemoryReading, limits: Limits) -> ProfileChoice:
    """The first profile for a request that leaves every size at the default."""
    return profile_for(engine, reading, limits.default_width, limits.default_height, limits.default_frames)


class NodeServicer(node_pb2_grpc.NodeServicer):
    def __init__(
        self,
        *,
        node_id: str,
        monitor: MemoryMonitor,
        metrics: NodeMetrics,
        limits: Limits,
        max_result_bytes: int,
        hooks: JobHooks | None = None,
        artifacts: ArtifactStore | None = None,
        random_seed: Callable[[], int] = lambda: secrets.randbits(63),
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.node_id = node_id
        self.monitor = monitor
        self.metrics = metrics
        self.limits = limits
        self.max_result_bytes = max_result_bytes
        self.hooks: JobHooks = hooks or NoHooks()
        self.artifacts = artifacts
        self.random_seed = random_seed
        self.heartbeat_interval = heartbeat_interval
        self.engine: Engine | None = None
        self.draining = False
        self.drain_grace_seconds = 0.0
        self.job: _Job | None = None
        self.tier: int = common_pb2.TIER_UNSPECIFIED
        self.reading: MemoryReading | None = None  # the last memory probe
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="i2v-engine")
        self._listeners: list[Callable[[], None]] = []
        self._notifying = False
        self._runs: set[asyncio.Task[None]] = set()

    # --- state -------------------------------------------------------------------------------

    def set_engine(self, engine: Engine) -> None:
        self.engine = engine
        self.observe_memory()
        self._changed()  # now serving

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (on the event loop) whenever busy, serving or the memory reading changes."""
        self._listeners.append(callback)

    def _changed(self) -> None:
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

    @property
    def serving(self) -> bool:
        return self.engine is not None and not self.draining

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
            self._changed()

    def start_drain(self) -> None:
        if not self.draining:
            self.draining = True
            if self.job is None:
                log.info("draining: refusing new jobs; no job running")
            else:
                log.info("draining: refusing new jobs, letting job %s finish", self.job.job_id)
            self._changed()

    async def wait_idle(self, grace_seconds: float) -> bool:
        """Wait for the running job; cancel it after `grace_seconds`. True if it finished by itself."""
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

    # --- RPCs --------------------------------------------------------------------------------

    async def Generate(
        self, request: node_pb2.NodeGenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.GenerateEvent]:
        received = time.monotonic()
        engine = self.engine
        if self.draining:
            self.metrics.job_done("unavailable")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node is draining; retry on another node")
        if engine is None:
            self.metrics.job_done("unavailable")
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "node is still loading its model; retry in a few seconds or use another node",
            )
        assert engine is not None
        prepared: _Prepared | None = None
        if (bad := dispatch_error(request)) is not None:
            self.metrics.job_done("invalid")
            log.info("rejected dispatch: %s", bad)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad)
        # A dispatched job is validated after its claim (in _drive), so bad input still gets a result.
        if not request.job_id:
            try:
                prepared = await self._validate(request, engine)
            except FieldError as err:
                self.metrics.job_done("invalid")
                log.info("rejected request: %s", err)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            except NodeFault as err:
                self.metrics.job_done("failed")
                log.warning("refused a request: %s", err.message)
                await context.abort(err.code, err.message)
        if self.job is not None:
            self.metrics.job_done("busy")
            log.info("refused a job: busy with %s", self.job.job_id)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"node busy with job {self.job.job_id}; retry later or use another node",
            )
        job = _Job(request.job_id or f"local-{uuid.uuid4().hex[:12]}", request, received)
        self.job = job
        self.metrics.busy.set(1)
        self._changed()
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        remaining = context.time_remaining()
        if remaining is not None and not job.dispatched:
            job.deadline = time.monotonic() + remaining
            timer = loop.call_later(max(0.0, remaining), job.cancel_for, DEADLINE)
        run = loop.create_task(self._drive(job, engine, prepared), name=f"job-{job.job_id}")
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        next_item: asyncio.Task[common_pb2.Progress | _Final] | None = None
        try:
            last_sent = time.monotonic()
            while True:
                # One get() outlives every heartbeat timeout, so no event is lost to a timeout.
                next_item = next_item or loop.create_task(job.events.get())
                wait = max(0.0, last_sent + self.heartbeat_interval - time.monotonic())
                done, _ = await asyncio.wait({next_item}, timeout=wait)
                if not done:
                    elapsed = time.monotonic() - job.received
                    beat = common_pb2.Heartbeat(elapsed_s=elapsed, stage=job.stage)  # type: ignore[arg-type]
                    yield common_pb2.GenerateEvent(heartbeat=beat)
                    last_sent = time.monotonic()
                    continue
                item, next_item = next_item.result(), None
                if isinstance(item, _Final):
                    break
                job.stage = item.stage
                yield common_pb2.GenerateEvent(progress=item)
                last_sent = time.monotonic()
            if item.result is None:
                await context.abort(item.code, item.message)
            yield common_pb2.GenerateEvent(result=item.result)
        except (asyncio.CancelledError, GeneratorExit):
            if job.dispatched:
                log.info(
                    "caller of job %s went away; the job keeps running (only Node.Cancel stops it)",
                    job.job_id,
                )
            else:
                # gRPC ends the call a little before our timer when the deadline passes.
                past_deadline = (
                    job.deadline is not None and time.monotonic() >= job.deadline - DEADLINE_SLACK_S
                )
                job.cancel_for(DEADLINE if past_deadline else CLIENT)
            raise
        finally:
            if next_item is not None:
                next_item.cancel()
            if timer is not None:
                timer.cancel()

    async def Cancel(
        self, request: node_pb2.NodeCancelRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.NodeCancelResponse:
        job = self.job
        if job is None or (request.job_id and request.job_id != job.job_id):
            return node_pb2.NodeCancelResponse(cancelled=False)
        job.cancel_for(CANCEL_RPC)
        return node_pb2.NodeCancelResponse(cancelled=True)

    async def Status(
        self, request: node_pb2.NodeStatusRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.NodeStatus:
        reading = await self.probe()
        engine = self.engine
        status = node_pb2.NodeStatus(
            node_id=self.node_id,
            tier=self.tier,  # type: ignore[arg-type]
            device=f"{reading.label} {reading.name}",
            total_bytes=reading.total_bytes,
            free_bytes=reading.free_bytes,
            busy=self.job is not None,
            job_id=self.job.job_id if self.job else "",
            version=package_version(),
            serving=self.serving,
        )
        if engine is not None:
            status.model = engine.model_id
            status.profiles.extend(p.name for p in engine.ladder)
            status.profile = default_profile(engine, reading, self.limits).profile.name
        return status

    # --- helpers -----------------------------------------------------------------------------

    async def _validate(self, request: node_pb2.NodeGenerateRequest, engine: Engine) -> _Prepared:
        req = request.request
        norm = normalize_request(req, self.limits, random_seed=self.random_seed)
        check_model(norm.model, engine.model_id)
        if request.output_uri and self.artifacts is None:
            raise NodeFault(
                grpc.StatusCode.FAILED_PRECONDITION,
                "output_uri is set but this node has no artifact store: start it with --artifacts, "
                "or leave output_uri empty to get the video inline",
            )
        if self.artifacts is not None and request.output_uri:
            output_name(request.output_uri, self.artifacts)
        data = req.image
        if not data and req.image_uri:
            data = await self._read_image(req.image_uri)
        image = await asyncio.to_thread(decode_image, data, self.limits)
        return norm, image

    async def _read_image(self, uri: str) -> bytes:
        """The input image at `uri`; a missing one is the caller's fault, an unusable store the node's."""
        store = self.artifacts
        if store is None:
            raise NodeFault(
                grpc.StatusCode.FAILED_PRECONDITION,
                "image_uri is set but this node has no artifact store: start it with --artifacts, "
                "or send the image inline",
            )
        try:
            return await asyncio.to_thread(store.get, uri)
        except ArtifactMissing as err:
            raise FieldError("image_uri", str(err)) from None
        except (ArtifactError, OSError) as err:
            raise NodeFault(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this node cannot read image_uri from its artifact store ({store.root_url}): {err}; "
                "check the node uses the coordinators' store and can read it",
            ) from None

    async def _drive(self, job: _Job, engine: Engine, prepared: _Prepared | None) -> None:
        """A job's life once it holds the slot, independent of the call that started it.

        Once before_run accepted the job (a dispatched job's claim), after_run sees how it ended,
        whatever that is, so the claim always gets its result.
        """
        final = _Final(grpc.StatusCode.INTERNAL, f"job {job.job_id} ended without an outcome", None)
        accepted = False
        try:
            try:
                await self.hooks.before_run(
                    job.job_id, job.request, lambda why: job.cancel_for(CLAIM_GONE, why)
                )
            except JobRejected as err:
                log.info("job %s refused by before_run: %s", job.job_id, err.message)
                final = _Final(err.code, err.message, None)
                return
            accepted = True
            if prepared is None:
                try:
                    prepared = await self._validate(job.request, engine)
                except FieldError as err:
                    self.metrics.job_done("invalid")
                    log.info("job %s rejected after its claim (a failed result follows): %s", job.job_id, err)
                    final = _Final(grpc.StatusCode.INVALID_ARGUMENT, str(err), None)
                    return
                except NodeFault as err:
                    self.metrics.job_done("failed")
                    log.warning(
                        "job %s cannot run here (a failed result follows): %s", job.job_id, err.message
                    )
                    final = _Final(err.code, err.message, None)
                    return
            final = await self._execute(job, engine, prepared)
        except Exception:
            log.exception("job %s: unexpected error", job.job_id)
            final = _Final(
                grpc.StatusCode.INTERNAL, f"internal error in job {job.job_id}; see the node log", None
            )
        finally:
            if accepted:
                await self._after_run(job, final)
            self._release(job)
            job.events.put_nowait(final)

    async def _execute(self, job: _Job, engine: Engine, prepared: _Prepared) -> _Final:
        """Run the engine in its thread; progress goes to the job's event queue."""
        norm, image = prepared
        reading = await self.probe()
        job.tier = self.tier
        choice = profile_for(engine, reading, norm.width, norm.height, norm.frames)
        loop = asyncio.get_running_loop()

        def post(item: common_pb2.Progress) -> None:
            loop.call_soon_threadsafe(job.events.put_nowait, item)

        future = loop.run_in_executor(self._executor, self._work, engine, job, norm, image, choice, post)
        future.add_done_callback(lambda f: self._finished(job, f))
        # The thread's last progress posts are queued on the loop before the future completes.
        await asyncio.wait([future])
        return self._classify(job, future)

    def _release(self, job: _Job) -> None:
        if self.job is job:
            self.job = None
        self.metrics.busy.set(0)
        job.finished.set()
        self._changed()

    def _work(
        self,
        engine: Engine,
        job: _Job,
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
        spec = JobSpec(
            image=image,
            prompt=norm.prompt,
            negative_prompt=norm.negative_prompt,
            width=norm.width,
            height=norm.height,
            frames=norm.frames,
            fps=norm.fps,
            steps=norm.steps,
            guidance_scale=norm.guidance_scale,
            seed=norm.seed,
            allow_degrade=norm.allow_degrade,
            return_frames=norm.return_frames,
        )
        engine_start = time.monotonic()
        queue_s = engine_start - job.received
        tracker = _ProgressTracker(self, job, post)
        outcome = engine.run(spec, choice.profile, tracker.on_event, job.cancel)
        if job.cancel.is_set():
            raise Cancelled(f"job {job.job_id} cancelled after the last step")
        tracker.on_event(ProgressEvent(common_pb2.STAGE_ENCODE_VIDEO, profile=outcome.profile))
        video_start = time.monotonic()
        video = encode_mp4(outcome.frames, outcome.spec.fps)
        pngs = frames_to_png(outcome.frames) if norm.return_frames else []
        video_s = time.monotonic() - video_start
        result = common_pb2.Result(
            mime_type="video/mp4",
            frames=int(outcome.frames.shape[0]),
            fps=outcome.spec.fps,
            width=int(outcome.frames.shape[2]),
            height=int(outcome.frames.shape[1]),
            steps=outcome.spec.steps,
            seed=outcome.spec.seed,
            profile=outcome.profile,
            degradations=list(outcome.degradations),
            peak_bytes=outcome.peak_bytes,
            sha256=hashlib.sha256(video).hexdigest(),
            frames_png=pngs,
        )
        result.metadata.update(outcome.metadata)
        result.metadata.update(
            {
                "tier": tier_name(job.tier),
                "node_id": self.node_id,
                "model": engine.model_id,
                "device": engine.device,
                "dtype": engine.dtype_name,
                "first_profile": choice.profile.name,
                "free_bytes_at_start": str(choice.free_bytes),
                "i2v_cluster": package_version(),
            }
        )
        if job.request.output_uri and self.artifacts is not None:
            result.artifact_uri = self._store_output(job, video)
        else:
            result.video = video
        t = outcome.timings
        result.timings.CopyFrom(
            common_pb2.Timings(
                queue_s=queue_s,
                encode_s=t.get("encode_s", 0.0),
                denoise_s=t.get("denoise_s", 0.0),
                decode_s=t.get("decode_s", 0.0),
                video_s=video_s,
                total_s=time.monotonic() - job.received,
            )
        )
        return result, outcome

    def _store_output(self, job: _Job, video: bytes) -> str:
        """Engine thread: write the video to output_uri; a store failure is the node's (UNAVAILABLE)."""
        assert self.artifacts is not None
        name = output_name(job.request.output_uri, self.artifacts)
        try:
            return self.artifacts.put(name, video)
        except (ArtifactError, OSError) as err:
            raise NodeFault(
                grpc.StatusCode.UNAVAILABLE,
                f"node {self.node_id} could not write the video of job {job.job_id} to its artifact store "
                f"({self.artifacts.root_url}): {err}; check the store is reachable and writable from here",
            ) from None

    def _classify(self, job: _Job, future: asyncio.Future[tuple[common_pb2.Result, Outcome]]) -> _Final:
        """The status the caller sees for a finished engine run."""
        if future.cancelled():
            return _Final(grpc.StatusCode.UNAVAILABLE, f"node stopped before job {job.job_id} ran", None)
        err = future.exception()
        if isinstance(err, Exception):
            return _Final(*self._failure(job, err), None)
        result, _ = future.result()
        if result.ByteSize() > self.max_result_bytes:
            return _Final(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"result is {result.ByteSize()} bytes, over this node's {self.max_result_bytes}-byte "
                "message limit; set return_frames=false, or use output_uri",
                None,
            )
        return _Final(grpc.StatusCode.OK, "", result)

    def _failure(self, job: _Job, err: Exception) -> tuple[grpc.StatusCode, str]:
        if isinstance(err, Cancelled):
            if job.reason == DEADLINE:
                return grpc.StatusCode.DEADLINE_EXCEEDED, (
                    f"deadline passed during job {job.job_id} (stopped after step {job.last_step}); "
                    "allow more time or request fewer steps/frames"
                )
            if job.reason == CLAIM_GONE:
                # UNAVAILABLE: a dispatcher that still sees the attempt as current re-runs it elsewhere.
                return grpc.StatusCode.UNAVAILABLE, (
                    f"job {job.job_id} stopped after step {job.last_step}: {job.detail}; no result written"
                )
            if job.reason == DRAIN:
                return grpc.StatusCode.UNAVAILABLE, (
                    f"node is draining; job {job.job_id} was cancelled after the "
                    f"{self.drain_grace_seconds:g} s grace period; retry on another node"
                )
            return (
                grpc.StatusCode.CANCELLED,
                f"job {job.job_id} was cancelled ({job.reason or 'by the node'})",
            )
        if isinstance(err, OutOfMemoryExhausted):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)
        if isinstance(err, NodeFault):
            return err.code, err.message
        return grpc.StatusCode.INTERNAL, (
            f"internal error in job {job.job_id}: {type(err).__name__}; the node still serves, see its log"
        )

    async def _after_run(self, job: _Job, final: _Final) -> None:
        try:
            await self.hooks.after_run(
                JobReport(job.job_id, job.request, final.code, final.message, final.result)
            )
        except Exception:
            log.exception("after_run hook failed for job %s", job.job_id)

    def _finished(self, job: _Job, future: asyncio.Future[tuple[common_pb2.Result, Outcome]]) -> None:
        """On the loop once the engine thread returned: metrics and a log line."""
        exc = future.exception() if not future.cancelled() else Cancelled("executor shut down")
        if exc is None:
            result, outcome = future.result()
            self.metrics.job_succeeded(
                width=result.width,
                height=result.height,
                frames=result.frames,
                tier=job.tier,
                seconds=result.timings.total_s,
                peak_bytes=outcome.peak_bytes,
                degradations=outcome.degradations,
            )
            log.info(
                "job %s succeeded in %.2f s with profile %s, peak %d bytes%s",
                job.job_id,
                result.timings.total_s,
                result.profile,
                result.peak_bytes,
                f", degraded: {', '.join(result.degradations)}" if result.degradations else "",
            )
        elif isinstance(exc, Cancelled):
            self.metrics.job_done("deadline_exceeded" if job.reason == DEADLINE else "cancelled")
            log.info(
                "job %s stopped after step %d (%s)", job.job_id, job.last_step, job.reason or "cancelled"
            )
        elif isinstance(exc, NodeFault):
            self.metrics.job_done("failed")
            log.warning("job %s failed on this node's side: %s", job.job_id, exc.message)
        elif isinstance(exc, OutOfMemoryExhausted):
            self.metrics.job_done("oom")
            self.metrics.oom_caught(exc.stage, job.tier)
            log.warning("job %s out of memory at every profile: %s", job.job_id, exc)
        else:
            self.metrics.job_done("failed")
            log.error("job %s failed", job.job_id, exc_info=exc)


class _ProgressTracker:
    """Turns engine events into Progress messages (engine thread) and counts steps and OOM retries."""

    def __init__(
        self, servicer: NodeServicer, job: _Job, post: Callable[[common_pb2.Progress], None]
    ) -> None:
        self._s = servicer
        self._job = job
        self._post = post
        self._stage: int = common_pb2.STAGE_UNSPECIFIED
        self._last_step_at = time.monotonic()

    def on_event(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        job = self._job
        if event.stage == common_pb2.STAGE_RETRY:
            # The OOM happened in the stage that was running when the retry was announced.
            self._s.metrics.oom_caught(self._stage, job.tier)
            log.warning("job %s: out of memory in %s; %s", job.job_id, self._stage, event.message)
        else:
            if event.stage == common_pb2.STAGE_DENOISE:
                if event.step > 0:
                    self._s.metrics.step(now - self._last_step_at, job.tier)
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
                node_id=self._s.node_id,
                attempt=job.request.attempt,
            )
        )
