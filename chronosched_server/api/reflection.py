"""gRPC server reflection under both of its service names.

grpcio-reflection (1.85) serves only `grpc.reflection.v1alpha.ServerReflection`.
Newer clients (grpcurl, Postman) ask for `grpc.reflection.v1.ServerReflection`
first. The two protocols are wire-identical: same messages, same field
numbers; only the package differs. So both services are generic handlers
that run the library's own v1alpha servicer, with its message classes, on
the same bytes.

Clients also resolve every listed service (grpcurl `describe`), so the v1
service needs a descriptor. It is derived at start from the installed
v1alpha descriptor, with the package renamed, and added to the default pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
# The file name the v1 protocol has upstream, so a client that already knows
# it does not see a second name for the same thing.
V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The installed v1alpha reflection descriptor, renamed to v1."""
    old_prefix = f".{reflection_pb2.DESCRIPTOR.package}."
    new_prefix = f".{V1_PACKAGE}."
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = V1_FILE_NAME
    file.package = V1_PACKAGE
    # The options name v1alpha's language packages and mark it deprecated;
    # none of that is true of v1.
    file.ClearField("options")
    for message in file.message_type:
        for field in message.field:
            if field.type_name.startswith(old_prefix):
                field.type_name = new_prefix + field.type_name.removeprefix(old_prefix)
    for service in file.service:
        for method in service.method:
            method.input_type = new_prefix + method.input_type.removeprefix(old_prefix)
            method.output_type = new_prefix + method.output_type.removeprefix(old_prefix)
    return file


def _register_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindServiceByName(V1_SERVICE_NAME)
    except KeyError:
        pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def enable_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Serve reflection for `service_names` (and for itself, under both names)
    as v1 and v1alpha: one servicer, the same method under both services."""
    _register_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer([*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(
                name,
                {
                    "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                        servicer.ServerReflectionInfo,
                        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                    )
                },
            )
            for name in (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
        )
    )
