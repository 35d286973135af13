"""The wire module is the one door to the generated messages: it re-exports them unchanged and
carries no gRPC service code."""

from __future__ import annotations

import types
from typing import Any

import pytest

from i2v_contract import wire
from i2v_proto.v1 import common_pb2, coordinator_pb2, node_pb2


@pytest.mark.parametrize(
    ("name", "generated"),
    [
        pytest.param("common_pb2", common_pb2, id="common"),
        pytest.param("coordinator_pb2", coordinator_pb2, id="coordinator"),
        pytest.param("node_pb2", node_pb2, id="node"),
    ],
)
def test_wire_re_exports_the_generated_module_itself(name: str, generated: types.ModuleType) -> None:
    assert getattr(wire, name) is generated
    assert name in wire.__all__


def test_wire_exports_exactly_the_messages_and_the_leader_names() -> None:
    assert sorted(wire.__all__) == [
        "LEADER_ADDR_METADATA",
        "LEADER_HEALTH",
        "common_pb2",
        "coordinator_pb2",
        "node_pb2",
    ]
    assert wire.LEADER_HEALTH == "i2v.v1.Coordinator.Leader"
    assert not [name for name in vars(wire) if name.endswith("_grpc")]


def test_the_leader_metadata_key_is_a_valid_text_metadata_key() -> None:
    key = wire.LEADER_ADDR_METADATA
    # gRPC metadata keys are lower-case; a "-bin" suffix would mark the value as binary.
    assert key == key.lower() and not key.endswith("-bin") and not key.startswith("grpc-")
    assert set(key) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def _upper_snake(name: str) -> str:
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()


ENUMS = [
    pytest.param(enum, id=enum.full_name)
    for module in (common_pb2, coordinator_pb2, node_pb2)
    for enum in module.DESCRIPTOR.enum_types_by_name.values()
]


@pytest.mark.parametrize("enum", ENUMS)
def test_every_enum_follows_the_style_guide(enum: Any) -> None:
    """Zero is <ENUM>_UNSPECIFIED and every value carries the enum's name as its prefix."""
    prefix = _upper_snake(enum.name) + "_"
    assert enum.values_by_number[0].name == f"{prefix}UNSPECIFIED"
    assert all(value.name.startswith(prefix) for value in enum.values)


def test_every_enum_of_the_contract_is_checked() -> None:
    assert sorted(p.id for p in ENUMS) == [
        "i2v.v1.Artifact",
        "i2v.v1.JobState",
        "i2v.v1.Stage",
        "i2v.v1.Tier",
    ]


@pytest.mark.parametrize(
    ("name", "number"),
    [
        pytest.param("JOB_STATE_QUEUED", 1, id="queued"),
        pytest.param("JOB_STATE_ASSIGNED", 2, id="assigned"),
        pytest.param("JOB_STATE_RUNNING", 3, id="running"),
        pytest.param("JOB_STATE_SUCCEEDED", 4, id="succeeded"),
        pytest.param("JOB_STATE_FAILED", 5, id="failed"),
        pytest.param("JOB_STATE_CANCELLED", 6, id="cancelled"),
    ],
)
def test_job_states_keep_their_wire_numbers(name: str, number: int) -> None:
    assert coordinator_pb2.JobState.Value(name) == number
