"""Which i2v server answers at an address: for a message that says "that is a coordinator, use
--target" instead of "UNIMPLEMENTED: Method not found!"."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from i2v_client.channels import open_channel
from i2v_common.rpc import coordinator_pb2_grpc, node_pb2_grpc
from i2v_common.tls import ClientTls
from i2v_contract.wire import coordinator_pb2, node_pb2

NODE, COORDINATOR = "node", "coordinator"
# Answers that say nothing about which service is there.
_NO_SIGN = frozenset(
    {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)


def server_kind(address: str, timeout: float = 1.0, tls: ClientTls | None = None) -> str:
    """NODE or COORDINATOR, by which service's cheapest call `address` answers; "" when neither."""
    channel = open_channel(address, tls=tls)
    asks: list[tuple[str, Callable[[], object]]] = [
        (NODE, lambda: node_pb2_grpc.NodeStub(channel).Status(node_pb2.NodeStatusRequest(), timeout=timeout)),
        (
            COORDINATOR,
            lambda: coordinator_pb2_grpc.CoordinatorStub(channel).ClusterStatus(
                coordinator_pb2.ClusterStatusRequest(), timeout=timeout
            ),
        ),
    ]
    try:
        for kind, ask in asks:
            try:
                ask()
            except grpc.RpcError as err:
                if err.code() in _NO_SIGN:
                    continue
            return kind
        return ""
    finally:
        channel.close()
