"""Python client for the coordinators (synchronous gRPC, like client.NodeClient).

`CoordinatorClient(targets)` talks to whichever coordinator leads. A standby answers UNAVAILABLE
with trailing metadata `i2v-leader-addr`; the client goes there at once. Any other UNAVAILABLE
(connection refused, leader crashed, leadership moving) rotates to the next target with bounded
exponential backoff, until `RetryPolicy.reconnect_s` has passed without any coordinator answering.

Submits carry a client-made request id (uuid4 hex) that the coordinator uses as the job id, so a
retried submit never makes a second job. `generate` uses the Generate stream (submit + watch, with
the video inlined in the final event); when the stream breaks it re-issues Generate with the same
request id, which the new leader answers by re-attaching to the existing job: a failover shows up
as a pause in the progress, not as an error.

A frozen coordinator (SIGSTOPped, hung, behind a dead link) keeps its TCP connection open and says
nothing, so silence is the signal: the coordinators send a heartbeat on Watch and Generate streams
after 2 s without news, and a stream that brings nothing for `RetryPolicy.idle_timeout_s` (8 s) is
cancelled; its target is then suspect for `RetryPolicy.suspect_s` (skipped in the rotation, and a
standby's leader hint naming it is ignored, since the standby keeps naming a frozen leader until its
lease expires) and the client re-attaches through the next target, as after UNAVAILABLE. A unary call
that runs past its deadline (`call_timeout_s`) makes its target suspect the same way. A submit's
first answer (Submit, or Generate's first event) may take longer by the time its image needs to
upload at `RetryPolicy.upload_floor_bps` (1 MiB/s), so a slow link is not taken for a frozen peer.
Channels send gRPC keepalive pings (every 10 s, 5 s to answer): a dead connection fails by itself.

Heartbeats are for liveness only: `watch` and `generate` never pass them to `on_event`, so SDK
users and the progress bar see only real state, progress and final events.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc

from i2v_client.node_client import CallError, checked, open_channel
from i2v_common import keepalive
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_common.status import to_grpc
from i2v_contract.states import FINAL_STATES, state_name
from i2v_contract.tiers import tier_name
from i2v_contract.wire import LEADER_ADDR_METADATA, common_pb2, coordinator_pb2

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

T = TypeVar("T")
EventCallback = Callable[[coordinator_pb2.JobEvent], None]
PauseCallback = Callable[[str], None]


@dataclass(frozen=True)
class RetryPolicy:
    reconnect_s: float = 30.0  # give up when no coordinator answered for this long (> lease TTL + margin)
    call_timeout_s: float = 10.0  # one unary attempt
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    idle_timeout_s: float = 8.0  # a stream silent this long (4 missed 2 s heartbeats) is a frozen coordinator
    suspect_s: float = 15.0  # a silent target is avoided this long (> lease TTL + margin: a successor leads)
    upload_floor_bps: float = 1024 * 1024  # a submit's image may take this long to send on top of the bounds

    def upload_s(self, request: coordinator_pb2.SubmitRequest) -> float:
        """Extra time before a submit's first answer: its request uploaded at `upload_floor_bps`."""
        return request.ByteSize() / self.upload_floor_bps


def next_target(targets: Sequence[str], current: int, hint: str, suspects: Collection[str]) -> str:
    """Where to go after `targets[current]` failed: the leader `hint` unless it names the failed or a
    suspect target, else the next target in order that is not suspect (the next one if all are)."""
    if hint and hint != targets[current] and hint not in suspects:
        return hint
    ring = [targets[(current + i) % len(targets)] for i in range(1, len(targets) + 1)]
    return next((t for t in ring if t not in suspects), ring[0])


