"""The client-facing Coordinator service (coordinator.proto): the cluster's front door.

Only the leader serves jobs (Submit, Watch, Generate, Get, Cancel); a standby answers UNAVAILABLE
with "coordinator C is a standby; the leader is L at ADDR" and trailing metadata `i2v-leader-addr`,
which the bundled client follows. ListJobs, ListNodes and ClusterStatus are answered by every
coordinator (a standby reads the job table from etcd).

Submit validates (i2v_contract.limits), sizes the job (i2v_contract.memory), admits it
(routing.admit), stores the image in the artifact store and commits the job with a fenced
create-if-absent txn before answering. Admission is exact under concurrent Submits: the queue slot
is reserved in the same synchronous step as the check (only the leader admits, so an in-process
count of queued jobs plus submissions in flight is the whole queue) and released when the
submission ends, stored or not. The request id is the job id: the same id with the same
request returns the existing job, with a different request ALREADY_EXISTS.

Watch and Generate send a heartbeat (JobEvent.heartbeat, with the job's state and attempt as last
sent) whenever nothing else was sent for `heartbeat_interval` seconds (2 by default), so a client
can tell a quiet job from a frozen coordinator and move on when the stream goes silent.

Results: Watch's final event carries the Result with `artifact_uri` (the video stays in the store).
Generate's final event also inlines the video bytes when this coordinator can read the artifact and
the video is at most `inline_video_max_bytes` (64 MiB by default), so a one-shot caller needs no
access to the store; otherwise it carries the URI only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import NoReturn, Protocol

import grpc

from i2v_common.artifacts import ArtifactError, ArtifactStore
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract import memory
from i2v_contract.keys import Keys, LeaderRecord, MemberRecord, NodeRecord
from i2v_contract.kv import KVUnavailable
from i2v_contract.limits import DEFAULT_LIMITS, SEED_MAX, FieldError, Limits, Normalized, decode_image
from i2v_contract.limits import normalize_request as normalize
from i2v_contract.memory import ArchSpec
from i2v_contract.states import ACTIVE_STATES, FAILED, FINAL_STATES, QUEUED, SUCCEEDED, state_name
from i2v_contract.wire import LEADER_ADDR_METADATA, common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.dispatcher import Dispatcher
from i2v_coordinator.jobstore import Fenced, IdConflict, JobStore
from i2v_coordinator.jobtable import job_event
from i2v_coordinator.progress import HubClosed, ProgressHub
from i2v_coordinator.records import JobRecord, decode_job, request_digest
from i2v_coordinator.routing import JobNeed, NodeView, admit, serves_model

log = logging.getLogger(__name__)

INLINE_VIDEO_MAX_BYTES = 64 * 1024 * 1024
HEARTBEAT_INTERVAL_S = 2.0  # the bundled client gives up after 8 s of silence (RetryPolicy.idle_timeout_s)
LIST_JOBS_DEFAULT, LIST_JOBS_MAX = 100, 1000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_IMAGE_EXT = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"RIFF", "webp"))


class LeaderInfo(Protocol):
    """What the servicer reads of leadership.Leadership."""

    member_id: str
    addr: str

    @property
    def epoch(self) -> int | None: ...

    @property
    def leader(self) -> tuple[str, str] | None: ...


class NodeSnapshot(Protocol):
    def snapshot(self) -> tuple[NodeView, ...]: ...

    def records(self) -> dict[str, NodeRecord]: ...

    @property
    def adverts_revision(self) -> int: ...


def advertised_arch(records: Mapping[str, NodeRecord], model: str) -> ArchSpec:
    """The model's shape as live nodes advertise it (the largest if several); full-size I2VGen-XL
    when no node serving `model` ("" = any) publishes one."""
    archs = []
    for record in records.values():
        if record.arch and (not model or model in record.models):
            try:
                archs.append(ArchSpec.from_dict(record.arch))
            except ValueError as exc:
                log.warning("ignoring a node's arch summary: %s", exc)
    return max(archs, key=lambda a: a.total_params, default=memory.I2VGEN_XL)


def job_need(job_id: str, norm: Normalized, arch: ArchSpec, nodes: Sequence[NodeView]) -> tuple[int, int]:
    """(required bytes, required tier) of a normalised request.

    memory.required_tier never says CPU: CPU nodes are for development and CI. The rule here: when
    every live node serving the model is a CPU node, the job's floor is the CPU tier (bytes still
    checked); in a cluster with GPUs, jobs never go to CPU nodes.
    """
    need_bytes = memory.required_bytes(norm.width, norm.height, norm.frames, arch=arch)
    tier = memory.required_tier(norm.width, norm.height, norm.frames, arch=arch)
    probe = JobNeed(job_id, need_bytes, tier, model=norm.model)
    serving = [n for n in nodes if n.alive and serves_model(n, probe)]
    if serving and all(n.tier == common_pb2.TIER_CPU for n in serving):
        tier = common_pb2.TIER_CPU
    return need_bytes, tier


def image_ext(data: bytes) -> str:
    return next((ext for magic, ext in _IMAGE_EXT if data.startswith(magic)), "img")


def stored_request(norm: Normalized, image_uri: str) -> common_pb2.GenerationRequest:
    """The request as dispatched: defaults filled (seed fixed, so every attempt renders the same)."""
    return common_pb2.GenerationRequest(image_uri=image_uri, **dataclasses.asdict(norm))


def heartbeat_event(last: coordinator_pb2.JobEvent) -> coordinator_pb2.JobEvent:
    """A keep-alive that repeats the job's state and attempt as last sent, and nothing else."""
    return coordinator_pb2.JobEvent(
        job_id=last.job_id, state=last.state, attempt=last.attempt, heartbeat=True
    )


