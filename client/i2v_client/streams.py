"""Job streams (Watch, Generate) followed to their final event: re-opened after retryable failures
and after a silence that gives a frozen coordinator away, and ended by the caller's deadline even
while nothing arrives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import grpc

from i2v_client.errors import CallError, DeadlinePassed
from i2v_client.failover import Failover
from i2v_client.retry import retryable
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.states import FINAL_STATES, stage_name, state_name
from i2v_contract.wire import coordinator_pb2


class Pause(str):
    """Why a job stream broke and where the client re-attaches. It reads as one sentence
    ("a:1 answered UNAVAILABLE; re-attaching via b:2") and keeps its parts: `lost` (the coordinator
    left), `reason` and `next` (the one tried now)."""

    lost: str
    reason: str
    next: str

    def __new__(cls, lost: str, reason: str, next_target: str) -> Pause:
        pause = super().__new__(cls, f"{lost} {reason}; re-attaching via {next_target}")
        pause.lost, pause.reason, pause.next = lost, reason, next_target
        return pause


EventCallback = Callable[[coordinator_pb2.JobEvent], None]
PauseCallback = Callable[[Pause], None]
OpenStream = Callable[[coordinator_pb2_grpc.CoordinatorStub], Iterable[coordinator_pb2.JobEvent]]


class IdleWatchdog:
    """Cancels a streaming call that received nothing for `idle_s` seconds of real time, or that is
    still open `deadline_s` seconds from now.

    Use as a context manager around the iteration and `touch()` on every message; the first message
    may take `first_extra_s` longer. After a cancel it caused, `fired` (silence) or `expired` (the
    deadline) is True, and the iteration ends with CANCELLED.
    """

    def __init__(
        self, call: Any, idle_s: float, first_extra_s: float = 0.0, deadline_s: float | None = None
    ) -> None:
        self._call = call
        self._idle_s = idle_s
        self._last = time.monotonic() + first_extra_s  # the request may still be on its way
        self._deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="i2v-stream-idle", daemon=True)
        self.fired = False
        self.expired = False

    def touch(self) -> None:
        self._last = time.monotonic()

    def _wake_at(self) -> float:
        idle_at = self._last + self._idle_s
        return idle_at if self._deadline is None else min(idle_at, self._deadline)

    def _run(self) -> None:
        while not self._stopped.wait(max(0.0, self._wake_at() - time.monotonic())):
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                self.expired = True
            elif now - self._last >= self._idle_s:
                self.fired = True
            else:
                continue
            self._call.cancel()
            return

    def __enter__(self) -> IdleWatchdog:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()
        self._thread.join()


def _where(event: coordinator_pb2.JobEvent | None, reached: bool) -> str:
    """Where a followed job stood, for a timeout's message."""
    if event is None:
        if not reached:
            return "before any coordinator was reached, so nothing was submitted"
        return "before the job's first event"
    state = state_name(event.state).lower()
    p = event.progress
    if event.HasField("progress") and p.total_steps:
        state += f" ({stage_name(p.stage)} {p.step}/{p.total_steps})"
    return f"while it was {state}; the job goes on"


class _Following:
    """One followed job across the streams opened for it: reads each, and says why one broke."""

    def __init__(
        self, failover: Failover, what: str, on_event: EventCallback | None, deadline: float | None
    ) -> None:
        self._failover = failover
        self._what = what
        self._on_event = on_event
        self.deadline = deadline
        self._timeout = 0.0 if deadline is None else deadline - failover.clock()
        self.last: coordinator_pb2.JobEvent | None = None
        self.reconnect = failover.reconnect()

    def read(self, call: Any, watchdog: IdleWatchdog) -> coordinator_pb2.JobEvent | None:
        """The final event, or None when the stream ended cleanly without one."""
        event: coordinator_pb2.JobEvent
        for event in call:
            watchdog.touch()
            self.reconnect.reset()
            self._failover.answered()
            if not event.heartbeat:
                self.last = event
                if self._on_event is not None:
                    self._on_event(event)
                if event.state in FINAL_STATES:
                    return event
            watchdog.touch()  # time spent in on_event is not the coordinator's silence
        return None

    def seconds_left(self) -> float | None:
        return self._failover.left(self.deadline, self._what)

    def timed_out(self) -> CallError:
        where = _where(self.last, self._failover.reached)
        return CallError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"{self._what}: timed out after {round(self._timeout, 1):g} s {where}",
        )

    def broken(self, err: grpc.RpcError, silent: bool) -> Pause:
        """Move on after a broken stream and say why; CallError when the failure is not retryable."""
        failover, what = self._failover, self._what
        lost = failover.target
        if silent:
            silence = f"sent nothing for {failover.policy.idle_timeout_s:g} s"
            failover.suspect(lost, f"{silence} on {what}")
            failover.move_on(
                grpc.StatusCode.UNAVAILABLE, f"{lost} {silence}", "", self.reconnect, what, self.deadline
            )
            why = silence
        elif retryable(err.code()):
            failover.rpc_failed(err, self.reconnect, what, self.deadline)
            why = f"answered {err.code().name}"
        else:
            raise CallError.from_rpc(err, lost) from None
        return Pause(lost, why, failover.target)


def follow(
    failover: Failover,
    what: str,
    open_stream: OpenStream,
    on_event: EventCallback | None = None,
    deadline: float | None = None,
    on_pause: PauseCallback | None = None,
    first_extra_s: float = 0.0,
) -> coordinator_pb2.JobEvent:
    """Follow a job stream to its final event, re-opening it after retryable failures and after
    `idle_timeout_s` without any message. Heartbeats keep the stream alive and never reach
    `on_event`; on_pause hears why the stream broke each time it is about to be re-opened; the
    first message of each stream may take `first_extra_s` longer (an upload). `deadline` (on the
    failover's clock) ends it with DEADLINE_EXCEEDED whether or not anything arrives."""
    following = _Following(failover, what, on_event, deadline)
    try:
        while True:
            call: Any = open_stream(failover.connected(following.reconnect, what, deadline))
            watchdog = IdleWatchdog(
                call, failover.policy.idle_timeout_s, first_extra_s, following.seconds_left()
            )
            try:
                with watchdog:
                    final = following.read(call, watchdog)
            except grpc.RpcError as err:
                if watchdog.expired:
                    raise following.timed_out() from None
                pause = following.broken(err, watchdog.fired)
                if on_pause is not None:
                    on_pause(pause)
                continue
            except BaseException:
                call.cancel()
                raise
            if final is not None:
                return final
            # A stream that ends without a final event: the server went away cleanly; re-attach.
            following.reconnect.next_delay(False)
    except DeadlinePassed:
        raise following.timed_out() from None
