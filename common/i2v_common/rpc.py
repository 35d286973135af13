"""The wire contract's gRPC service stubs and servicer bases (generated; they need grpc)."""

from i2v_proto.v1 import coordinator_pb2_grpc as coordinator_pb2_grpc
from i2v_proto.v1 import node_pb2_grpc as node_pb2_grpc

__all__ = ["coordinator_pb2_grpc", "node_pb2_grpc"]
