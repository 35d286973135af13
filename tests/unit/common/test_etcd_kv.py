"""The etcd adapter's pure retry rule (the adapter itself runs against real etcd in
tests/integration/test_etcd_kv.py)."""

from __future__ import annotations

import grpc
import pytest

from i2v_common.etcd_kv import retry_safe

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