def job_message(record: JobRecord, event: coordinator_pb2.JobEvent) -> coordinator_pb2.Job:
    view = record.view
    job = coordinator_pb2.Job(
        job_id=view.job_id,
        state=event.state,
        attempt=view.attempt,
        node_id=view.node_id,
        epoch=view.epoch,
        required_tier=common_pb2.Tier.ValueType(view.required_tier),
        required_bytes=view.required_bytes,
        created_at=view.created_at,
        started_at=view.started_at,
        finished_at=view.finished_at,
        error=view.error,
        error_code=view.error_code,
        input_uri=record.input_uri,
        request=record.request,
    )
    if event.HasField("result"):
        job.result.CopyFrom(event.result)
    return job


def finished_message(view: jobs.JobView) -> str:
    """Why a finished job cannot be cancelled, and where its outcome is."""
    state = state_name(view.state)
    return (
        f"job {view.job_id} already {state} (attempt {view.attempt}); there is nothing to cancel: "
        f"`i2v get {view.job_id}` shows its outcome"
    )


def list_limit(requested: int) -> int:
    """ListJobsRequest.limit -> how many jobs to return; ValueError (INVALID_ARGUMENT) beyond the max."""
    if requested > LIST_JOBS_MAX:
        raise ValueError(
            f"limit: {requested} is above {LIST_JOBS_MAX}; ask for at most {LIST_JOBS_MAX} "
            f"(0 means {LIST_JOBS_DEFAULT}) and narrow the list with states"
        )
    return requested or LIST_JOBS_DEFAULT


def state_filter(states: Sequence[int]) -> frozenset[int]:
    """ListJobsRequest.states -> the states to keep (empty = all); ValueError on unknown values."""
    known = set(coordinator_pb2.JobState.values()) - {coordinator_pb2.JOB_STATE_UNSPECIFIED}
    bad = [s for s in states if s not in known]
    if bad:
        names = ", ".join(coordinator_pb2.JobState.Name(s) for s in sorted(known))
        raise ValueError(f"states: {bad} are not job states; use any of {names}, or none for every state")
    return frozenset(states)


OPEN, HISTORY = "open", "history"  # ListJobs phases: open jobs (bounded), then finished ones
_OPEN_STATES = frozenset({QUEUED, *ACTIVE_STATES})


def open_cursor(record: JobRecord) -> str:
    """An open job's place in newest-first order: created time, then id."""
    return f"{max(0, round(record.view.created_at * 1e6)):016d}-{record.job_id}"


