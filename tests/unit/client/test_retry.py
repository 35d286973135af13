from __future__ import annotations

import pytest

from i2v_client import RetryPolicy
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
