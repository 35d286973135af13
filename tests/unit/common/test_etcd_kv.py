"""The etcd adapter's pure retry rule (the adapter itself runs against real etcd in
tests/integration/test_etcd_kv.py)."""

from __future__ import annotations

import grpc
import pytest

from i2v_common.etcd_kv import retry_safe, summarize

U, D, N = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("code", "details", "mutating", "safe"),
    [
        pytest.param(
            U,
            "failed to connect to all addresses; Connection refused",
            True,
            True,
            id="write-never-connected",
        ),
        pytest.param(U, "etcdserver: no leader", True, True, id="write-to-member-without-leader"),
        pytest.param(U, "etcdserver: request timed out", True, False, id="write-timed-out-may-still-commit"),
        pytest.param(U, "etcdserver: leader changed", True, False, id="write-during-leader-change"),
        pytest.param(U, "Socket closed", True, False, id="write-socket-closed"),
        pytest.param(D, "Deadline Exceeded", True, False, id="write-past-deadline"),
        pytest.param(D, "Deadline Exceeded", False, True, id="read-past-deadline"),
        pytest.param(U, "Socket closed", False, True, id="read-socket-closed"),
        pytest.param(N, "etcdserver: requested lease not found", False, False, id="not-transient"),
    ],
)
def test_only_calls_that_cannot_have_applied_are_retried(
    code: grpc.StatusCode, details: str, mutating: bool, safe: bool
) -> None:
    assert retry_safe(code, details, mutating=mutating) is safe


REFUSED = (
    "127.0.0.1:2999 UNAVAILABLE failed to connect to all addresses; last error: UNKNOWN: "
    "ipv4:127.0.0.1:2999: Failed to connect to remote host: Connection refused"
)


@pytest.mark.parametrize(
    ("failures", "summary"),
    [
        pytest.param([], "no attempt fitted in the timeout", id="none"),
        pytest.param(["a:1 UNAVAILABLE x"], "1 attempt: a:1 UNAVAILABLE x", id="one"),
        pytest.param([REFUSED] * 30, f"30 attempts: {REFUSED} (30 times)", id="one-error-thirty-times"),
        pytest.param(
            ["a:1 UNAVAILABLE x", "b:2 DEADLINE_EXCEEDED y", "a:1 UNAVAILABLE x"],
            "3 attempts: a:1 UNAVAILABLE x (2 times); b:2 DEADLINE_EXCEEDED y",
            id="two-endpoints",
        ),
        pytest.param(
            [f"e{i} UNAVAILABLE" for i in range(5)],
            "5 attempts: e0 UNAVAILABLE; e1 UNAVAILABLE; e2 UNAVAILABLE; 2 other errors",
            id="many-distinct",
        ),
        pytest.param(["z" * 500], "1 attempt: " + "z" * 200 + "...", id="long-detail-cut"),
    ],
)
def test_a_failed_call_names_each_distinct_failure_once(failures: list[str], summary: str) -> None:
    assert summarize(failures) == summary


def test_a_call_refused_thirty_times_is_one_short_phrase() -> None:
    assert len(summarize([REFUSED] * 30)) < 200
