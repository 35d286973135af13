"""Which coordinator to call: the current address, whether it connects, leader hints, suspects, and
unary calls retried across addresses until the reconnect budget or the caller's deadline is spent."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import grpc

from i2v_client.channels import Reach, StubSource
from i2v_client.errors import CallError, DeadlinePassed
from i2v_client.retry import Reconnect, RetryPolicy, retryable
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.wire import LEADER_ADDR_METADATA

log = logging.getLogger(__name__)

T = TypeVar("T")


def next_target(targets: Sequence[str], current: int, hint: str, suspects: Collection[str]) -> str:
    """Where to go after `targets[current]` failed: the leader `hint` unless it names the failed or a
    suspect target, else the next target in order that is not suspect (the next one if all are)."""
    if hint and hint != targets[current] and hint not in suspects:
        return hint
    ring = [targets[(current + i) % len(targets)] for i in range(1, len(targets) + 1)]
    return next((t for t in ring if t not in suspects), ring[0])


def leader_hint(err: grpc.RpcError) -> str:
    call: Any = err
    try:
        metadata = call.trailing_metadata() or ()
    except Exception:
        return ""
    return next((str(v) for k, v in metadata if k == LEADER_ADDR_METADATA), "")


class Failover:
    """The coordinator addresses and which one to call now; moves on after retryable failures.

    `reached` turns True at the first connection: until then the short `unreachable_s` budget
    applies, so an address nobody serves is reported at once; after it, `reconnect_s` rides out a
    failover. `deadline` arguments are on `clock`; passing one raises DeadlinePassed.
    """

    def __init__(
        self,
        targets: list[str],
        policy: RetryPolicy,
        stubs: StubSource,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.targets = targets
        self.policy = policy
        self.clock = clock
        self.reached = False
        self._stubs = stubs
        self._sleep = sleep
        self._current = 0
        self._suspect_until: dict[str, float] = {}
        self._unreachable: dict[str, str] = {}

    @property
    def target(self) -> str:
        return self.targets[self._current]

    def reconnect(self) -> Reconnect:
        """A fresh backoff and give-up budget for one call."""
        return Reconnect(self.policy, self.clock)

    def suspects(self) -> set[str]:
        """Targets that went silent less than `suspect_s` ago."""
        now = self.clock()
        return {t for t, until in self._suspect_until.items() if until > now}

    def suspect(self, target: str, why: str) -> None:
        log.info("coordinator %s %s; avoiding it for %g s", target, why, self.policy.suspect_s)
        self._suspect_until[target] = self.clock() + self.policy.suspect_s

    def answered(self) -> None:
        self._suspect_until.pop(self.target, None)

    def left(self, deadline: float | None, what: str) -> float | None:
        """Seconds to `deadline` (None: no deadline); DeadlinePassed when none are left."""
        if deadline is None:
            return None
        left = deadline - self.clock()
        if left <= 0:
            raise DeadlinePassed(f"{what}: the deadline passed")
        return left

    def connected(
        self, reconnect: Reconnect, what: str, deadline: float | None = None
    ) -> coordinator_pb2_grpc.CoordinatorStub:
        """The stub of the first target that connects, moving on past those that do not."""
        while True:
            target = self.target
            left = self.left(deadline, what)
            limit = (
                self.policy.connect_timeout_s if left is None else min(self.policy.connect_timeout_s, left)
            )
            reach, why = self._stubs.connect(target, limit)
            if reach is Reach.CONNECTED:
                self.reached = True
                self._unreachable.pop(target, None)
                return self._stubs.stub(target)
            self._unreachable[target] = why
            if reach is Reach.SILENT:
                self.suspect(target, why)
            self.move_on(grpc.StatusCode.UNAVAILABLE, f"{target} {why}", "", reconnect, what, deadline)

    def _give_up(self, code: grpc.StatusCode, detail: str, what: str) -> CallError:
        if not self.reached:
            tried = "; ".join(f"{t} {why}" for t, why in self._unreachable.items())
            return CallError(code, f"{what}: cannot reach any coordinator: {tried}")
        return CallError(
            code,
            f"{what}: no coordinator answered for {self.policy.reconnect_s:g} s "
            f"(tried {', '.join(self.targets)}); last error: {detail}",
        )

    def move_on(
        self,
        code: grpc.StatusCode,
        detail: str,
        hint: str,
        reconnect: Reconnect,
        what: str,
        deadline: float | None = None,
    ) -> None:
        """Pick the next target after a retryable failure, or raise when the budget is spent."""
        target = next_target(self.targets, self._current, hint, self.suspects())
        if target not in self.targets:
            self.targets.append(target)
        self._current = self.targets.index(target)
        delay = reconnect.next_delay(target == hint)
        tried_all = self.reached or len(self._unreachable) >= len(self.targets)
        if reconnect.remaining(self.reached) < delay and tried_all:
            raise self._give_up(code, detail, what)
        left = self.left(deadline, what)
        if left is not None and left <= delay:
            raise DeadlinePassed(f"{what}: the deadline passed; last error: {detail}")
        if delay:
            self._sleep(delay)

    def rpc_failed(
        self, err: grpc.RpcError, reconnect: Reconnect, what: str, deadline: float | None = None
    ) -> None:
        call: Any = err
        self.left(deadline, what)  # a call cut short by the caller's deadline is not the server's fault
        if call.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.suspect(self.target, f"did not answer {what} within its deadline")
        detail = call.details() or call.code().name
        self.move_on(call.code(), detail, leader_hint(err), reconnect, what, deadline)

    def unary(
        self,
        what: str,
        fn: Callable[[coordinator_pb2_grpc.CoordinatorStub, float], T],
        extra_s: float = 0.0,
        deadline: float | None = None,
    ) -> T:
        """`fn(stub, timeout)` on the current target, moving on after retryable failures; codes that
        would fail again (NOT_FOUND, INVALID_ARGUMENT, UNIMPLEMENTED, ...) are raised at once."""
        reconnect = self.reconnect()
        while True:
            stub = self.connected(reconnect, what, deadline)
            timeout = max(0.05, min(self.policy.call_timeout_s + extra_s, reconnect.remaining()))
            left = self.left(deadline, what)
            try:
                response = fn(stub, timeout if left is None else min(timeout, left))
            except grpc.RpcError as err:
                if not retryable(err.code()):
                    raise CallError.from_rpc(err, self.target) from None
                self.rpc_failed(err, reconnect, what, deadline)
                continue
            self.answered()
            return response