def parse_targets(text: str | Sequence[str]) -> list[str]:
    """'a:1,b:2' or ['a:1', 'b:2'] -> ['a:1', 'b:2'] (duplicates and blanks dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    targets = list(dict.fromkeys(t.strip() for t in items if t.strip()))
    if not targets:
        raise ValueError("no coordinator address given; use --target HOST:PORT[,HOST:PORT...]")
    return targets


def leader_hint(err: grpc.RpcError) -> str:
    call: Any = err
    try:
        metadata = call.trailing_metadata() or ()
    except Exception:
        return ""
    return next((str(v) for k, v in metadata if k == LEADER_ADDR_METADATA), "")


def final_result(event: coordinator_pb2.JobEvent) -> common_pb2.Result:
    """The Result of a final event; CallError with the job's status code when it did not succeed."""
    if event.state == coordinator_pb2.JOB_SUCCEEDED:
        return checked(event.result)
    code = to_grpc(event.error_code)
    state = state_name(event.state).lower()
    raise CallError(code, f"job {event.job_id} {state}: {event.error or 'no detail given'}")


class _Reconnect:
    """Backoff and give-up bookkeeping across reconnects; reset whenever a coordinator answers."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self._since = self._clock()
        self._backoff = self._policy.initial_backoff_s
        self._followed_hint = False

    def remaining(self) -> float:
        return self._since + self._policy.reconnect_s - self._clock()

    def next_delay(self, hinted: bool) -> float:
        """Pause before the next attempt: none for the first leader hint in a row."""
        if hinted and not self._followed_hint:
            self._followed_hint = True
            return 0.0
        self._followed_hint = hinted
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._policy.max_backoff_s)
        return delay


class _IdleWatchdog:
    """Cancels a streaming call that received nothing for `idle_s` seconds of real time.

    Use as a context manager around the iteration and `touch()` on every message; the first message
    may take `first_extra_s` longer. After a cancel it caused, `fired` is True (the iteration then
    ends with CANCELLED).
    """

    def __init__(self, call: Any, idle_s: float, first_extra_s: float = 0.0) -> None:
        self._call = call
        self._idle_s = idle_s
        self._last = time.monotonic() + first_extra_s  # the request may still be on its way
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="i2v-stream-idle", daemon=True)
        self.fired = False

    def touch(self) -> None:
        self._last = time.monotonic()

    def _run(self) -> None:
        while not self._stopped.wait(max(0.0, self._last + self._idle_s - time.monotonic())):
            if time.monotonic() - self._last >= self._idle_s:
                self.fired = True
                self._call.cancel()
                return

    def __enter__(self) -> _IdleWatchdog:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()
        self._thread.join()


@dataclass(frozen=True)
class JobPage:
    """One ListJobs page: its jobs, and the token of the next page ("" = this was the last)."""

    jobs: tuple[coordinator_pb2.Job, ...]
    next_page_token: str


class CoordinatorClient:
    def __init__(
        self,
        targets: str | Sequence[str],
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = parse_targets(targets)
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._current = 0
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, coordinator_pb2_grpc.CoordinatorStub] = {}
        self._suspect_until: dict[str, float] = {}

    @property
    def target(self) -> str:
        return self.targets[self._current]

    def _stub(self) -> coordinator_pb2_grpc.CoordinatorStub:
        target = self.target
        stub = self._stubs.get(target)
        if stub is None:
            self._channels[target] = open_channel(target, keepalive.CHANNEL_OPTIONS)
            stub = self._stubs[target] = coordinator_pb2_grpc.CoordinatorStub(self._channels[target])
        return stub

    def suspects(self) -> set[str]:
        """Targets that went silent less than `suspect_s` ago."""
        now = self._clock()
        return {t for t, until in self._suspect_until.items() if until > now}

    def _suspect(self, target: str, why: str) -> None:
        log.info("coordinator %s %s; avoiding it for %g s", target, why, self.policy.suspect_s)
        self._suspect_until[target] = self._clock() + self.policy.suspect_s

    def _answered(self) -> None:
        self._suspect_until.pop(self.target, None)

    def _failed(
        self, code: grpc.StatusCode, detail: str, hint: str, reconnect: _Reconnect, what: str
    ) -> None:
        """Pick the next target after a retryable failure, or raise when the budget is spent."""
        target = next_target(self.targets, self._current, hint, self.suspects())
        if target not in self.targets:
            self.targets.append(target)
        self._current = self.targets.index(target)
        delay = reconnect.next_delay(target == hint)
        if reconnect.remaining() < delay:
            raise CallError(
                code,
                f"{what}: no coordinator answered for {self.policy.reconnect_s:g} s "
                f"(tried {', '.join(self.targets)}); last error: {detail}",
            )
        if delay:
            self._sleep(delay)

    def _rpc_failed(self, err: grpc.RpcError, reconnect: _Reconnect, what: str) -> None:
        call: Any = err
        if call.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            self._suspect(self.target, f"did not answer {what} within its deadline")
        detail = call.details() or call.code().name
        self._failed(call.code(), detail, leader_hint(err), reconnect, what)

    def _unary(
        self, what: str, fn: Callable[[coordinator_pb2_grpc.CoordinatorStub, float], T], extra_s: float = 0.0
    ) -> T:
        reconnect = _Reconnect(self.policy, self._clock)
        while True:
            timeout = max(0.05, min(self.policy.call_timeout_s + extra_s, reconnect.remaining()))
            try:
                response = fn(self._stub(), timeout)
            except grpc.RpcError as err:
                if err.code() not in _RETRYABLE:
                    raise CallError.from_rpc(err) from None
                self._rpc_failed(err, reconnect, what)
                continue
            self._answered()
            return response

    def _stream(
        self,
        what: str,
        open_stream: Callable[[coordinator_pb2_grpc.CoordinatorStub], Iterable[coordinator_pb2.JobEvent]],
        on_event: EventCallback | None,
        deadline: float | None,
        on_pause: PauseCallback | None = None,
        first_extra_s: float = 0.0,
    ) -> coordinator_pb2.JobEvent:
        """Follow a job stream to its final event, re-opening it after retryable failures and after
        `idle_timeout_s` without any message. Heartbeats keep the stream alive and never reach
        `on_event`; on_pause hears why the stream broke each time it is about to be re-opened; the
        first message of each stream may take `first_extra_s` longer (an upload)."""
        reconnect = _Reconnect(self.policy, self._clock)
        while True:
            call: Any = open_stream(self._stub())
            event: coordinator_pb2.JobEvent
            try:
                with _IdleWatchdog(call, self.policy.idle_timeout_s, first_extra_s) as watchdog:
                    for event in call:
                        watchdog.touch()
                        reconnect.reset()
                        self._answered()
                        if not event.heartbeat:
                            if on_event is not None:
                                on_event(event)
                            if event.state in FINAL_STATES:
                                return event
                        if deadline is not None and self._clock() > deadline:
                            call.cancel()
                            raise CallError(
                                grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: timed out; the job goes on"
                            )
                        watchdog.touch()  # time spent in on_event is not the coordinator's silence
            except grpc.RpcError as err:
                lost = self.target
                if watchdog.fired:
                    silence = f"sent nothing for {self.policy.idle_timeout_s:g} s"
                    self._suspect(lost, f"{silence} on {what}")
                    self._failed(grpc.StatusCode.UNAVAILABLE, f"{lost} {silence}", "", reconnect, what)
                    why = silence
                elif err.code() in _RETRYABLE:
                    self._rpc_failed(err, reconnect, what)
                    why = f"answered {err.code().name}"
                else:
                    raise CallError.from_rpc(err) from None
                if on_pause is not None:
                    on_pause(f"{lost} {why}; re-attaching via {self.target}")
                continue
            except BaseException:
                call.cancel()
                raise
            # A stream that ends without a final event: the server went away cleanly; re-attach.
            reconnect.next_delay(False)

    # --- API ---------------------------------------------------------------------------------

    def submit(
        self, request: common_pb2.GenerationRequest, *, request_id: str | None = None
    ) -> coordinator_pb2.SubmitResponse:
        submit = coordinator_pb2.SubmitRequest(request=request, request_id=request_id or uuid.uuid4().hex)
        response: coordinator_pb2.SubmitResponse = self._unary(
            "submit", lambda stub, timeout: stub.Submit(submit, timeout=timeout), self.policy.upload_s(submit)
        )
        return response

    def watch(
        self,
        job_id: str,
        on_event: EventCallback | None = None,
        *,
        timeout: float | None = None,
        on_pause: PauseCallback | None = None,
    ) -> coordinator_pb2.JobEvent:
        """Follow the job to its end (re-attaching after failovers and silent coordinators); returns
        the final event. `on_event` hears state, progress and the final event, never heartbeats."""
        deadline = None if timeout is None else self._clock() + timeout
        request = coordinator_pb2.WatchRequest(job_id=job_id)
        return self._stream(f"watch {job_id}", lambda stub: stub.Watch(request), on_event, deadline, on_pause)

    def generate(
        self,
        request: common_pb2.GenerationRequest,
        on_event: EventCallback | None = None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        on_pause: PauseCallback | None = None,
    ) -> coordinator_pb2.JobEvent:
        """Submit and follow to the end; the final event inlines the video when the server can.
        As in `watch`, `on_event` never hears heartbeats."""
        deadline = None if timeout is None else self._clock() + timeout
        submit = coordinator_pb2.SubmitRequest(request=request, request_id=request_id or uuid.uuid4().hex)
        return self._stream(
            f"job {submit.request_id}",
            lambda stub: stub.Generate(submit),
            on_event,
            deadline,
            on_pause,
            first_extra_s=self.policy.upload_s(submit),
        )

    def get(self, job_id: str) -> coordinator_pb2.Job:
        request = coordinator_pb2.GetRequest(job_id=job_id)
        job: coordinator_pb2.Job = self._unary(
            "get", lambda stub, timeout: stub.Get(request, timeout=timeout)
        )
        return job

    def cancel(self, job_id: str) -> coordinator_pb2.Job:
        request = coordinator_pb2.CancelRequest(job_id=job_id)
        job: coordinator_pb2.Job = self._unary(
            "cancel", lambda stub, timeout: stub.Cancel(request, timeout=timeout)
        )
        return job

    def list_jobs(self, states: Sequence[int] = (), limit: int = 0, page_token: str = "") -> JobPage:
        """One page, newest first (open jobs, then finished ones newest-finished first); `states`
        empty = every state, `limit` 0 = the server's default (100, at most 1000). A page may be
        short, even empty, when a state filter skipped entries: keep going while it has a token."""
        request = coordinator_pb2.ListJobsRequest(
            states=list(states),  # type: ignore[arg-type]
            limit=limit,
            page_token=page_token,
        )
        response: coordinator_pb2.ListJobsResponse = self._unary(
            "list jobs", lambda stub, timeout: stub.ListJobs(request, timeout=timeout)
        )
        return JobPage(tuple(response.jobs), response.next_page_token)

    def job_pages(
        self, states: Sequence[int] = (), limit: int = 0, page_token: str = ""
    ) -> Iterator[JobPage]:
        """Every page from `page_token` ("" = the first) to the end."""
        while True:
            page = self.list_jobs(states, limit, page_token)
            yield page
            if not page.next_page_token:
                return
            if page.next_page_token == page_token:
                raise CallError(
                    grpc.StatusCode.INTERNAL, "list jobs: the server returned the same page token"
                )
            page_token = page.next_page_token

    def list_nodes(self) -> coordinator_pb2.ListNodesResponse:
        request = coordinator_pb2.ListNodesRequest()
        response: coordinator_pb2.ListNodesResponse = self._unary(
            "list nodes", lambda stub, timeout: stub.ListNodes(request, timeout=timeout)
        )
        return response

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse:
        request = coordinator_pb2.ClusterStatusRequest()
        response: coordinator_pb2.ClusterStatusResponse = self._unary(
            "cluster status", lambda stub, timeout: stub.ClusterStatus(request, timeout=timeout)
        )
        return response

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._stubs.clear()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_STATE_STAGES = {
    coordinator_pb2.JOB_QUEUED: common_pb2.STAGE_QUEUED,
    coordinator_pb2.JOB_ASSIGNED: common_pb2.STAGE_ASSIGNED,
}


class ProgressLine:
    """JobEvents -> Progress for a progress display.

    Node progress passes through; queued/assigned states become their stages; a broken stream
    repeats the last progress with a note, so a failover shows as a pause in the bar, not an error.
    Heartbeats (from a raw stream fed in directly) change nothing: they are not progress.
    """

    def __init__(
        self,
        on_progress: Callable[[common_pb2.Progress], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_progress = on_progress
        self._clock = clock
        self._started = clock()
        self._last = common_pb2.Progress(stage=common_pb2.STAGE_QUEUED)

    def _show(self, progress: common_pb2.Progress) -> None:
        self._last = progress
        if self._on_progress is not None:
            self._on_progress(progress)

    def event(self, event: coordinator_pb2.JobEvent) -> None:
        if event.heartbeat:
            return
        if event.HasField("progress"):
            self._show(event.progress)
        elif event.state in _STATE_STAGES:
            where = f"on {event.node_id}, attempt {event.attempt}" if event.node_id else ""
            self._show(
                common_pb2.Progress(
                    stage=_STATE_STAGES[event.state],
                    elapsed_s=self._clock() - self._started,
                    message=where,
                    node_id=event.node_id,
                    attempt=event.attempt,
                )
            )

    def pause(self, why: str) -> None:
        paused = common_pb2.Progress()
        paused.CopyFrom(self._last)
        paused.message = f"paused: {why}"
        self._show(paused)


class CoordinatorCall:
    """One `generate` through the coordinators, shaped like client.GenerateCall for the CLI."""

    def __init__(
        self, client: CoordinatorClient, request: common_pb2.GenerationRequest, timeout: float | None
    ) -> None:
        self._client = client
        self._request = request
        self._timeout = timeout
        self.job_id = uuid.uuid4().hex

    def wait(self, on_progress: Callable[[common_pb2.Progress], None] | None = None) -> common_pb2.Result:
        """Follow the job; queue/assignment and re-attach pauses reach `on_progress` as Progress too."""
        line = ProgressLine(on_progress)
        final = self._client.generate(
            self._request, line.event, request_id=self.job_id, timeout=self._timeout, on_pause=line.pause
        )
        return final_result(final)

    def cancel(self) -> None:
        """Cancel the job on the cluster (best effort: the job may not have been submitted yet)."""
        with contextlib.suppress(CallError):
            self._client.cancel(self.job_id)


class CoordinatorGenerator:
    """client.Generator over coordinators: `i2v generate --target ADDR[,ADDR...]`."""

    def __init__(self, targets: str | Sequence[str], *, policy: RetryPolicy | None = None) -> None:
        self.client = CoordinatorClient(targets, policy=policy)

    def generate(
        self, request: common_pb2.GenerationRequest, *, timeout: float | None = None
    ) -> CoordinatorCall:
        return CoordinatorCall(self.client, request, timeout)

    def close(self) -> None:
        self.client.close()


def _state(state: int) -> str:
    return state_name(state).lower()


def format_status(status: coordinator_pb2.ClusterStatusResponse) -> str:
    """`i2v status`: leader, epoch, members, nodes by tier, queue."""
    lines = [
        f"leader {status.leader_id or '(none)'} at {status.leader_addr or '-'}, epoch {status.epoch} "
        f"(answered by {status.answered_by})",
        "members: "
        + (", ".join(f"{m.id}{'*' if m.leader else ''} {m.addr}" for m in status.members) or "none"),
        "nodes: "
        + (
            ", ".join(f"{tier_name(t.tier)} {t.nodes} ({t.busy} busy)" for t in status.tiers)
            or "none registered"
        ),
        f"jobs: {status.queued} queued, {status.running} assigned or running",
    ]
    if status.nodes_cooling or status.nodes_set_aside:
        lines.append(
            f"held back: {status.nodes_cooling} cooling down, {status.nodes_set_aside} set aside "
            "after repeated failures (see the node table)"
        )
    return "\n".join(lines)


def parse_states(text: str) -> list[int]:
    """'queued,running' -> JobState values; ValueError naming the allowed words."""
    names = {
        _state(v): v for v in coordinator_pb2.JobState.values() if v != coordinator_pb2.JOB_STATE_UNSPECIFIED
    }
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    bad = [w for w in words if w not in names]
    if bad or not words:
        raise ValueError(
            f"unknown job state {', '.join(bad) or repr(text)}; use a comma-separated list of "
            + ", ".join(names)
        )
    return list(dict.fromkeys(names[w] for w in words))


def _clock_time(unix_s: float) -> str:
    if not unix_s:
        return "-"
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _took(job: coordinator_pb2.Job) -> str:
    if not job.finished_at or not job.created_at:
        return "-"
    return f"{job.finished_at - job.created_at:.1f}s"


def format_jobs(jobs: Sequence[coordinator_pb2.Job]) -> str:
    """`i2v jobs`: one line per job, newest first, with its outcome (video URI or error)."""
    if not jobs:
        return "no jobs"
    header = f"{'JOB':<32} {'STATE':<9} {'TRY':>3} {'NODE':<14} {'CREATED (UTC)':<20} {'TOOK':>7}  OUTCOME"
    lines = [header]
    for job in jobs:
        if job.state == coordinator_pb2.JOB_SUCCEEDED:
            outcome = job.result.artifact_uri
        else:
            outcome = job.error.splitlines()[0][:80] if job.error else ""
        lines.append(
            f"{job.job_id:<32} {_state(job.state):<9} {job.attempt:>3} {job.node_id or '-':<14} "
            f"{_clock_time(job.created_at):<20} {_took(job):>7}  {outcome}"
        )
    return "\n".join(lines)


def _node_health(n: coordinator_pb2.NodeInfo) -> str:
    if n.set_aside:
        return f"  SET ASIDE after {n.consecutive_failures} failed: {n.health_reason}"
    if n.cooldown_s > 0:
        return f"  cooling down {n.cooldown_s:.0f}s after {n.consecutive_failures} failed: {n.health_reason}"
    return ""


def format_nodes(nodes: coordinator_pb2.ListNodesResponse) -> str:
    """`i2v nodes`: one line per live node, with its dispatch health when it is held back."""
    gib = 1024**3
    return "\n".join(
        f"{n.node_id:<16} {n.addr:<22} tier {tier_name(n.tier):<6} free {n.free_bytes / gib:6.1f} / "
        f"{n.total_bytes / gib:6.1f} GiB  {'busy ' + n.job_id if n.busy or n.job_id else 'idle'}  {n.model}"
        f"{_node_health(n)}"
        for n in nodes.nodes
    )


def format_job(job: coordinator_pb2.Job) -> str:
    """`i2v get JOB` / `i2v cancel JOB`: the job's state and, when finished, its outcome."""
    line = f"{job.job_id} {_state(job.state)} attempt {job.attempt}"
    if job.node_id:
        line += f" on {job.node_id}"
    line += f", needs tier {tier_name(job.required_tier)}"
    if job.state == coordinator_pb2.JOB_SUCCEEDED:
        r = job.result
        line += f"\nvideo: {r.artifact_uri} (sha256 {r.sha256[:12]})"
        line += (
            f"\nproduced: {r.frames} frames {r.width}x{r.height} @ {r.fps} fps, {r.steps} steps, "
            f"seed {r.seed}, profile {r.profile}, took {_took(job)}"
        )
        if r.degradations:
            line += "\ndegraded: " + ", ".join(r.degradations)
    elif job.error:
        line += f"\nerror: {job.error}"
    return line
