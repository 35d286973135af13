"""The client-facing Coordinator service (coordinator.proto): the cluster's front door, as RPCs.

Only the leader serves jobs (Submit, Watch, Generate, Get, Cancel): a standby's front door
(entry.py) forwards them to the leader before they get here; what still arrives while this
coordinator does not lead is answered UNAVAILABLE with "coordinator C is a standby; the leader is L
at ADDR" and trailing metadata `i2v-leader-addr`. ListJobs, ListNodes and ClusterStatus are answered
by every coordinator (a standby reads the job table from etcd; with etcd out of reach ClusterStatus
answers from memory and says why in `etcd_error`), and so is Download (transfer.py), which the
front door never forwards: it needs only etcd and the artifact store. The work is elsewhere:
Submit's intake in admission.py, ListJobs paging in listing.py, the ListNodes and ClusterStatus
views in statusview.py; this module maps their outcomes to gRPC status codes.

Watch and Generate send a heartbeat (JobEvent.heartbeat, with the job's state and attempt as last
sent) whenever nothing else was sent for `heartbeat_interval` seconds (2 by default), so a client
can tell a quiet job from a frozen coordinator and move on when the stream goes silent.

Results go by reference: the final event of Watch and Generate, and Get, carry the Result with
`artifact_uri`, `video_size` and `sha256`, never the bytes (a video can be far over gRPC's default
4 MiB message limit); the client fetches them with Download.

With a tokens file (access.py) every call needs a known token: a client sees, follows, downloads
and cancels its own jobs only, and lists only those; ClusterStatus and ListNodes need an admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import NoReturn, Protocol

import grpc

from i2v_common import errors
from i2v_common.artifacts import ArtifactError, ArtifactStore
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract import auth
from i2v_contract.ids import check_job_id, quote
from i2v_contract.kv import KVUnavailable
from i2v_contract.limits import DEFAULT_LIMITS, RANDOM_SEED_MAX, FieldError, Limits
from i2v_contract.reasons import Reason, details, field_details
from i2v_contract.states import FAILED, FINAL_STATES, SUCCEEDED, state_name
from i2v_contract.wire import LEADER_ADDR_METADATA, common_pb2, coordinator_pb2
from i2v_coordinator import listing, statusview, transfer
from i2v_coordinator.access import Access
from i2v_coordinator.admission import Intake, Nodes, Refused, SubmitMetrics
from i2v_coordinator.dispatcher import Dispatcher
from i2v_coordinator.etcdhealth import EtcdHealth
from i2v_coordinator.jobstore import Fenced, JobStore
from i2v_coordinator.jobtable import job_event
from i2v_coordinator.messages import finished_message, heartbeat_event, job_message, utc_time
from i2v_coordinator.progress import HubClosed, ProgressHub
from i2v_coordinator.records import JobRecord
from i2v_coordinator.statusview import Roster
from i2v_coordinator.term import Term

log = logging.getLogger(__name__)

STATUS_ETCD_BUDGET_S = 3.0  # ClusterStatus answers from memory past this, well before a client's deadline
HEARTBEAT_INTERVAL_S = 2.0  # the bundled client gives up after 8 s of silence (RetryPolicy.idle_timeout_s)


class LeaderInfo(Protocol):
    """What the servicer reads of leadership.Leadership."""

    member_id: str

    @property
    def term(self) -> Term | None: ...

    @property
    def epoch(self) -> int | None: ...

    @property
    def leader(self) -> tuple[str, str] | None: ...

    async def roster(self) -> Roster: ...


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(
        self,
        leadership: LeaderInfo,
        registry: Nodes,
        store: JobStore,
        dispatcher: Dispatcher,
        hub: ProgressHub,
        artifacts: ArtifactStore,
        *,
        limits: Limits = DEFAULT_LIMITS,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        random_seed: Callable[[], int] = lambda: uuid.uuid4().int % (RANDOM_SEED_MAX + 1),
        etcd: EtcdHealth | None = None,
        metrics: SubmitMetrics | None = None,
        access: Access | None = None,
    ) -> None:
        self._leadership = leadership
        self._access = access or Access()
        self._etcd = etcd or EtcdHealth(())
        self._registry = registry
        self._store = store
        self._dispatcher = dispatcher
        self._hub = hub
        self._artifacts = artifacts
        self._intake = Intake(
            store,
            registry,
            dispatcher,
            artifacts,
            limits=limits,
            clock=clock,
            random_seed=random_seed,
            metrics=metrics,
            quotas=self._access.quotas,
        )
        self._downloads = transfer.Downloads(store, artifacts, self._not_found, self._access)
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0 seconds, got {heartbeat_interval}")
        self._heartbeat_s = heartbeat_interval

    # --- helpers ----------------------------------------------------------------------------

    async def _not_leader(self, context: grpc.aio.ServicerContext, why: str = "") -> NoReturn:
        me = self._leadership.member_id
        leader = self._leadership.leader
        hint: tuple[tuple[str, str], ...] = ()
        if leader is not None and leader[0] != me and leader[1]:
            hint = ((LEADER_ADDR_METADATA, leader[1]),)
            message = f"coordinator {me} is a standby; the leader is {leader[0]} at {leader[1]}"
            detail = details(Reason.NOT_LEADER, leader_id=leader[0], leader_addr=leader[1])
        else:
            message = f"coordinator {me} does not lead and no leader is known yet; retry in a second"
            detail = details(Reason.NO_LEADER)
        message = f"{message}{f' ({why})' if why else ''}"
        await errors.abort(context, grpc.StatusCode.UNAVAILABLE, message, detail, trailing_metadata=hint)

    async def _term(self, context: grpc.aio.ServicerContext) -> Term:
        """The term this coordinator leads and dispatches in; UNAVAILABLE (not the leader) otherwise."""
        term = self._leadership.term
        if term is None or self._dispatcher.term is not term:
            await self._not_leader(context)
        return term

    async def _record(
        self,
        job_id: str,
        context: grpc.aio.ServicerContext,
        who: auth.Principal = auth.OPEN,
        action: auth.Action = auth.Action.GET,
    ) -> JobRecord:
        """The job, if `who` may `action` it (PERMISSION_DENIED, the same for a missing job, if not)."""
        try:
            check_job_id("job_id", job_id)  # checked at the front door too; no key is built from it
        except FieldError as err:
            await errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, err.message, field_details(err))
        record = self._store.table.get(job_id)
        if record is None:
            try:
                record = await self._store.fetch(job_id)
            except KVUnavailable as exc:
                await errors.abort(
                    context,
                    grpc.StatusCode.UNAVAILABLE,
                    f"cannot read job {job_id}: {exc}; retry",
                    details(Reason.ETCD_UNAVAILABLE),
                )
            except ValueError as exc:  # a stored record that does not decode: retrying cannot help
                await context.abort(grpc.StatusCode.DATA_LOSS, f"job {job_id}'s record is unreadable: {exc}")
        await self._access.job(who, action, job_id, None if record is None else record.owner, context)
        if record is None:
            await self._not_found(job_id, context)
        assert record is not None
        return record

    async def _not_found(self, job_id: str, context: grpc.aio.ServicerContext) -> NoReturn:
        """NOT_FOUND: removed by retention (while its tombstone lasts), or never known."""
        tomb = None
        with contextlib.suppress(KVUnavailable, ValueError):
            tomb = await self._store.tombstone(job_id)
        if tomb is not None:
            message = (
                f"job {job_id} finished at {utc_time(tomb.finished_at)} and was removed by retention at "
                f"{utc_time(tomb.expired_at)} ({tomb.reason}); submit it again for a new result"
            )
            detail = details(Reason.JOB_EXPIRED, job_id=job_id)
        else:
            message = f"no job {quote(job_id)}; job ids are the SubmitResponse.job_id (or your request_id)"
            detail = details(Reason.JOB_NOT_FOUND, job_id=job_id)
        await errors.abort(context, grpc.StatusCode.NOT_FOUND, message, detail)

    # --- Submit -----------------------------------------------------------------------------

    async def _submit(
        self, request: coordinator_pb2.SubmitRequest, context: grpc.aio.ServicerContext, who: auth.Principal
    ) -> tuple[JobRecord, bool]:
        try:
            term = await self._term(context)
        except BaseException:  # the abort: this coordinator does not lead
            self._intake.metrics.rejected("no_leader")
            raise
        try:
            return await self._intake.submit(request, term, who)
        except Refused as err:
            await errors.abort(context, err.code, err.message, err.details)
        except Fenced as err:
            self._intake.metrics.rejected("no_leader")
            await self._not_leader(context, str(err))

    async def Submit(
        self, request: coordinator_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.SubmitResponse:
        record, created = await self._submit(request, context, await self._access.who(context))
        return coordinator_pb2.SubmitResponse(
            job_id=record.job_id,
            state=coordinator_pb2.JobState.ValueType(record.view.state),
            created=created,
            required_tier=common_pb2.Tier.ValueType(record.view.required_tier),
        )

    # --- Watch / Generate -------------------------------------------------------------------

    async def _follow(
        self, job_id: str, context: grpc.aio.ServicerContext, who: auth.Principal
    ) -> AsyncIterator[coordinator_pb2.JobEvent]:
        """The job's current state, then its events until the final one, with a heartbeat after
        every `heartbeat_interval` of silence (the hub's order is kept: a heartbeat is only sent
        when no event is waiting)."""
        with self._hub.subscribe(job_id) as sub:
            record = await self._record(job_id, context, who, auth.Action.WATCH)
            current = job_event(record, self._store.table)
            if record.view.final:
                yield await self._with_size(current)
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
                        yield await self._with_size(event)
                        return
                    last = event
                    yield event
            except HubClosed as exc:
                await self._not_leader(context, str(exc))

    async def _with_size(self, event: coordinator_pb2.JobEvent) -> coordinator_pb2.JobEvent:
        """The final event by reference, with the video's size (read from the store when the node
        did not report it)."""
        result = event.result
        if not result.artifact_uri or result.video_size:
            return event
        try:
            size = await asyncio.to_thread(self._artifacts.size, result.artifact_uri)
        except (ArtifactError, OSError) as exc:
            log.info("job %s: size of %s unknown (%s)", event.job_id, result.artifact_uri, exc)
            return event
        out = coordinator_pb2.JobEvent()
        out.CopyFrom(event)
        out.result.video_size = size
        return out

    async def Watch(
        self, request: coordinator_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[coordinator_pb2.JobEvent]:
        who = await self._access.who(context)
        await self._term(context)
        async with self._access.stream(who, context):
            async for event in self._follow(request.job_id, context, who):
                yield event

    async def Generate(
        self, request: coordinator_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[coordinator_pb2.JobEvent]:
        who = await self._access.who(context)
        async with self._access.stream(who, context):
            record, _ = await self._submit(request, context, who)
            async for event in self._follow(record.job_id, context, who):
                yield event

    # --- Get / Cancel -----------------------------------------------------------------------

    async def Get(
        self, request: coordinator_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.Job:
        who = await self._access.who(context)
        await self._term(context)
        record = await self._record(request.job_id, context, who, auth.Action.GET)
        return job_message(record, await self._with_size(job_event(record, self._store.table)))

    async def Cancel(
        self, request: coordinator_pb2.CancelRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.Job:
        who = await self._access.who(context)
        await self._term(context)
        await self._record(request.job_id, context, who, auth.Action.CANCEL)
        try:
            record = await self._dispatcher.cancel(request.job_id)
        except Fenced as err:
            await self._not_leader(context, str(err))
        except KVUnavailable as err:
            await errors.abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"etcd did not confirm the cancel ({err}); retry",
                details(Reason.ETCD_UNAVAILABLE),
            )
        if record is None:  # removed between the read above and the cancel
            await self._not_found(request.job_id, context)
        if record.view.state in (SUCCEEDED, FAILED):
            # Cancelling a cancelled job answers it again (a retried Cancel is idempotent).
            await errors.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                finished_message(record.view),
                details(Reason.JOB_FINISHED, job_id=request.job_id, state=state_name(record.view.state)),
            )
        return job_message(record, job_event(record, self._store.table))

    # --- cluster views (any coordinator) ----------------------------------------------------

    async def ListJobs(
        self, request: coordinator_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.ListJobsResponse:
        owner = auth.list_owner(await self._access.who(context))
        try:
            limit = listing.list_limit(request.limit)
            states = listing.state_filter(request.states)
            phase, after = listing.parse_page_token(request.page_token, self._store.keys)
        except FieldError as exc:
            await errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), field_details(exc))
        leading = self._leadership.epoch is not None
        table = self._store.table
        # Stored results never hold the video (it stays in the artifact store), so nothing to strip.
        made: dict[str, coordinator_pb2.Job] = {}

        def size_of(record: JobRecord) -> int:
            made[record.job_id] = job_message(record, job_event(record, table))
            return made[record.job_id].ByteSize() + 8  # with its tag and length in the response

        try:
            records, token = await listing.list_page(
                self._store, leading, states, limit, phase, after, size_of, owner=owner
            )
        except (KVUnavailable, ValueError) as exc:
            await errors.abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"cannot read jobs from etcd: {exc}; retry",
                details(Reason.ETCD_UNAVAILABLE),
            )
        return coordinator_pb2.ListJobsResponse(jobs=[made[r.job_id] for r in records], next_page_token=token)

    async def ListNodes(
        self, request: coordinator_pb2.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.ListNodesResponse:
        await self._access.fleet(await self._access.who(context), context)
        if self._leadership.epoch is not None:
            running = {r.view.node_id: r.job_id for r in self._store.table.active()}
        else:
            running = await self._running_from_etcd()
        nodes = statusview.node_infos(
            self._registry.snapshot(), running, self._dispatcher.node_health, self._registry.records()
        )
        return coordinator_pb2.ListNodesResponse(nodes=nodes)

    async def _running_from_etcd(self) -> dict[str, str]:
        """A standby's view of which node runs which job; none while etcd is out of reach (the
        nodes themselves are still listed, from the registry's memory)."""
        try:
            return await self._store.running_on()
        except KVUnavailable as err:
            log.info("ListNodes without job ids: etcd unreachable (%s)", err)
            return {}

    async def ClusterStatus(
        self, request: coordinator_pb2.ClusterStatusRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.ClusterStatusResponse:
        await self._access.fleet(await self._access.who(context), context)
        try:
            roster, states = await self._cluster_view()
        except ValueError as exc:  # an unreadable record
            await errors.abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"cannot read cluster state from etcd: {exc}",
                details(Reason.ETCD_UNAVAILABLE),
            )
        return statusview.cluster_status(
            roster,
            states,
            self._registry.snapshot(),
            self._dispatcher.node_health,
            self._leadership.member_id,
            etcd_error=self._etcd.error,
        )

    async def _cluster_view(self) -> tuple[Roster, list[int]]:
        """The roster and open jobs' states from etcd within STATUS_ETCD_BUDGET_S; while etcd does not
        answer, this coordinator's last view (leader as last seen, no members, its own table)."""
        states = [r.view.state for r in self._store.table.jobs.values()]
        if not self._etcd.error:
            try:
                async with asyncio.timeout(STATUS_ETCD_BUDGET_S):
                    roster = await self._leadership.roster()
                    if self._leadership.epoch is None:
                        states = [r.view.state for r in await self._store.open_records()]
                return roster, states
            except KVUnavailable as exc:
                self._etcd.observe(str(exc))
            except TimeoutError:
                self._etcd.observe(f"no answer within {STATUS_ETCD_BUDGET_S:g} s")
        leader_id, leader_addr = self._leadership.leader or ("", "")
        return Roster(leader_id, leader_addr, self._leadership.epoch or 0, ()), states

    # --- artifacts (any coordinator) --------------------------------------------------------

    async def Download(
        self, request: coordinator_pb2.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[coordinator_pb2.DownloadResponse]:
        who = await self._access.who(context)
        async with self._access.stream(who, context):
            async for response in self._downloads.serve(request, context, who):
                yield response
