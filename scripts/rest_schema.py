"""The REST request schema Envoy's Lua filter checks bodies and query strings
against, written as Lua tables from the generated descriptor set.

Envoy's transcoder parses JSON leniently (trailing commas, single quotes,
`"yes"` for a bool, unknown fields dropped) and that cannot be switched off,
so envoy/lua/rest_check.lua checks each REST request first. It needs to know,
for every google.api.http binding, which message the body is and what type
each field has; this module derives exactly that from the descriptor set, so
the check can never drift from the contract. scripts/gen.py writes the result
together with the hand-written checker into envoy/rest_filter.lua.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

F = descriptor_pb2.FieldDescriptorProto

SERVICES = (
    "chronosched.v1.NamespaceService",
    "chronosched.v1.DefinitionService",
    "chronosched.v1.DagService",
    "chronosched.v1.JobService",
    "chronosched.v1.AdminService",
    "chronosched.v1.ScheduleService",
    "chronosched.v1.TokenService",
    "chronosched.v1.WorkerService",
)

_SCALARS = {
    F.TYPE_DOUBLE: "double",
    F.TYPE_FLOAT: "double",
    F.TYPE_INT64: "int64",
    F.TYPE_SINT64: "int64",
    F.TYPE_SFIXED64: "int64",
    F.TYPE_UINT64: "uint64",
    F.TYPE_FIXED64: "uint64",
    F.TYPE_INT32: "int32",
    F.TYPE_SINT32: "int32",
    F.TYPE_SFIXED32: "int32",
    F.TYPE_UINT32: "uint32",
    F.TYPE_FIXED32: "uint32",
    F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes",
}

# Well-known types have their own JSON forms (proto3 JSON mapping).
_WELL_KNOWN = {
    ".google.protobuf.Duration": "duration",
    ".google.protobuf.Timestamp": "timestamp",
    ".google.protobuf.FieldMask": "string",
    ".google.protobuf.Struct": "struct",
    ".google.protobuf.Value": "value",
    ".google.protobuf.ListValue": "list",
    ".google.protobuf.Any": "struct",
    ".google.protobuf.DoubleValue": "double",
    ".google.protobuf.FloatValue": "double",
    ".google.protobuf.Int64Value": "int64",
    ".google.protobuf.UInt64Value": "uint64",
    ".google.protobuf.Int32Value": "int32",
    ".google.protobuf.UInt32Value": "uint32",
    ".google.protobuf.BoolValue": "bool",
    ".google.protobuf.StringValue": "string",
    ".google.protobuf.BytesValue": "bytes",
}

_LUA_MAGIC = re.compile(r"([\^$()%.\[\]*+\-?])")


@dataclass(frozen=True)
class Route:
    """One google.api.http binding."""

    method: str
    template: str
    body: str
    input_type: str  # fully qualified, without the leading dot
    output_type: str = ""
    service: str = ""
    rpc: str = ""
    comment: str = ""
    # 0 for the rule itself, 1, 2, ... for its additional_bindings.
    binding: int = 0


class Schema:
    """Messages and enums by fully qualified name (leading dot kept, as in
    type_name fields)."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        # Leading comments by element: a message or enum by its full name, a
        # field as "<message>.<field>", an enum value as "<enum>.<value>".
        self.comments: dict[str, str] = {}
        self.files = files
        for file in files.file:
            docs = {
                tuple(loc.path): loc.leading_comments.strip()
                for loc in file.source_code_info.location
                if loc.leading_comments
            }
            prefix = f".{file.package}" if file.package else ""
            for i, enum in enumerate(file.enum_type):
                self._add_enum(f"{prefix}.{enum.name}", enum, (5, i), docs)
            for i, message in enumerate(file.message_type):
                self._add(prefix, message, (4, i), docs)

    def _add_enum(
        self,
        name: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        docs: dict[tuple[int, ...], str],
    ) -> None:
        self.enums[name] = enum
        self.comments[name] = docs.get(path, "")
        for j, value in enumerate(enum.value):
            self.comments[f"{name}.{value.name}"] = docs.get((*path, 2, j), "")

    def _add(
        self,
        prefix: str,
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        docs: dict[tuple[int, ...], str],
    ) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = message
        self.comments[name] = docs.get(path, "")
        for j, field in enumerate(message.field):
            self.comments[f"{name}.{field.name}"] = docs.get((*path, 2, j), "")
        for j, enum in enumerate(message.enum_type):
            self._add_enum(f"{name}.{enum.name}", enum, (*path, 4, j), docs)
        for j, nested in enumerate(message.nested_type):
            self._add(name, nested, (*path, 3, j), docs)

    def routes(self) -> Iterator[Route]:
        for file in self.files.file:
            docs = {
                tuple(loc.path): loc.leading_comments.strip()
                for loc in file.source_code_info.location
                if loc.leading_comments
            }
            for i, service in enumerate(file.service):
                if f"{file.package}.{service.name}" not in SERVICES:
                    continue
                for j, method in enumerate(service.method):
                    rule = method.options.Extensions[annotations_pb2.http]
                    for n, binding in enumerate([rule, *rule.additional_bindings]):
                        verb = binding.WhichOneof("pattern")
                        if verb is None or verb == "custom":
                            continue
                        yield Route(
                            method=verb.upper(),
                            template=getattr(binding, verb),
                            body=binding.body,
                            input_type=method.input_type.lstrip("."),
                            output_type=method.output_type.lstrip("."),
                            service=service.name,
                            rpc=method.name,
                            comment=docs.get((6, i, 2, j), ""),
                            binding=n,
                        )


