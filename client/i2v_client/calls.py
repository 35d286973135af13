"""A job through the coordinators seen the way the CLI sees a node's run: its final Result, its
events as Progress, and a `Call`/`Generator` pair over a CoordinatorClient."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from i2v_client.coordinator import CoordinatorClient
from i2v_client.download import save_downloaded
from i2v_client.errors import JobEnded
from i2v_client.request import checked
from i2v_client.retry import RetryPolicy
from i2v_client.streams import PauseCallback
from i2v_common.status import to_grpc
from i2v_common.tls import ClientTls
from i2v_contract.states import state_name
from i2v_contract.wire import common_pb2, coordinator_pb2

CANCEL_TIMEOUT_S = 5.0  # Ctrl-C's cancel: long enough for a failover's first hint, short for a person


def final_result(event: coordinator_pb2.JobEvent) -> common_pb2.Result:
    """The Result of a final event; JobEnded (a CallError) with the job's status code when it did not
    succeed."""
    if event.state == coordinator_pb2.JOB_STATE_SUCCEEDED:
        return checked(event.result)
    code = to_grpc(event.error_code)
    state = state_name(event.state).lower()
    message = f"job {event.job_id} {state}: {event.error or 'no detail given'}"
    raise JobEnded(code, message, job_id=event.job_id, state=event.state)


_STATE_STAGES = {
    coordinator_pb2.JOB_STATE_QUEUED: common_pb2.STAGE_QUEUED,
    coordinator_pb2.JOB_STATE_ASSIGNED: common_pb2.STAGE_ASSIGNED,
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
        """The last progress again, with `why` the stream broke as its note."""
        paused = common_pb2.Progress()
        paused.CopyFrom(self._last)
        paused.message = f"paused: {why}"
        self._show(paused)


class CoordinatorCall:
    """One `generate` through the coordinators, shaped like a node's GenerateCall for the CLI."""

    def __init__(
        self,
        client: CoordinatorClient,
        request: common_pb2.GenerationRequest,
        timeout: float | None,
        *,
        cancel_timeout_s: float = CANCEL_TIMEOUT_S,
    ) -> None:
        self._client = client
        self._request = request
        self._timeout = timeout
        self._cancel_timeout_s = cancel_timeout_s
        self.job_id = uuid.uuid4().hex

    def wait(
        self,
        on_progress: Callable[[common_pb2.Progress], None] | None = None,
        *,
        on_pause: PauseCallback | None = None,
    ) -> common_pb2.Result:
        """Follow the job; queue/assignment reach `on_progress` as Progress too, and so do re-attach
        pauses (as a note on the last progress) unless `on_pause` takes them."""
        line = ProgressLine(on_progress)
        final = self._client.generate(
            self._request,
            line.event,
            request_id=self.job_id,
            timeout=self._timeout,
            on_pause=line.pause if on_pause is None else on_pause,
        )
        return final_result(final)

    def save(self, result: common_pb2.Result, output: Path, frames_dir: Path | None = None) -> None:
        """Download the job's video to `output` and its stored frames to `frames_dir` (verified,
        resumed across broken streams)."""
        save_downloaded(self._client.download, self.job_id, result, output, frames_dir)

    def cancel(self) -> coordinator_pb2.Job | None:
        """Cancel the job on the cluster within `cancel_timeout_s`: the cancelled Job, or None when no
        coordinator was ever reached (so no job exists). CallError when the cancel failed: NOT_FOUND
        (the cluster has no such job), FAILED_PRECONDITION (it had ended), UNAVAILABLE, ..."""
        if not self._client.reached:
            return None
        return self._client.cancel(self.job_id, timeout=self._cancel_timeout_s)


class CoordinatorGenerator:
    """A Generator over coordinators: `i2v generate --target ADDR[,ADDR...]`."""

    def __init__(
        self,
        targets: str | Sequence[str],
        *,
        policy: RetryPolicy | None = None,
        token: str | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.client = CoordinatorClient(targets, policy=policy, token=token, tls=tls)

    def generate(
        self, request: common_pb2.GenerationRequest, *, timeout: float | None = None
    ) -> CoordinatorCall:
        return CoordinatorCall(self.client, request, timeout)

    def close(self) -> None:
        self.client.close()
