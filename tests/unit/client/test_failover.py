from __future__ import annotations

import grpc
import pytest

from i2v_client import CallError, DeadlinePassed, Reach, RetryPolicy, parse_targets
from i2v_client.failover import Failover, next_target
from i2v_common.errors import status_proto
from i2v_contract.reasons import ErrorDetails, FieldViolation
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.fakes.client import FakeRpcError, FakeStubs
from tests.fakes.clock import ManualClock


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("a:1", ["a:1"], id="one"),
        pytest.param("a:1, b:2,,a:1", ["a:1", "b:2"], id="blanks-and-duplicates-dropped"),
        pytest.param(["b:2", " a:1 "], ["b:2", "a:1"], id="a-list-in-its-order"),
    ],
)
def test_parse_targets(given: str | list[str], expected: list[str]) -> None:
    assert parse_targets(given) == expected


def test_parse_targets_needs_one() -> None:
    with pytest.raises(ValueError, match="--target"):
        parse_targets(" , ")


@pytest.mark.parametrize(
    ("current", "hint", "suspects", "expected"),
    [
        pytest.param(0, "", set(), "b:2", id="plain-rotation"),
        pytest.param(2, "", set(), "a:1", id="rotation-wraps"),
        pytest.param(0, "c:3", set(), "c:3", id="a-leader-hint-wins"),
        pytest.param(0, "d:4", set(), "d:4", id="even-one-the-client-was-not-given"),
        pytest.param(0, "a:1", set(), "b:2", id="a-hint-naming-the-failed-target-is-no-news"),
        pytest.param(1, "a:1", {"a:1"}, "c:3", id="a-standby-still-names-a-frozen-leader"),
        pytest.param(0, "", {"b:2"}, "c:3", id="a-suspect-is-skipped"),
        pytest.param(0, "", {"a:1", "b:2", "c:3"}, "b:2", id="all-suspect-plain-rotation"),
    ],
)
def test_next_target(current: int, hint: str, suspects: set[str], expected: str) -> None:
    assert next_target(["a:1", "b:2", "c:3"], current, hint, suspects) == expected


def test_a_unary_call_past_its_deadline_makes_its_target_suspect_and_moves_on() -> None:
    clock = ManualClock(0.0)
    failover = Failover(["a:1", "b:2"], RetryPolicy(), FakeStubs(), clock.advance, clock)
    tried: list[tuple[str, float]] = []

    def call(stub: object, timeout: float) -> str:
        tried.append((failover.target, timeout))
        if failover.target == "a:1":
            clock.advance(timeout)
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if len(tried) == 2:  # b is still a standby naming a as leader: not followed while suspect
            raise FakeRpcError(hint="a:1")
        return "ok"

    assert failover.unary("get", call) == "ok"
    assert [t for t, _ in tried] == ["a:1", "b:2", "b:2"]
    assert tried[0][1] == failover.policy.call_timeout_s
    assert failover.suspects() == {"a:1"}
    clock.advance(failover.policy.suspect_s)
    assert failover.suspects() == set()


def test_a_submit_gets_its_upload_time_on_top_of_the_deadline() -> None:
    policy = RetryPolicy(call_timeout_s=2.0, upload_floor_bps=1000.0)
    submit = coordinator_pb2.SubmitRequest(request=common_pb2.GenerationRequest(image=b"x" * 3000))
    clock = ManualClock(0.0)
    failover = Failover(["a:1"], policy, FakeStubs(), clock.advance, clock)
    timeouts: list[float] = []
    failover.unary("submit", lambda stub, timeout: timeouts.append(timeout), policy.upload_s(submit))
    assert timeouts == [pytest.approx(2.0 + submit.ByteSize() / 1000.0)]


NEVER_RETRIED = [
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
]


def _manual(targets: list[str], stubs: FakeStubs, **policy: float) -> tuple[Failover, ManualClock]:
    clock = ManualClock(0.0)
    return Failover(targets, RetryPolicy(**policy), stubs, clock.advance, clock), clock


