"""The wire contract's messages: the one door to the generated protobuf modules.

Service stubs (which need grpc) are in i2v_common.rpc; everything here is plain data.
"""

from i2v_proto.v1 import common_pb2 as common_pb2
from i2v_proto.v1 import coordinator_pb2 as coordinator_pb2
from i2v_proto.v1 import node_pb2 as node_pb2

__all__ = ["LEADER_ADDR_METADATA", "LEADER_HEALTH", "common_pb2", "coordinator_pb2", "node_pb2"]

# Trailing metadata on a standby's UNAVAILABLE: the leader's client address, to go to next.
LEADER_ADDR_METADATA = "i2v-leader-addr"
# The gRPC health name that is SERVING on the leading coordinator only (gateways ask it to be ready).
LEADER_HEALTH = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name + ".Leader"
