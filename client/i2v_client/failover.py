"""Which coordinator to call: the current address, leader hints, suspects, and unary calls retried
across addresses until the reconnect budget is spent."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import grpc

from i2v_client.channels import StubSource
from i2v_client.errors import CallError
from i2v_client.retry import Reconnect, RetryPolicy
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.wire import LEADER_ADDR_METADATA

log = logging.getLogger(__name__)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

T = TypeVar("T")


def parse_targets(text: str | Sequence[str]) -> list[str]:
    """'a:1,b:2' or ['a:1', 'b:2'] -> ['a:1', 'b:2'] (duplicates and blanks dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    targets = list(dict.fromkeys(t.strip() for t in items if t.strip()))
    if not targets:
        raise ValueError("no coordinator address given; use --target HOST:PORT[,HOST:PORT...]")
    return targets


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
    """The coordinator addresses and which one to call now; moves on after retryable failures."""

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
        self._stubs = stubs
        self._sleep = sleep
        self._current = 0
        self._suspect_until: dict[str, float] = {}

    @property
    def target(self) -> str:
        return self.targets[self._current]

    def stub(self) -> coordinator_pb2_grpc.CoordinatorStub:
        return self._stubs.stub(self.target)

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

    def move_on(self, code: grpc.StatusCode, detail: str, hint: str, reconnect: Reconnect, what: str) -> None:
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

    def rpc_failed(self, err: grpc.RpcError, reconnect: Reconnect, what: str) -> None:
        call: Any = err
        if call.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.suspect(self.target, f"did not answer {what} within its deadline")
        detail = call.details() or call.code().name
        self.move_on(call.code(), detail, leader_hint(err), reconnect, what)

    def unary(
        self, what: str, fn: Callable[[coordinator_pb2_grpc.CoordinatorStub, float], T], extra_s: float = 0.0
    ) -> T:
        """`fn(stub, timeout)` on the current target, moving on after retryable failures."""
        reconnect = self.reconnect()
        while True:
            timeout = max(0.05, min(self.policy.call_timeout_s + extra_s, reconnect.remaining()))
            try:
                response = fn(self.stub(), timeout)
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE:
                    raise CallError.from_rpc(err) from None
                self.rpc_failed(err, reconnect, what)
                continue
            self.answered()
            return response
