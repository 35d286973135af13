"""The wire module is the one door to the generated messages: it re-exports them unchanged and
carries no gRPC service code."""

from __future__ import annotations

import types

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


def test_wire_exports_exactly_the_messages_and_the_leader_metadata_key() -> None:
    assert sorted(wire.__all__) == ["LEADER_ADDR_METADATA", "common_pb2", "coordinator_pb2", "node_pb2"]
    assert not [name for name in vars(wire) if name.endswith("_grpc")]


def test_the_leader_metadata_key_is_a_valid_text_metadata_key() -> None:
    key = wire.LEADER_ADDR_METADATA
    # gRPC metadata keys are lower-case; a "-bin" suffix would mark the value as binary.
    assert key == key.lower() and not key.endswith("-bin") and not key.startswith("grpc-")
    assert set(key) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
