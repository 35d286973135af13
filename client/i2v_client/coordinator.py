"""Python client for the coordinators (synchronous gRPC, like NodeClient).

`CoordinatorClient(targets)` talks to whichever coordinator leads. A standby answers UNAVAILABLE
with trailing metadata `i2v-leader-addr`; the client goes there at once. Any other UNAVAILABLE
(connection refused, leader crashed, leadership moving) rotates to the next target with bounded
exponential backoff, until `RetryPolicy.reconnect_s` has passed without any coordinator answering
(`failover.py`). An address that does not connect within `RetryPolicy.connect_timeout_s` counts as
unreachable; until the client has reached any coordinator it gives up after `unreachable_s`
(0.5 s), naming every address and why, so a typo or a stopped cluster is said at once. Codes that
would fail again (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, UNAUTHENTICATED,
FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED, ...) are raised at once.

Submits carry a client-made request id (uuid4 hex) that the coordinator uses as the job id, so a
retried submit never makes a second job. `generate` uses the Generate stream (submit + watch; the
final event names the video, and `download` fetches it through the Download stream); when the
stream breaks it re-issues Generate with the same request id, which the new leader answers by
re-attaching to the existing job: a failover shows up as a pause in the progress, not as an error.

A frozen coordinator (SIGSTOPped, hung, behind a dead link) keeps its TCP connection open and says
nothing, so silence is the signal: the coordinators send a heartbeat on Watch and Generate streams
after 2 s without news, and a stream that brings nothing for `RetryPolicy.idle_timeout_s` (8 s) is
cancelled (`streams.py`); its target is then suspect for `RetryPolicy.suspect_s` (skipped in the
rotation, and a standby's leader hint naming it is ignored, since the standby keeps naming a frozen
leader until its lease expires) and the client re-attaches through the next target, as after
UNAVAILABLE. A unary call that runs past its deadline (`call_timeout_s`) makes its target suspect
the same way. A submit's first answer (Submit, or Generate's first event) may take longer by the
time its image needs to upload at `RetryPolicy.upload_floor_bps` (1 MiB/s), so a slow link is not
taken for a frozen peer. Channels send gRPC keepalive pings (every 10 s, 5 s to answer): a dead
connection fails by itself.

Heartbeats are for liveness only: `watch` and `generate` never pass them to `on_event`, so SDK
users and the progress bar see only real state, progress and final events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence

from i2v_client.addresses import parse_targets
from i2v_client.channels import CoordinatorChannels, StubSource
from i2v_client.download import Destination, Downloaded, ProgressCallback, download
from i2v_client.failover import Failover
from i2v_client.paging import JobPage, next_token
from i2v_client.ranged import read_range
from i2v_client.retry import RetryPolicy
from i2v_client.streams import EventCallback, PauseCallback, follow
from i2v_contract.wire import common_pb2, coordinator_pb2


class CoordinatorClient:
    def __init__(
        self,
        targets: str | Sequence[str],
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        stubs: StubSource | None = None,
    ) -> None:
        """`stubs` says how to reach one address (default: a keepalive gRPC channel each)."""
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._stubs = stubs or CoordinatorChannels()
        self._failover = Failover(
            parse_targets(targets, "coordinator address"), self.policy, self._stubs, sleep, clock
        )

    @property
    def targets(self) -> list[str]:
        """The addresses given, then any leader a standby named."""
        return self._failover.targets

    @property
    def target(self) -> str:
        return self._failover.target

    def suspects(self) -> set[str]:
        """Targets that went silent less than `suspect_s` ago."""
        return self._failover.suspects()

    @property
    def reached(self) -> bool:
        """Whether this client has connected to any coordinator yet (if not, it submitted nothing)."""
        return self._failover.reached

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else self._clock() + timeout

    def submit(
        self,
        request: common_pb2.GenerationRequest,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> coordinator_pb2.SubmitResponse:
        """Queue the job; `timeout` bounds the whole call, retries included (as for every unary call)."""
        submit = coordinator_pb2.SubmitRequest(request=request, request_id=request_id or uuid.uuid4().hex)
        response: coordinator_pb2.SubmitResponse = self._failover.unary(
            "submit",
            lambda stub, timeout: stub.Submit(submit, timeout=timeout),
            self.policy.upload_s(submit),
            self._deadline(timeout),
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
        deadline = self._deadline(timeout)
        request = coordinator_pb2.WatchRequest(job_id=job_id)
        return follow(
            self._failover, f"watch {job_id}", lambda stub: stub.Watch(request), on_event, deadline, on_pause
        )

    def generate(
        self,
        request: common_pb2.GenerationRequest,
        on_event: EventCallback | None = None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        on_pause: PauseCallback | None = None,
    ) -> coordinator_pb2.JobEvent:
        """Submit and follow to the end; the final event names the video (`download` fetches it).
        As in `watch`, `on_event` never hears heartbeats."""
        deadline = self._deadline(timeout)
        submit = coordinator_pb2.SubmitRequest(request=request, request_id=request_id or uuid.uuid4().hex)
        return follow(
            self._failover,
            f"job {submit.request_id}",
            lambda stub: stub.Generate(submit),
            on_event,
            deadline,
            on_pause,
            first_extra_s=self.policy.upload_s(submit),
        )

    def get(self, job_id: str, *, timeout: float | None = None) -> coordinator_pb2.Job:
        request = coordinator_pb2.GetRequest(job_id=job_id)
        job: coordinator_pb2.Job = self._failover.unary(
            "get", lambda stub, timeout: stub.Get(request, timeout=timeout), deadline=self._deadline(timeout)
        )
        return job

    def download(
        self,
        job_id: str,
        dest: Destination,
        *,
        what: str = "video",
        frame: int = 0,
        resume: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> Downloaded:
        """Write the job's video (`what="input"`: its input image; `"frame"`: stored frame `frame`)
        to `dest`, a path or an open binary file, through any coordinator; verified against its
        sha256 (CallError(DATA_LOSS) otherwise) and resumed from the bytes written when a stream
        breaks (download.py). A job that has not succeeded is FAILED_PRECONDITION."""
        return download(
            self._failover, job_id, dest, what=what, frame=frame, resume=resume, on_progress=on_progress
        )

    def read(
        self, job_id: str, *, offset: int = 0, limit: int = 0, what: str = "video", sha256: str = ""
    ) -> Iterator[bytes]:
        """`limit` bytes (0 = to the end) of the job's video from `offset`, as they arrive, resumed
        across broken streams (ranged.py); `sha256`, the job's digest, guards against other bytes."""
        return read_range(self._failover, job_id, offset=offset, limit=limit, what=what, sha256=sha256)

    def cancel(self, job_id: str, *, timeout: float | None = None) -> coordinator_pb2.Job:
        request = coordinator_pb2.CancelRequest(job_id=job_id)
        job: coordinator_pb2.Job = self._failover.unary(
            "cancel",
            lambda stub, timeout: stub.Cancel(request, timeout=timeout),
            deadline=self._deadline(timeout),
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
        response: coordinator_pb2.ListJobsResponse = self._failover.unary(
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
            page_token = next_token(page, page_token)
            if not page_token:
                return

    def list_nodes(self) -> coordinator_pb2.ListNodesResponse:
        request = coordinator_pb2.ListNodesRequest()
        response: coordinator_pb2.ListNodesResponse = self._failover.unary(
            "list nodes", lambda stub, timeout: stub.ListNodes(request, timeout=timeout)
        )
        return response

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse:
        request = coordinator_pb2.ClusterStatusRequest()
        response: coordinator_pb2.ClusterStatusResponse = self._failover.unary(
            "cluster status", lambda stub, timeout: stub.ClusterStatus(request, timeout=timeout)
        )
        return response

    def close(self) -> None:
        self._stubs.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