@pytest.mark.parametrize("code", [pytest.param(c, id=c.name) for c in NEVER_RETRIED])
def test_codes_that_would_fail_again_are_raised_after_one_attempt(code: grpc.StatusCode) -> None:
    failover, clock = _manual(["a:1", "b:2"], FakeStubs())
    attempts: list[str] = []

    def call(stub: object, timeout: float) -> str:
        attempts.append(failover.target)
        raise FakeRpcError(code, "the answer", hint="b:2")

    with pytest.raises(CallError) as err:
        failover.unary("get", call)
    assert attempts == ["a:1"] and clock.now == 0.0
    assert (err.value.code, err.value.message, err.value.address) == (code, "the answer", "a:1")


def test_unreachable_coordinators_are_reported_at_once_naming_each_and_why() -> None:
    stubs = FakeStubs(unreachable={"a:1": Reach.FAILED, "b:2": Reach.FAILED})
    failover, clock = _manual(["a:1", "b:2"], stubs)
    with pytest.raises(CallError) as err:
        failover.unary("cluster status", lambda stub, timeout: "never called")
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert err.value.message == (
        "cluster status: cannot reach any coordinator: a:1 refused the connection; b:2 refused the connection"
    )
    assert clock.now <= failover.policy.unreachable_s and not failover.reached
    assert stubs.asked == []  # no stub was asked for: nothing was sent


def test_a_silent_address_is_left_after_the_connect_timeout_and_suspected() -> None:
    stubs = FakeStubs(unreachable={"a:1": Reach.SILENT})
    failover, _ = _manual(["a:1", "b:2"], stubs, connect_timeout_s=2.0)
    assert failover.unary("get", lambda stub, timeout: failover.target) == "b:2"
    assert stubs.connects[0] == ("a:1", 2.0) and failover.suspects() == {"a:1"} and failover.reached


def test_after_the_first_connection_an_outage_gets_the_failover_budget() -> None:
    stubs = FakeStubs()
    failover, clock = _manual(["a:1", "b:2"], stubs, reconnect_s=30.0, unreachable_s=0.5)
    assert failover.unary("get", lambda stub, timeout: "ok") == "ok"
    stubs.unreachable = {"a:1": Reach.FAILED, "b:2": Reach.FAILED}  # both restarting
    with pytest.raises(CallError, match="no coordinator answered for 30 s"):
        failover.unary("get", lambda stub, timeout: "ok")
    assert 29.0 <= clock.now <= 31.0


def test_a_deadline_bounds_the_retries_and_each_attempt() -> None:
    failover, clock = _manual(["a:1", "b:2"], FakeStubs(), call_timeout_s=10.0)
    timeouts: list[float] = []

    def call(stub: object, timeout: float) -> str:
        timeouts.append(timeout)
        clock.advance(0.4)
        raise FakeRpcError()  # UNAVAILABLE: worth another try, until the deadline

    with pytest.raises(DeadlinePassed) as err:
        failover.unary("cancel", call, deadline=1.0)
    assert (
        err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        and "cancel: the deadline passed" in err.value.message
    )
    assert timeouts[0] == pytest.approx(1.0) and clock.now < 1.5


WIDTH_MESSAGE = "width: 65 is not a multiple of 8"
WIDTH_DETAILS = ErrorDetails(field_violations=(FieldViolation("width", "65 is not a multiple of 8"),))


class _DetailedError(FakeRpcError):
    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        status = status_proto(grpc.StatusCode.INVALID_ARGUMENT, WIDTH_MESSAGE, WIDTH_DETAILS)
        return (("grpc-status-details-bin", status.SerializeToString()),)


def test_structured_error_details_a_server_attaches_are_kept() -> None:
    failover, _ = _manual(["a:1"], FakeStubs())

    def call(stub: object, timeout: float) -> str:
        raise _DetailedError(grpc.StatusCode.INVALID_ARGUMENT, WIDTH_MESSAGE)

    with pytest.raises(CallError) as err:
        failover.unary("submit", call)
    assert err.value.field_violations == WIDTH_DETAILS.field_violations
    assert err.value.message.startswith("width")
