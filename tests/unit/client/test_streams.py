from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

import grpc
import pytest

from i2v_client import CallError, Pause, Reach, RetryPolicy
from i2v_client.failover import Failover
from i2v_client.streams import follow
from i2v_contract.wire import coordinator_pb2
from tests.fakes.client import FakeRpcError, FakeStubs
from tests.fakes.clock import ManualClock


def _failover(
    policy: RetryPolicy | None = None, clock: ManualClock | None = None, stubs: FakeStubs | None = None
) -> Failover:
    return Failover(
        ["a:1", "b:2"], policy or RetryPolicy(), stubs or FakeStubs(), time.sleep, clock or time.monotonic
    )


class _Stream:
    def __init__(self, events: list[coordinator_pb2.JobEvent], fail: bool) -> None:
        self.events = events
        self.fail = fail
        self.error = FakeRpcError()

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        yield from self.events
        if self.fail:
            raise self.error

    def cancel(self) -> None:
        return None


def test_a_broken_stream_is_a_pause_then_re_attaches_to_the_next_target() -> None:
    failover = _failover(clock=ManualClock(0.0))
    running = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_RUNNING)
    done = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_SUCCEEDED)
    streams = iter([_Stream([running], fail=True), _Stream([running, done], fail=False)])
    seen: list[int] = []
    pauses: list[str] = []
    final = follow(
        failover, "watch j", lambda stub: next(streams), lambda e: seen.append(e.state), None, pauses.append
    )
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED
    assert seen == [
        coordinator_pb2.JOB_STATE_RUNNING,
        coordinator_pb2.JOB_STATE_RUNNING,
        coordinator_pb2.JOB_STATE_SUCCEEDED,
    ]
    assert pauses == ["a:1 answered UNAVAILABLE; re-attaching via b:2"]


class _Frozen:
    """A stream that sends `events`, then nothing until cancelled (a SIGSTOPped coordinator)."""

    def __init__(self, events: Iterable[coordinator_pb2.JobEvent] = ()) -> None:
        self.events = list(events)
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        yield from self.events
        assert self.cancelled.wait(5), "the idle bound never cancelled the silent stream"
        raise FakeRpcError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")

    def cancel(self) -> None:
        self.cancelled.set()


class _Beating:
    """A stream that sends heartbeats every `every_s` for `for_s`, then the final event."""

    def __init__(self, every_s: float, for_s: float) -> None:
        self.every_s, self.for_s = every_s, for_s

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        end = time.monotonic() + self.for_s
        while time.monotonic() < end:
            time.sleep(self.every_s)
            yield coordinator_pb2.JobEvent(
                job_id="j", state=coordinator_pb2.JOB_STATE_RUNNING, heartbeat=True
            )
        yield coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_SUCCEEDED)

    def cancel(self) -> None:
        return None


def test_a_silent_stream_is_cancelled_and_the_job_re_attached_elsewhere() -> None:
    failover = _failover(RetryPolicy(idle_timeout_s=0.3, suspect_s=60.0))
    running = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_RUNNING)
    done = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_SUCCEEDED)
    frozen = _Frozen([running])
    # b is still a standby that names the frozen a as leader; the client must not go back there.
    hinting = _Stream([], fail=True)
    hinting.error = FakeRpcError(hint="a:1")
    streams = iter([frozen, hinting, _Stream([done], fail=False)])
    opened_on: list[str] = []

    def open_stream(stub: object) -> object:
        opened_on.append(failover.target)
        return next(streams)

    pauses: list[str] = []
    started = time.monotonic()
    final = follow(failover, "watch j", open_stream, None, None, pauses.append)  # type: ignore[arg-type]
    took = time.monotonic() - started
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED
    assert frozen.cancelled.is_set() and 0.3 <= took < 2.0
    assert opened_on == ["a:1", "b:2", "b:2"]
    assert failover.suspects() == {"a:1"}
    assert pauses[0] == "a:1 sent nothing for 0.3 s; re-attaching via b:2"


