"""Job states and pipeline stages: their wire values, which states are final, and the one way each is
named in logs, metrics, errors and the CLI."""

from __future__ import annotations

from i2v_contract.wire import common_pb2, coordinator_pb2

QUEUED: int = coordinator_pb2.JOB_QUEUED
ASSIGNED: int = coordinator_pb2.JOB_ASSIGNED
RUNNING: int = coordinator_pb2.JOB_RUNNING
SUCCEEDED: int = coordinator_pb2.JOB_SUCCEEDED
FAILED: int = coordinator_pb2.JOB_FAILED
CANCELLED: int = coordinator_pb2.JOB_CANCELLED
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE_STATES = frozenset({ASSIGNED, RUNNING})

_STATE_NAMES = {int(value): name.removeprefix("JOB_") for name, value in coordinator_pb2.JobState.items()}
_STAGE_NAMES = {int(value): name.removeprefix("STAGE_").lower() for name, value in common_pb2.Stage.items()}


def state_name(state: int) -> str:
    """coordinator_pb2.JobState value -> 'QUEUED', 'SUCCEEDED', ... ('state N' for unknown values)."""
    return _STATE_NAMES.get(state, f"state {state}")


def stage_name(stage: int) -> str:
    """common_pb2.Stage value -> 'denoise', 'encode_prompt', ... ('unspecified' for unknown values)."""
    return _STAGE_NAMES.get(stage, "unspecified")
