"""The REST API's OpenAPI 3.1 document and its Markdown reference, both from
the descriptor set, so neither can drift from the proto.

The document describes the JSON that actually crosses Envoy: proto field
names, proto3 JSON types (int64 as strings, enums by name, durations as
"90s"), request bodies without their path fields and closed to unknown
fields (the REST check refuses them), errors as google.rpc.Status. Comments
in the .proto files become descriptions; google.api.field_behavior becomes
`required` and `readOnly`. scripts/gen.py writes docs/openapi.yaml and
docs/rest-reference.md with it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from rest_schema import Route, Schema, field_kind, path_pattern, query_leaves

F = descriptor_pb2.FieldDescriptorProto
Json = dict[str, Any]

_SCALAR_SCHEMAS: dict[str, Json] = {
    "string": {"type": "string"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
    "bool": {"type": "boolean"},
    "int32": {"type": "integer", "format": "int32"},
    "uint32": {"type": "integer", "format": "int32", "minimum": 0},
    # proto3 JSON prints 64-bit integers as strings; both forms are read.
    "int64": {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    "uint64": {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    "double": {"type": "number"},
    "duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$", "examples": ["90s", "1.5s"]},
    "timestamp": {"type": "string", "format": "date-time"},
    "struct": {"type": "object", "additionalProperties": True},
    "list": {"type": "array"},
    "value": {},
}

ERROR_SCHEMA: Json = {
    "type": "object",
    "description": (
        "Every error: the gRPC status code, a message for humans and google.rpc details "
        "(ErrorInfo with a machine-readable reason, BadRequest naming bad fields). "
        "docs/rest-errors.md lists every shape."
    ),
    "properties": {
        "code": {"type": "integer", "description": "The gRPC status code."},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    },
    "required": ["code", "message", "details"],
}


def _behaviors(field: descriptor_pb2.FieldDescriptorProto) -> set[str]:
    values = field.options.Extensions[field_behavior_pb2.field_behavior]
    return {field_behavior_pb2.FieldBehavior.Name(v) for v in values}


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{_schema_name(name)}"}


def _schema_name(full_name: str) -> str:
    return full_name.lstrip(".").removeprefix("chronosched.v1.").replace(".", "_")


class _Builder:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.components: dict[str, Json] = {}

    def describe(self, key: str) -> str:
        return " ".join(self.schema.comments.get(key, "").split())

    def value_schema(self, kind: str, type_name: str | None) -> Json:
        if kind == "enum":
            assert type_name is not None
            return self.enum(type_name)
        if kind == "message":
            assert type_name is not None
            self.message(type_name)
            return _ref(type_name)
        return dict(_SCALAR_SCHEMAS[kind])

    def enum(self, full_name: str) -> Json:
        name = _schema_name(full_name)
        if name not in self.components:
            values = self.schema.enums[full_name].value
            self.components[name] = {
                "type": "string",
                "enum": [v.name for v in values],
                "description": self.describe(full_name),
            }
        return _ref(full_name)

    def field_schema(self, owner: str, field: descriptor_pb2.FieldDescriptorProto) -> Json:
        kind, type_name = field_kind(self.schema, field)
        if kind == "map":
            assert type_name is not None
            _key, value = self.schema.messages[type_name].field
            value_kind, value_type = field_kind(self.schema, value)
            out: Json = {"type": "object", "additionalProperties": self.value_schema(value_kind, value_type)}
        elif field.label == F.LABEL_REPEATED:
            out = {"type": "array", "items": self.value_schema(kind, type_name)}
        else:
            inner = self.value_schema(kind, type_name)
            # A $ref cannot carry siblings in every tool; wrap it.
            out = {"allOf": [inner]} if "$ref" in inner else inner
        description = self.describe(f"{owner}.{field.name}")
        if description:
            out["description"] = description
        if "OUTPUT_ONLY" in _behaviors(field):
            out["readOnly"] = True
        return out

    def message(
        self, full_name: str, *, skip: frozenset[str] = frozenset(), as_name: str | None = None
    ) -> str:
        name = as_name or _schema_name(full_name)
        if name in self.components:
            return name
        self.components[name] = {}  # a placeholder first: messages may refer to themselves
        message = self.schema.messages[full_name]
        properties: Json = {}
        required: list[str] = []
        for field in message.field:
            if field.name in skip:
                continue
            properties[field.name] = self.field_schema(full_name, field)
            if "REQUIRED" in _behaviors(field):
                required.append(field.name)
        out: Json = {"type": "object", "description": self.describe(full_name), "properties": properties}
        if required:
            out["required"] = required
        # The REST check refuses unknown fields in every request body.
        out["additionalProperties"] = False
        self.components[name] = out
        return name


def _path_params(template: str) -> list[str]:
    return re.findall(r"\{([a-z0-9_.]+)", template)


def _openapi_path(template: str) -> str:
    return re.sub(r"\{([a-z0-9_.]+)(=\*)?\}", r"{\1}", template)


def _operation(builder: _Builder, route: Route) -> Json:
    schema = builder.schema
    request = f".{route.input_type}"
    bound = _path_params(route.template)
    text = " ".join(route.comment.split())
    # The first sentence; the whole comment is the description.
    summary = re.split(r"(?<=[.:])\s", text, maxsplit=1)[0]
    op: Json = {
        # Unique per path and method: an additional binding gets its number.
        "operationId": f"{route.service}_{route.rpc}" + (f"_{route.binding + 1}" if route.binding else ""),
        "tags": [route.service],
        "summary": summary,
    }
    if text != summary:
        op["description"] = text
    params: list[Json] = []
    for name in bound:
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": builder.describe(f"{request}.{name}"),
            }
        )
    if route.body != "*":
        for proto, _json, field in query_leaves(schema, request, ("", ""), set(bound)):
            value = builder.value_schema(*field_kind(schema, field))
            if field.label == F.LABEL_REPEATED:
                value = {"type": "array", "items": value}
            param: Json = {"name": proto, "in": "query", "required": False, "schema": value}
            # Top-level fields have their comment; nested ones (a.b) are named
            # by their path.
            description = builder.describe(f"{request}.{proto}")
            if description:
                param["description"] = description
            params.append(param)
    if params:
        op["parameters"] = params
    if route.body == "*":
        body_name = builder.message(
            request,
            skip=frozenset(bound),
            # Per binding: another binding of the same request may bind
            # other fields in its path (which its body then leaves out).
            as_name=f"{_schema_name(request)}Body{route.binding + 1 if route.binding else ''}"
            if bound
            else None,
        )
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body_name}"}}},
        }
    response = f".{route.output_type}"
    if response == ".google.protobuf.Empty":
        ok_schema: Json = {"type": "object", "additionalProperties": False}
    else:
        builder.message(response)
        ok_schema = _ref(response)
    op["responses"] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": ok_schema}}},
        "default": {
            "description": "An error (docs/rest-errors.md).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
        },
    }
    return op


def _routes(schema: Schema) -> list[Route]:
    return sorted(schema.routes(), key=lambda r: (r.template, r.method))


def build(files: descriptor_pb2.FileDescriptorSet) -> Json:
    """The OpenAPI document as a dict."""
    schema = Schema(files)
    builder = _Builder(schema)
    paths: dict[str, Json] = {}
    for route in _routes(schema):
        path_pattern(route.template)  # refuses templates the REST check cannot match either
        paths.setdefault(_openapi_path(route.template), {})[route.method.lower()] = _operation(builder, route)
    builder.components["Status"] = ERROR_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chronosched REST API",
            "version": "v1",
            "description": (
                "Generated by scripts/gen.py from proto/chronosched/v1 (do not edit). "
                "JSON uses proto field names; 64-bit integers are strings; enums are names; "
                "durations are strings of seconds. Served by Envoy's gRPC-JSON transcoder."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths,
        "components": {"schemas": dict(sorted(builder.components.items()))},
    }


def render_yaml(files: descriptor_pb2.FileDescriptorSet) -> str:
    header = "# Generated by scripts/gen.py from proto/chronosched/v1. Do not edit.\n"
    return header + yaml.safe_dump(build(files), sort_keys=False, allow_unicode=True, width=100)


def _type_text(schema: Json) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "allOf" in schema:
        return _type_text(schema["allOf"][0])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}))}" if schema.get("items") else "list"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type_text(schema['additionalProperties'])}"
    if "enum" in schema:
        return "enum"
    fmt = schema.get("format")
    if kind == "string" and fmt in ("int64", "uint64"):
        return f"{fmt} (a JSON string)"
    if kind == "string" and "pattern" in schema and "s$" in schema["pattern"]:
        return 'duration ("90s")'
    if kind == "string" and fmt == "date-time":
        return "timestamp (RFC 3339)"
    if kind is None:
        return "any JSON value"
    return f"{kind}" + (f" ({fmt})" if fmt else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(files: descriptor_pb2.FileDescriptorSet) -> str:
    """docs/rest-reference.md: every endpoint with its fields, then every type."""
    doc = build(files)
    schemas: dict[str, Json] = doc["components"]["schemas"]
    out = [
        "<!-- Generated by scripts/gen.py from proto/chronosched/v1. Do not edit. -->",
        "# REST reference",
        "",
        "Every endpoint under `/api/v1` (and `/healthz`), generated from the proto",
        "files with the OpenAPI document beside it (`docs/openapi.yaml`). JSON uses",
        "the proto field names; 64-bit integers are JSON strings, 32-bit ones",
        "numbers; enums are their names; durations are strings of seconds",
        '(`"90s"`); timestamps RFC 3339. Bodies must be strict JSON with known',
        "fields only, and every error has the shape in docs/rest-errors.md.",
        "",
        "Required: the server refuses the request without it. Output only: set by",
        "the server, never read from a request.",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, Json]]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append((method.upper(), path, op))
    for tag in sorted(by_tag):
        out.append(f"## {tag}")
        out.append("")
        for method, path, op in by_tag[tag]:
            out.append(f"### `{method} {path}`")
            out.append("")
            out.append(op.get("description") or op["summary"])
            out.append("")
            params = op.get("parameters", [])
            if params:
                out.append("| parameter | in | type | description |")
                out.append("|---|---|---|---|")
                for p in params:
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_type_text(p['schema'])} | "
                        f"{_cell(p.get('description', '') or p['schema'].get('description', ''))} |"
                    )
                out.append("")
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                out.append(f"Body: {_type_text({'$ref': ref})}.")
                out.append("")
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            out.append(f"Answer: {_type_text(ok) if '$ref' in ok else 'an empty object'}.")
            out.append("")
    out.append("## Types")
    out.append("")
    for name, schema in schemas.items():
        out.append(f"### {name}")
        out.append("")
        if schema.get("description"):
            out.append(schema["description"])
            out.append("")
        if "enum" in schema:
            out.append("Values: " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".")
            out.append("")
            continue
        props: Json = schema.get("properties", {})
        if not props:
            continue
        required = set(schema.get("required", []))
        out.append("| field | type | | description |")
        out.append("|---|---|---|---|")
        for field, spec in props.items():
            marks = []
            if field in required:
                marks.append("required")
            if spec.get("readOnly"):
                marks.append("output only")
            description = _cell(spec.get("description", ""))
            out.append(f"| `{field}` | {_type_text(spec)} | {', '.join(marks)} | {description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