def test_heartbeats_keep_a_quiet_stream_open_and_never_reach_on_event() -> None:
    failover = _failover(RetryPolicy(idle_timeout_s=0.3))
    seen: list[coordinator_pb2.JobEvent] = []
    pauses: list[str] = []
    final = follow(
        failover, "watch j", lambda stub: _Beating(every_s=0.05, for_s=0.9), seen.append, None, pauses.append
    )
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED
    assert [e.state for e in seen] == [coordinator_pb2.JOB_STATE_SUCCEEDED] and not pauses
    assert failover.target == "a:1" and not failover.suspects()


class _Slow:
    """A stream whose first (final) event comes after `first_after_s`, unless cancelled before."""

    def __init__(self, first_after_s: float) -> None:
        self.first_after_s = first_after_s
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        if self.cancelled.wait(self.first_after_s):
            raise FakeRpcError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
        yield coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_SUCCEEDED)

    def cancel(self) -> None:
        self.cancelled.set()


@pytest.mark.parametrize(
    ("first_extra_s", "streams_opened"),
    [
        pytest.param(0.4, 1, id="upload-time-covers-the-slow-first-event"),
        pytest.param(0.0, 2, id="without-it-the-stream-is-taken-for-frozen"),
    ],
)
def test_the_first_message_may_wait_for_the_upload(first_extra_s: float, streams_opened: int) -> None:
    failover = _failover(RetryPolicy(idle_timeout_s=0.3))
    done = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_SUCCEEDED)
    streams = iter([_Slow(first_after_s=0.5), _Stream([done], fail=False)])
    opened: list[str] = []

    def open_stream(stub: object) -> object:
        opened.append(failover.target)
        return next(streams)

    final = follow(failover, "job j", open_stream, None, None, first_extra_s=first_extra_s)  # type: ignore[arg-type]
    assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and len(opened) == streams_opened


def test_a_pause_reads_as_one_sentence_and_keeps_its_parts() -> None:
    pause = Pause("a:1", "answered UNAVAILABLE", "b:2")
    assert pause == "a:1 answered UNAVAILABLE; re-attaching via b:2"
    assert (pause.lost, pause.reason, pause.next) == ("a:1", "answered UNAVAILABLE", "b:2")


def test_the_deadline_ends_a_stream_that_sends_nothing() -> None:
    failover = _failover(RetryPolicy(idle_timeout_s=30.0))  # silence alone would take 30 s
    queued = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_STATE_QUEUED)
    frozen = _Frozen([queued])
    started = time.monotonic()
    with pytest.raises(CallError) as err:
        follow(failover, "job j", lambda stub: frozen, None, time.monotonic() + 0.3)
    took = time.monotonic() - started
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and 0.3 <= took < 1.5
    assert err.value.message.startswith("job j: timed out after 0.3 s while it was queued; the job goes on")
    assert frozen.cancelled.is_set()


def test_the_deadline_holds_while_no_coordinator_answers() -> None:
    stubs = FakeStubs(unreachable={"a:1": Reach.SILENT, "b:2": Reach.SILENT})
    failover = _failover(RetryPolicy(connect_timeout_s=0.1), stubs=stubs)
    with pytest.raises(CallError) as err:
        follow(failover, "job j", lambda stub: _Stream([], fail=False), None, time.monotonic() + 0.2)
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "before any coordinator was reached, so nothing was submitted" in err.value.message


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(grpc.StatusCode.NOT_FOUND, id="not-found"),
        pytest.param(grpc.StatusCode.UNIMPLEMENTED, id="unimplemented"),
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, id="invalid-argument"),
        pytest.param(grpc.StatusCode.PERMISSION_DENIED, id="permission-denied"),
    ],
)
def test_a_stream_is_not_reopened_after_an_answer_that_would_repeat(code: grpc.StatusCode) -> None:
    failover = _failover()
    stream = _Stream([], fail=True)
    stream.error = FakeRpcError(code, "no job 'j'", hint="b:2")
    opened: list[str] = []

    def open_stream(stub: object) -> object:
        opened.append(failover.target)
        return stream

    with pytest.raises(CallError) as err:
        follow(failover, "watch j", open_stream)  # type: ignore[arg-type]
    assert opened == ["a:1"] and (err.value.code, err.value.address) == (code, "a:1")