def newest_open(
    records: Iterable[JobRecord], states: frozenset[int], limit: int, after: str = ""
) -> tuple[list[JobRecord], bool]:
    """The `limit` newest jobs (by created time, then id) below cursor `after` ("" = from the
    newest) whose state is in `states` (empty = any), and whether more remain."""
    kept = [
        r for r in records if (not states or r.view.state in states) and (not after or open_cursor(r) < after)
    ]
    kept.sort(key=open_cursor, reverse=True)
    return kept[:limit], len(kept) > limit


def page_token(phase: str, after: str) -> str:
    """Opaque to clients: base64 of the phase and the last key (cursor) the page covered."""
    return base64.urlsafe_b64encode(json.dumps([phase, after]).encode()).decode()


def parse_page_token(token: str, keys: Keys) -> tuple[str, str]:
    """ListJobsRequest.page_token -> (phase, after); ValueError (INVALID_ARGUMENT) on anything else."""
    if not token:
        return OPEN, ""
    try:
        phase, after = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(after, str) or phase not in (OPEN, HISTORY):
            raise ValueError(phase)
        if phase == HISTORY and after:
            keys.history_of(after)
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise ValueError(
            f"page_token: {token[:40]!r} is not a token this service issued; pass a "
            "ListJobsResponse.next_page_token unchanged, or leave it empty for the first page"
        ) from None
    return phase, after


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(
        self,
        leadership: LeaderInfo,
        registry: NodeSnapshot,
        store: JobStore,
        dispatcher: Dispatcher,
        hub: ProgressHub,
        artifacts: ArtifactStore,
        *,
        limits: Limits = DEFAULT_LIMITS,
        arch_for: Callable[[str], ArchSpec] | None = None,
        inline_video_max_bytes: int = INLINE_VIDEO_MAX_BYTES,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        random_seed: Callable[[], int] = lambda: uuid.uuid4().int % (SEED_MAX + 1),
    ) -> None:
        self._leadership = leadership
        self._registry = registry
        self._store = store
        self._dispatcher = dispatcher
        self._hub = hub
        self._artifacts = artifacts
        self._limits = limits
        self._arch_for = arch_for or self._advertised_arch
        self._arch_cache: tuple[int, dict[str, ArchSpec]] = (-1, {})
        self._inline_max = inline_video_max_bytes
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0 seconds, got {heartbeat_interval}")
        self._heartbeat_s = heartbeat_interval
        self._clock = clock
        self._random_seed = random_seed
        self._admitting = 0  # admitted submissions not yet in the job table (or failed)

    # --- helpers ----------------------------------------------------------------------------

    def _advertised_arch(self, model: str) -> ArchSpec:
        # Parsing every node's arch on every Submit cost milliseconds at a thousand nodes; what nodes
        # advertise changes far more rarely than their busy flags.
        revision, by_model = self._arch_cache
        if revision != self._registry.adverts_revision:
            by_model = {}
            self._arch_cache = (self._registry.adverts_revision, by_model)
        if model not in by_model:
            by_model[model] = advertised_arch(self._registry.records(), model)
        return by_model[model]

    async def _not_leader(self, context: grpc.aio.ServicerContext, why: str = "") -> NoReturn:
        me = self._leadership.member_id
        leader = self._leadership.leader
        if leader is not None and leader[0] != me and leader[1]:
            context.set_trailing_metadata(((LEADER_ADDR_METADATA, leader[1]),))
            message = f"coordinator {me} is a standby; the leader is {leader[0]} at {leader[1]}"
        else:
            message = f"coordinator {me} does not lead and no leader is known yet; retry in a second"
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{message}{f' ({why})' if why else ''}")
        raise AssertionError("abort returned")

    async def _epoch(self, context: grpc.aio.ServicerContext) -> int:
        epoch = self._leadership.epoch
        if epoch is None or self._dispatcher.epoch != epoch:
            await self._not_leader(context)
        return epoch

    async def _record(self, job_id: str, context: grpc.aio.ServicerContext) -> JobRecord:
        record = self._store.table.get(job_id)
        if record is None and job_id:
            try:
                record = await self._store.fetch(job_id)
            except (KVUnavailable, ValueError) as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read job {job_id}: {exc}; retry")
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, await self._not_found(job_id))
        assert record is not None
        return record

    async def _not_found(self, job_id: str) -> str:
        """NOT_FOUND's message: removed by retention (while its tombstone lasts), or never known."""
        tomb = None
        with contextlib.suppress(KVUnavailable, ValueError):
            tomb = await self._store.tombstone(job_id) if job_id else None
        if tomb is not None:
            return (
                f"job {job_id} finished at {_utc(tomb.finished_at)} and was removed by retention at "
                f"{_utc(tomb.expired_at)} ({tomb.reason}); submit it again for a new result"
            )
        return f"no job {job_id!r}; job ids are the SubmitResponse.job_id (or your request_id)"

    # --- Submit -----------------------------------------------------------------------------

    async def _submit(
        self, request: coordinator_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> tuple[JobRecord, bool]:
        epoch = await self._epoch(context)
        job_id = request.request_id or uuid.uuid4().hex
        if not _REQUEST_ID.match(job_id):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request_id: {job_id[:40]!r} is not allowed; use 1-128 letters, digits, '.', '_' or '-' "
                "starting with a letter or digit (a uuid4 hex is ideal), or leave it empty",
            )
        digest = request_digest(request.request)
        existing = self._store.table.get(job_id)  # open, or finished here lately (older: store.submit)
        if existing is not None:
            if existing.digest != digest:
                await context.abort(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"request_id {job_id!r} already names a different request; use a new request_id",
                )
            return existing, False
        gen = request.request
        try:
            if gen.image_uri:
                raise FieldError("image_uri", "is set by the coordinator; send the image bytes in `image`")
            norm = normalize(gen, self._limits, random_seed=self._random_seed)
            await asyncio.to_thread(decode_image, gen.image, self._limits)
        except FieldError as err:
            log.info("submit %s rejected: %s", job_id, err)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        nodes = self._registry.snapshot()
        need_bytes, tier = job_need(job_id, norm, self._arch_for(norm.model), nodes)
        need = JobNeed(job_id, need_bytes, tier, model=norm.model)
        depth = self._dispatcher.queue_depth() + self._admitting
        admission = admit(need, nodes, depth, self._dispatcher.config.max_queue)
        if not admission.accepted:
            # A retried submit of a job finished long ago (no longer in memory) is answered, not refused.
            with contextlib.suppress(KVUnavailable, ValueError):
                finished = await self._store.fetch(job_id)
                if finished is not None and finished.digest == digest:
                    return finished, False
            log.info("submit %s rejected: %s", job_id, admission.message)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, admission.message)
        # No await between the check and the reservation: that is what makes the bound exact.
        self._admitting += 1
        try:
            return await self._store_job(job_id, digest, gen, norm, need, epoch, admission.message, context)
        finally:
            self._admitting -= 1

    async def _store_job(
        self,
        job_id: str,
        digest: str,
        gen: common_pb2.GenerationRequest,
        norm: Normalized,
        need: JobNeed,
        epoch: int,
        admitted: str,
        context: grpc.aio.ServicerContext,
    ) -> tuple[JobRecord, bool]:
        """Store the image and commit the job (its queue slot is reserved by the caller)."""
        name = f"jobs/{job_id}/input-{digest[:16]}.{image_ext(gen.image)}"
        try:
            input_uri = await asyncio.to_thread(self._artifacts.put, name, gen.image)
        except (ArtifactError, OSError) as exc:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"cannot store the input image ({exc}); retry with the same request_id",
            )
        view = jobs.new_job(job_id, need.required_bytes, need.required_tier, norm.model, self._clock())
        record = JobRecord(view, stored_request(norm, input_uri), input_uri, digest)
        try:
            stored, created = await self._store.submit(record, epoch)
        except IdConflict as err:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(err))
        except Fenced as err:
            await self._not_leader(context, str(err))
        except KVUnavailable as err:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"etcd did not confirm the job ({err}); it may or may not be stored: "
                "retry with the same request_id (idempotent)",
            )
        log.info("submit %s %s: %s", job_id, "created" if created else "already known", admitted)
        self._dispatcher.wake()
        return stored, created

    async def Submit(
        self, request: coordinator_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.SubmitResponse:
        record, created = await self._submit(request, context)
        return coordinator_pb2.SubmitResponse(
            job_id=record.job_id,
            state=coordinator_pb2.JobState.ValueType(record.view.state),
            created=created,
            required_tier=common_pb2.Tier.ValueType(record.view.required_tier),
        )

    # --- Watch / Generate -------------------------------------------------------------------

    async def _follow(
        self, job_id: str, context: grpc.aio.ServicerContext, *, inline: bool
    ) -> AsyncIterator[coordinator_pb2.JobEvent]:
        """The job's current state, then its events until the final one, with a heartbeat after
        every `heartbeat_interval` of silence (the hub's order is kept: a heartbeat is only sent
        when no event is waiting)."""
        with self._hub.subscribe(job_id) as sub:
            record = await self._record(job_id, context)
            current = job_event(record, self._store.table)
            if record.view.final:
                yield await self._final(current, inline)
                return
            yield current
            last = current
            try:
                while True:
                    try:
                        async with asyncio.timeout(self._heartbeat_s):
                            event = await anext(sub)
                    except TimeoutError:
                        yield heartbeat_event(last)
                        continue
                    if event.state in FINAL_STATES:
                        yield await self._final(event, inline)
                        return
                    last = event
                    yield event
            except HubClosed as exc:
                await self._not_leader(context, str(exc))

    async def _final(self, event: coordinator_pb2.JobEvent, inline: bool) -> coordinator_pb2.JobEvent:
        uri = event.result.artifact_uri
        if not inline or not uri or event.result.video:
            return event
        try:
            video = await asyncio.to_thread(self._artifacts.get, uri)
        except (ArtifactError, OSError) as exc:
            log.info("job %s: video not inlined (%s); the result names %s", event.job_id, exc, uri)
            return event
        if len(video) > self._inline_max:
            return event
        out = coordinator_pb2.JobEvent()
        out.CopyFrom(event)
        out.result.video = video
        return out

    async def Watch(
        self, request: coordinator_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[coordinator_pb2.JobEvent]:
        await self._epoch(context)
        async for event in self._follow(request.job_id, context, inline=False):
            yield event

    async def Generate(
        self, request: coordinator_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[coordinator_pb2.JobEvent]:
        record, _ = await self._submit(request, context)
        async for event in self._follow(record.job_id, context, inline=True):
            yield event

    # --- Get / Cancel -----------------------------------------------------------------------

    async def Get(
        self, request: coordinator_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.Job:
        await self._epoch(context)
        record = await self._record(request.job_id, context)
        return job_message(record, job_event(record, self._store.table))

    async def Cancel(
        self, request: coordinator_pb2.CancelRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.Job:
        await self._epoch(context)
        await self._record(request.job_id, context)
        try:
            record = await self._dispatcher.cancel(request.job_id)
        except Fenced as err:
            await self._not_leader(context, str(err))
        except KVUnavailable as err:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"etcd did not confirm the cancel ({err}); retry"
            )
        if record is None:  # removed between the read above and the cancel
            await context.abort(grpc.StatusCode.NOT_FOUND, await self._not_found(request.job_id))
        assert record is not None
        if record.view.state in (SUCCEEDED, FAILED):
            # Cancelling a cancelled job answers it again (a retried Cancel is idempotent).
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, finished_message(record.view))
        return job_message(record, job_event(record, self._store.table))

    # --- cluster views (any coordinator) ----------------------------------------------------

    async def _list_page(
        self, states: frozenset[int], limit: int, phase: str, after: str
    ) -> tuple[list[JobRecord], str]:
        """One ListJobs page from bounded reads: open jobs newest first (the leader's table, or a
        paged read of jobs/ on a standby), then finished ones newest first from a read of at most
        about 4 x `limit` history/ keys (JobStore.history_page); the state filter applies within that
        read, so a page may be short."""
        out: list[JobRecord] = []
        if phase == OPEN:
            if not states or states & _OPEN_STATES:
                leading = self._leadership.epoch is not None
                records = self._store.table.jobs.values() if leading else await self._store.open_records()
                out, more = newest_open(records, states, limit, after)
                if more:
                    return out, page_token(OPEN, open_cursor(out[-1]))
            phase, after = HISTORY, ""
        if states and not states - _OPEN_STATES:
            return out, ""
        if len(out) == limit:
            return out, page_token(HISTORY, "")
        entries, more = await self._store.history_page(after, limit - len(out))
        out += [r for _, r in entries if not states or r.view.state in states]
        return out, page_token(HISTORY, entries[-1][0]) if more and entries else ""

    async def ListJobs(
        self, request: coordinator_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.ListJobsResponse:
        try:
            limit = list_limit(request.limit)
            states = state_filter(request.states)
            phase, after = parse_page_token(request.page_token, self._store.keys)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            records, token = await self._list_page(states, limit, phase, after)
        except (KVUnavailable, ValueError) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read jobs from etcd: {exc}; retry")
        # Stored results never hold the video (it stays in the artifact store), so nothing to strip.
        table = self._store.table
        return coordinator_pb2.ListJobsResponse(
            jobs=[job_message(r, job_event(r, table)) for r in records], next_page_token=token
        )

    async def ListNodes(
        self, request: coordinator_pb2.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.ListNodesResponse:
        running = {r.view.node_id: r.job_id for r in self._store.table.active()}
        infos = []
        for n in sorted(self._registry.snapshot(), key=lambda n: n.node_id):
            if not n.alive:
                continue
            health, standing = self._dispatcher.node_health(n)
            infos.append(
                coordinator_pb2.NodeInfo(
                    node_id=n.node_id,
                    addr=n.addr,
                    tier=common_pb2.Tier.ValueType(n.tier),
                    total_bytes=n.total_bytes,
                    free_bytes=n.free_bytes,
                    busy=n.busy,
                    job_id=running.get(n.node_id, ""),
                    model=n.model,
                    cooldown_s=standing.cooldown_s,
                    consecutive_failures=health.failures,
                    set_aside=health.set_aside,
                    health_reason=health.reason if health.failures else "",
                )
            )
        return coordinator_pb2.ListNodesResponse(nodes=infos)

    async def ClusterStatus(
        self, request: coordinator_pb2.ClusterStatusRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.ClusterStatusResponse:
        keys = self._store.keys
        try:
            leader_kv = await self._store.kv.get(keys.leader)
            member_kvs, _ = await self._store.kv.range_prefix(keys.members)
            states = [r.view.state for r in self._store.table.jobs.values()]
            if self._leadership.epoch is None:
                job_kvs, _ = await self._store.kv.range_prefix(keys.jobs)
                states = [decode_job(kv).view.state for kv in job_kvs]
        except (KVUnavailable, ValueError) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read cluster state from etcd: {exc}")
        leader_id, leader_addr, epoch = "", "", 0
        if leader_kv is not None:
            with contextlib.suppress(ValueError):
                record = LeaderRecord.from_json(leader_kv.value)
                leader_id, leader_addr = record.id, record.addr
            epoch = leader_kv.create_revision
        members = []
        for kv in member_kvs:
            member_id = keys.id_of(kv.key, keys.members)
            try:
                addr = MemberRecord.from_json(kv.value).addr
            except ValueError:
                addr = ""
            members.append(coordinator_pb2.Member(id=member_id, addr=addr, leader=member_id == leader_id))
        tiers: dict[int, list[int]] = {}
        cooling = set_aside = 0
        for node in self._registry.snapshot():
            if node.alive:
                count = tiers.setdefault(node.tier, [0, 0])
                count[0] += 1
                count[1] += int(node.busy)
                health, standing = self._dispatcher.node_health(node)
                set_aside += int(health.set_aside)
                cooling += int(not health.set_aside and standing.cooldown_s > 0)
        return coordinator_pb2.ClusterStatusResponse(
            leader_id=leader_id,
            leader_addr=leader_addr,
            epoch=epoch,
            members=members,
            tiers=[
                coordinator_pb2.TierCount(tier=common_pb2.Tier.ValueType(t), nodes=c[0], busy=c[1])
                for t, c in sorted(tiers.items())
            ],
            queued=sum(1 for s in states if s == QUEUED),
            running=sum(1 for s in states if s in ACTIVE_STATES),
            answered_by=self._leadership.member_id,
            nodes_cooling=cooling,
            nodes_set_aside=set_aside,
        )
