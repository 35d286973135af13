"""Job states and pipeline stages: their wire values, which states are final, and the one way each is
named in logs, metrics, errors and the CLI."""

from __future__ import annotations

from i2v_contract.wire import common_pb2, coordinator_pb2

QUEUED: int = coordinator_pb2.JOB_STATE_QUEUED
ASSIGNED: int = coordinator_pb2.JOB_STATE_ASSIGNED
RUNNING: int = coordinator_pb2.JOB_STATE_RUNNING
SUCCEEDED: int = coordinator_pb2.JOB_STATE_SUCCEEDED
FAILED: int = coordinator_pb2.JOB_STATE_FAILED
CANCELLED: int = coordinator_pb2.JOB_STATE_CANCELLED
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE_STATES = frozenset({ASSIGNED, RUNNING})

# Users have always seen QUEUED, RUNNING, ... (and STATE_UNSPECIFIED); the wire names gained the
# JOB_STATE_ prefix, the printed names did not change.
_STATE_NAMES = {
    int(value): "STATE_UNSPECIFIED" if value == 0 else name.removeprefix("JOB_STATE_")
    for name, value in coordinator_pb2.JobState.items()
}
_STAGE_NAMES = {int(value): name.removeprefix("STAGE_").lower() for name, value in common_pb2.Stage.items()}


def state_name(state: int) -> str:
    """coordinator_pb2.JobState value -> 'QUEUED', 'SUCCEEDED', ... ('state N' for unknown values)."""
    return _STATE_NAMES.get(state, f"state {state}")


def stage_name(stage: int) -> str:
    """common_pb2.Stage value -> 'denoise', 'encode_prompt', ... ('unspecified' for unknown values)."""
    return _STAGE_NAMES.get(stage, "unspecified")
