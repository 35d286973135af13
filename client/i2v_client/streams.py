"""Job streams (Watch, Generate) followed to their final event: re-opened after retryable failures
and after a silence that gives a frozen coordinator away."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import grpc

from i2v_client.errors import CallError
from i2v_client.failover import RETRYABLE, Failover
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.states import FINAL_STATES
from i2v_contract.wire import coordinator_pb2

EventCallback = Callable[[coordinator_pb2.JobEvent], None]
PauseCallback = Callable[[str], None]
OpenStream = Callable[[coordinator_pb2_grpc.CoordinatorStub], Iterable[coordinator_pb2.JobEvent]]


class IdleWatchdog:
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

    def __enter__(self) -> IdleWatchdog:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()
        self._thread.join()


class _Following:
    """One followed job across the streams opened for it: reads each, and says why one broke."""

    def __init__(
        self, failover: Failover, what: str, on_event: EventCallback | None, deadline: float | None
    ) -> None:
        self._failover = failover
        self._what = what
        self._on_event = on_event
        self._deadline = deadline
        self.reconnect = failover.reconnect()

    def read(self, call: Any, watchdog: IdleWatchdog) -> coordinator_pb2.JobEvent | None:
        """The final event, or None when the stream ended cleanly without one."""
        event: coordinator_pb2.JobEvent
        for event in call:
            watchdog.touch()
            self.reconnect.reset()
            self._failover.answered()
            if not event.heartbeat:
                if self._on_event is not None:
                    self._on_event(event)
                if event.state in FINAL_STATES:
                    return event
            if self._deadline is not None and self._failover.clock() > self._deadline:
                call.cancel()
                raise CallError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, f"{self._what}: timed out; the job goes on"
                )
            watchdog.touch()  # time spent in on_event is not the coordinator's silence
        return None

    def broken(self, err: grpc.RpcError, silent: bool) -> str:
        """Move on after a broken stream and say why; CallError when the failure is not retryable."""
        failover, what = self._failover, self._what
        lost = failover.target
        if silent:
            silence = f"sent nothing for {failover.policy.idle_timeout_s:g} s"
            failover.suspect(lost, f"{silence} on {what}")
            failover.move_on(grpc.StatusCode.UNAVAILABLE, f"{lost} {silence}", "", self.reconnect, what)
            why = silence
        elif err.code() in RETRYABLE:
            failover.rpc_failed(err, self.reconnect, what)
            why = f"answered {err.code().name}"
        else:
            raise CallError.from_rpc(err) from None
        return f"{lost} {why}; re-attaching via {failover.target}"


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
    first message of each stream may take `first_extra_s` longer (an upload)."""
    following = _Following(failover, what, on_event, deadline)
    while True:
        call: Any = open_stream(failover.stub())
        watchdog = IdleWatchdog(call, failover.policy.idle_timeout_s, first_extra_s)
        try:
            with watchdog:
                final = following.read(call, watchdog)
        except grpc.RpcError as err:
            why = following.broken(err, watchdog.fired)
            if on_pause is not None:
                on_pause(why)
            continue
        except BaseException:
            call.cancel()
            raise
        if final is not None:
            return final
        # A stream that ends without a final event: the server went away cleanly; re-attach.
        following.reconnect.next_delay(False)
