"""Reflection v1 beside v1alpha, checked with a v1 client of its own: its messages come from the v1
protocol's definition (below, compiled here by protoc into a pool of their own), not from the
descriptors the server derives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

from i2v_common import keepalive, reflection
from i2v_common.serving import HEALTH_SERVICE, RpcServer
from i2v_contract.wire import node_pb2

SERVICE = node_pb2.DESCRIPTOR.services_by_name["Node"].full_name

# grpc/reflection/v1/reflection.proto of the gRPC project, comments left out.
V1_PROTO = """
syntax = "proto3";
package grpc.reflection.v1;
option go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1";
option java_multiple_files = true;
option java_package = "io.grpc.reflection.v1";
option java_outer_classname = "ServerReflectionProto";
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest) returns (stream ServerReflectionResponse);
}
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    ExtensionRequest file_containing_extension = 5;
    string all_extension_numbers_of_type = 6;
    string list_services = 7;
  }
}
message ExtensionRequest {
  string containing_type = 1;
  int32 extension_number = 2;
}
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ExtensionNumberResponse all_extension_numbers_response = 5;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ExtensionNumberResponse {
  string base_type_name = 1;
  repeated int32 extension_number = 2;
}
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse {
  int32 error_code = 1;
  string error_message = 2;
}
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorProto:
    """The v1 protocol's file, compiled by protoc."""
    root = tmp_path_factory.mktemp("v1")
    source = root / reflection.V1_FILE
    source.parent.mkdir(parents=True)
    source.write_text(V1_PROTO)
    out = root / "v1.pb"
    assert protoc.main(["protoc", f"-I{root}", f"--descriptor_set_out={out}", reflection.V1_FILE]) == 0
    [file] = descriptor_pb2.FileDescriptorSet.FromString(Path(out).read_bytes()).file
    return file


class V1Client:
    """A reflection v1 client whose messages come from `file` alone."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto, channel: grpc.aio.Channel) -> None:
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        self.request: Any = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
        )
        response: Any = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
        )
        self.info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    async def ask(self, **request: str) -> Any:
        [reply] = [r async for r in self.info(iter([self.request(**request)]), timeout=5)]
        return reply


@pytest.fixture
async def v1(upstream: descriptor_pb2.FileDescriptorProto) -> AsyncIterator[V1Client]:
    server = RpcServer(SERVICE, keepalive.SERVER_OPTIONS)
    address = server.bind("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield V1Client(upstream, channel)
    finally:
        await server.stop(0)


def _without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    out = descriptor_pb2.FileDescriptorProto()
    out.CopyFrom(file)
    for message in out.message_type:
        for field in message.field:
            field.ClearField("json_name")
    return out


def test_the_derived_v1_file_is_the_v1_protocol(upstream: descriptor_pb2.FileDescriptorProto) -> None:
    assert _without_json_names(reflection.v1_file()) == _without_json_names(upstream)


async def test_a_v1_client_lists_the_services(v1: V1Client) -> None:
    reply = await v1.ask(list_services="")
    names = {s.name for s in reply.list_services_response.service}
    assert names == {SERVICE, HEALTH_SERVICE, reflection.V1_SERVICE, reflection.V1ALPHA_SERVICE}


@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        pytest.param(SERVICE, "i2v_proto/v1/node.proto", id="the-service"),
        pytest.param(reflection.V1_SERVICE, reflection.V1_FILE, id="reflection-v1-itself"),
    ],
)
async def test_a_v1_client_gets_the_file_that_defines_a_symbol(v1: V1Client, symbol: str, file: str) -> None:
    reply = await v1.ask(file_containing_symbol=symbol)
    names = [
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    assert names[0] == file
