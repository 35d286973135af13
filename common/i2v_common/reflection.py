"""Server reflection in both versions: grpc.reflection.v1, which current clients (grpcurl, Postman,
grpc-java, grpc-go) ask first, and v1alpha, which older ones ask.

grpcio-reflection ships only v1alpha. v1 is the same protocol under another package: the same
messages with the same field numbers, so the same bytes on the wire. So v1 is served by the same
servicer over the same descriptor pool, and its descriptors are v1alpha's with the package renamed
(added to the pool, so a v1 client can also describe the v1 service itself).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from i2v_common.handlers import add_servicer, guard_parse
from i2v_common.ratelog import RateLimitedLog

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE: str = reflection.SERVICE_NAME


def v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, made from v1alpha's descriptors (options as upstream's)."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", f".{V1_PACKAGE}."
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name.removeprefix(old)
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type.removeprefix(old)
            method.output_type = new + method.output_type.removeprefix(old)
    proto.options.Clear()
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.java_multiple_files = True
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    return proto


def _add_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.AddSerializedFile(v1_file().SerializeToString())


def enable(server: Any, services: Iterable[str], limiter: RateLimitedLog) -> None:
    """Reflection v1 and v1alpha on the grpc.aio `server`, listing `services` and themselves; a
    request that does not parse is INVALID_ARGUMENT (handlers.guard_parse), logged through `limiter`."""
    pool = descriptor_pool.Default()
    _add_v1_file(pool)
    servicer = reflection.aio.ReflectionServicer((*services, V1_SERVICE, V1ALPHA_SERVICE), pool=pool)
    add_servicer(
        server, reflection_pb2_grpc.add_ServerReflectionServicer_to_server, servicer, limiter=limiter
    )
    info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    guarded = guard_parse(f"/{V1_SERVICE}/ServerReflectionInfo", info, limiter)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": guarded}),)
    )