def field_kind(schema: Schema, field: descriptor_pb2.FieldDescriptorProto) -> tuple[str, str | None]:
    """The field's JSON kind and, for enums and messages, its type name."""
    if field.type == F.TYPE_ENUM:
        return "enum", field.type_name
    if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
        known = _WELL_KNOWN.get(field.type_name)
        if known is not None:
            return known, None
        if schema.messages[field.type_name].options.map_entry:
            return "map", field.type_name
        return "message", field.type_name
    return _SCALARS[field.type], None


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def path_pattern(template: str) -> tuple[str, int, list[str]]:
    """A Lua pattern matching what the transcoder matches for `template` (a
    {variable} is one segment, empty unless it is the last; trailing slashes
    are ignored), the number of literal segments, and the bound fields."""
    segments = template.strip("/").split("/")
    parts: list[str] = []
    literals = 0
    bound: list[str] = []
    for i, segment in enumerate(segments):
        variable = re.fullmatch(r"\{([a-z0-9_.]+)(=\*)?\}", segment)
        if variable:
            bound.append(variable.group(1))
            parts.append("[^/]+" if i == len(segments) - 1 else "[^/]*")
        else:
            if "{" in segment or "*" in segment:
                raise ValueError(f"{template}: unsupported path segment {segment!r}")
            literals += 1
            parts.append(_LUA_MAGIC.sub(r"%\1", segment))
    return "^/" + "/".join(parts) + "/*$", literals, bound


def query_leaves(
    schema: Schema, message: str, prefix: tuple[str, str], skip: set[str], depth: int = 0
) -> Iterator[tuple[str, str, descriptor_pb2.FieldDescriptorProto]]:
    """(proto path, json path, field) of every field a query string may set:
    scalars, enums and well-known leaves, through singular messages."""
    for field in schema.messages[message].field:
        proto = f"{prefix[0]}{field.name}"
        json = f"{prefix[1]}{field.json_name or field.name}"
        if proto in skip:
            continue
        kind, type_name = field_kind(schema, field)
        if kind == "message" and field.label != F.LABEL_REPEATED and depth < 4:
            assert type_name is not None
            yield from query_leaves(schema, type_name, (f"{proto}.", f"{json}."), skip, depth + 1)
        elif kind not in ("message", "map", "struct", "value", "list"):
            yield proto, json, field


def render_lua(files: descriptor_pb2.FileDescriptorSet) -> str:
    """The generated tables: ROUTES, MESSAGES and ENUMS."""
    schema = Schema(files)
    routes = sorted(schema.routes(), key=lambda r: (-path_pattern(r.template)[1], r.template, r.method))
    out: list[str] = ["ROUTES = {"]
    wanted: list[str] = []
    for route in routes:
        pattern, _, bound = path_pattern(route.template)
        request = f".{route.input_type}"
        if route.body not in ("", "*"):
            raise ValueError(f"{route.template}: body {route.body!r} is not supported by the REST check")
        out.append(f"  {{method = {_lua_string(route.method)}, template = {_lua_string(route.template)},")
        out.append(f"   pattern = {_lua_string(pattern)},")
        if route.body == "*":
            out.append(f"   body = {_lua_string(request)},")
            wanted.append(request)
        out.append("   query = {")
        if route.body != "*":
            for proto, json, field in query_leaves(schema, request, ("", ""), set(bound)):
                kind, type_name = field_kind(schema, field)
                spec = _field_spec(proto, kind, type_name, field.label == F.LABEL_REPEATED)
                out.append(f"    [{_lua_string(proto)}] = {spec},")
                if json != proto:
                    out.append(f"    [{_lua_string(json)}] = {spec},")
                if type_name and kind == "enum":
                    wanted.append(type_name)
        out.append("   }},")
    out.append("}")

    out.append("")
    out.append("MESSAGES = {}")
    seen: set[str] = set()
    enums: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in schema.enums:
            enums.add(name)
            continue
        message = schema.messages[name]
        lines: list[str] = []
        for field in message.field:
            kind, type_name = field_kind(schema, field)
            repeated = field.label == F.LABEL_REPEATED and kind != "map"
            if kind == "map":
                assert type_name is not None
                _key, value = schema.messages[type_name].field
                value_kind, value_type = field_kind(schema, value)
                spec = _field_spec(field.name, "map", value_type, False, value_kind=value_kind)
                if value_type:
                    wanted.append(value_type)
            else:
                spec = _field_spec(field.name, kind, type_name, repeated)
                if type_name:
                    wanted.append(type_name)
            lines.append(f"  [{_lua_string(field.name)}] = {spec},")
            if field.json_name and field.json_name != field.name:
                lines.append(f"  [{_lua_string(field.json_name)}] = {spec},")
        out.append(f"MESSAGES[{_lua_string(name)}] = {{")
        out.extend(lines)
        out.append("}")

    out.append("")
    out.append("ENUMS = {}")
    for name in sorted(enums):
        values = schema.enums[name].value
        names = ", ".join(_lua_string(v.name) for v in values)
        numbers = ", ".join(f"[{v.number}] = true" for v in values)
        label = name.lstrip(".").removeprefix("chronosched.v1.")
        out.append(f"ENUMS[{_lua_string(name)}] = {{label = {_lua_string(label)}, names = {{{names}}},")
        out.append(f"  numbers = {{{numbers}}}}}")
    return "\n".join(out) + "\n"


def _field_spec(
    name: str, kind: str, type_name: str | None, repeated: bool, *, value_kind: str | None = None
) -> str:
    parts = [f"name = {_lua_string(name)}", f"kind = {_lua_string(kind)}"]
    if type_name:
        parts.append(f"type = {_lua_string(type_name)}")
    if repeated:
        parts.append("repeated = true")
    if value_kind:
        parts.append(f"value_kind = {_lua_string(value_kind)}")
    return "{" + ", ".join(parts) + "}"
