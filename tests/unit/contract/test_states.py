"""Job states and pipeline stages: the one name of each wire value, and which states are final."""

from __future__ import annotations

import pytest

from i2v_contract import states
from i2v_contract.states import ACTIVE_STATES, FINAL_STATES, stage_name, state_name
from i2v_contract.wire import common_pb2, coordinator_pb2


@pytest.mark.parametrize(
    ("state", "name"),
    [
        pytest.param(coordinator_pb2.JOB_STATE_UNSPECIFIED, "STATE_UNSPECIFIED", id="unspecified"),
        pytest.param(coordinator_pb2.JOB_STATE_QUEUED, "QUEUED", id="queued"),
        pytest.param(coordinator_pb2.JOB_STATE_ASSIGNED, "ASSIGNED", id="assigned"),
        pytest.param(coordinator_pb2.JOB_STATE_RUNNING, "RUNNING", id="running"),
        pytest.param(coordinator_pb2.JOB_STATE_SUCCEEDED, "SUCCEEDED", id="succeeded"),
        pytest.param(coordinator_pb2.JOB_STATE_FAILED, "FAILED", id="failed"),
        pytest.param(coordinator_pb2.JOB_STATE_CANCELLED, "CANCELLED", id="cancelled"),
        pytest.param(7, "state 7", id="unknown-value-shows-the-number"),
        pytest.param(-1, "state -1", id="negative-value-shows-the-number"),
    ],
)
def test_a_job_state_is_named_without_its_prefix(state: int, name: str) -> None:
    assert state_name(state) == name


def test_every_job_state_on_the_wire_has_a_name() -> None:
    named = {state_name(value) for value in coordinator_pb2.JobState.values()}
    assert len(named) == len(coordinator_pb2.JobState.values())
    assert not any(name.startswith("state ") for name in named)


@pytest.mark.parametrize(
    ("stage", "name"),
    [
        pytest.param(common_pb2.STAGE_UNSPECIFIED, "unspecified", id="unspecified"),
        pytest.param(common_pb2.STAGE_QUEUED, "queued", id="queued"),
        pytest.param(common_pb2.STAGE_ASSIGNED, "assigned", id="assigned"),
        pytest.param(common_pb2.STAGE_LOADING, "loading", id="loading"),
        pytest.param(common_pb2.STAGE_ENCODE_PROMPT, "encode_prompt", id="encode-prompt"),
        pytest.param(common_pb2.STAGE_ENCODE_IMAGE, "encode_image", id="encode-image"),
        pytest.param(common_pb2.STAGE_DENOISE, "denoise", id="denoise"),
        pytest.param(common_pb2.STAGE_DECODE, "decode", id="decode"),
        pytest.param(common_pb2.STAGE_ENCODE_VIDEO, "encode_video", id="encode-video"),
        pytest.param(common_pb2.STAGE_RETRY, "retry", id="retry"),
        pytest.param(10, "unspecified", id="unknown-value-is-unspecified"),
        pytest.param(-1, "unspecified", id="negative-value-is-unspecified"),
    ],
)
def test_a_stage_is_named_in_lower_case_without_its_prefix(stage: int, name: str) -> None:
    assert stage_name(stage) == name


def test_every_stage_on_the_wire_has_its_own_name() -> None:
    values = common_pb2.Stage.values()
    assert len({stage_name(value) for value in values}) == len(values)


@pytest.mark.parametrize(
    ("state", "final", "active"),
    [
        pytest.param(states.QUEUED, False, False, id="queued-waits"),
        pytest.param(states.ASSIGNED, False, True, id="assigned-is-active"),
        pytest.param(states.RUNNING, False, True, id="running-is-active"),
        pytest.param(states.SUCCEEDED, True, False, id="succeeded-is-final"),
        pytest.param(states.FAILED, True, False, id="failed-is-final"),
        pytest.param(states.CANCELLED, True, False, id="cancelled-is-final"),
        pytest.param(coordinator_pb2.JOB_STATE_UNSPECIFIED, False, False, id="unspecified-is-neither"),
    ],
)
def test_only_finished_jobs_are_final_and_only_dispatched_ones_are_active(
    state: int, final: bool, active: bool
) -> None:
    assert (state in FINAL_STATES, state in ACTIVE_STATES) == (final, active)


def test_the_state_constants_are_the_wire_values() -> None:
    assert (states.QUEUED, states.ASSIGNED, states.RUNNING) == (
        coordinator_pb2.JOB_STATE_QUEUED,
        coordinator_pb2.JOB_STATE_ASSIGNED,
        coordinator_pb2.JOB_STATE_RUNNING,
    )
    assert (states.SUCCEEDED, states.FAILED, states.CANCELLED) == (
        coordinator_pb2.JOB_STATE_SUCCEEDED,
        coordinator_pb2.JOB_STATE_FAILED,
        coordinator_pb2.JOB_STATE_CANCELLED,
    )
    assert not FINAL_STATES & ACTIVE_STATES
