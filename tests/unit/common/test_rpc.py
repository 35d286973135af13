"""The rpc module is the one door to the generated service stubs: it re-exports them unchanged."""

from __future__ import annotations

import types

import pytest

from i2v_common import rpc
from i2v_proto.v1 import coordinator_pb2_grpc, node_pb2_grpc


@pytest.mark.parametrize(
    ("name", "generated", "stub"),
    [
        pytest.param("coordinator_pb2_grpc", coordinator_pb2_grpc, "CoordinatorStub", id="coordinator"),
        pytest.param("node_pb2_grpc", node_pb2_grpc, "NodeStub", id="node"),
    ],
)
def test_rpc_re_exports_the_generated_service_module_itself(
    name: str, generated: types.ModuleType, stub: str
) -> None:
    assert getattr(rpc, name) is generated
    assert hasattr(generated, stub)
    assert sorted(rpc.__all__) == ["coordinator_pb2_grpc", "node_pb2_grpc"]
