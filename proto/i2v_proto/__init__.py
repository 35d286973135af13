"""Generated protobuf and gRPC code of the wire contract (scripts/gen_proto.sh writes it). Reach it
through i2v_contract.wire (messages) and i2v_common.rpc (service stubs), never directly."""
