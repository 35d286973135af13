from __future__ import annotations

import grpc
import pytest

from i2v_client import RetryPolicy, retryable
from i2v_client.retry import Reconnect
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.fakes.clock import ManualClock


def test_reconnect_backs_off_exponentially_but_follows_a_first_leader_hint_at_once() -> None:
    clock = ManualClock(0.0)
    r = Reconnect(RetryPolicy(reconnect_s=5.0, initial_backoff_s=0.1, max_backoff_s=0.4), clock)
    assert r.next_delay(hinted=True) == 0.0
    assert r.next_delay(hinted=True) == 0.1  # a second hint in a row: the election is still moving
    assert [r.next_delay(hinted=False) for _ in range(3)] == [0.2, 0.4, 0.4]
    clock.advance(4.0)
    assert r.remaining() == pytest.approx(1.0)
    r.reset()  # a coordinator answered
    assert r.remaining() == pytest.approx(5.0) and r.next_delay(hinted=False) == 0.1


def test_upload_time_is_the_submit_at_the_floor_rate() -> None:
    policy = RetryPolicy(call_timeout_s=2.0, upload_floor_bps=1000.0)
    submit = coordinator_pb2.SubmitRequest(request=common_pb2.GenerationRequest(image=b"x" * 3000))
    assert policy.upload_s(submit) == pytest.approx(submit.ByteSize() / 1000.0) and submit.ByteSize() > 3000


NEVER_RETRIED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}


@pytest.mark.parametrize("code", [pytest.param(c, id=c.name) for c in grpc.StatusCode])
def test_only_unavailable_and_deadline_exceeded_are_retried(code: grpc.StatusCode) -> None:
    assert retryable(code) is (code in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
    if code in NEVER_RETRIED:
        assert not retryable(code)


def test_a_client_that_reached_no_coordinator_has_the_short_budget() -> None:
    clock = ManualClock(0.0)
    r = Reconnect(RetryPolicy(reconnect_s=30.0, unreachable_s=0.5), clock)
    assert r.remaining(reached=False) == pytest.approx(0.5) and r.remaining() == pytest.approx(30.0)
    assert Reconnect(RetryPolicy(reconnect_s=0.2, unreachable_s=0.5), clock).remaining(False) == 0.2
