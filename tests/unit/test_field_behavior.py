"""Every field of the API says how it behaves (google.api.field_behavior,
AIP-203), by the convention of docs/architecture.md ("Field behavior").

The rules walk the generated descriptor set (envoy/chronosched.pb, the one
Envoy loads). A message is an *input* when an RPC's request reaches it (the
request itself or a message nested in it), an *output* when a response
reaches it; some are both (Dependency, JobRef). What the annotations promise
about inputs is proved against the server in tests/api/test_field_behavior.py.

Each rule is a function from a descriptor set to the problems it finds, so the
last tests can show that each one fails on a set broken on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from chronosched_server.local.envoy import DESCRIPTOR_SET

pytestmark = pytest.mark.timeout(30)

FB = field_behavior_pb2.FieldBehavior
PACKAGE = "chronosched.v1"
REQUIRED, OPTIONAL, OUTPUT_ONLY, IMMUTABLE = "REQUIRED", "OPTIONAL", "OUTPUT_ONLY", "IMMUTABLE"
# The behaviors the convention uses. IDENTIFIER is not among them: it is meant
# for the `name` field of a google.api.resource message, and these resources
# are addressed by plain ids in their paths.
CONVENTION = {REQUIRED, OPTIONAL, OUTPUT_ONLY, IMMUTABLE}
# Fields the server keeps (times, states, counters, version numbers, attempts).
SERVER_KEPT = re.compile(r".*_times?|state|status|.*_count|version|def_version|attempt")
FIELD_TYPE_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE


@dataclass(frozen=True)
class Field:
    message: str  # full name, without the leading dot
    name: str
    type_name: str  # the message type's full name, "" for other types
    behaviors: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.message}.{self.name} {list(self.behaviors)}"


class Api:
    """The chronosched messages of a descriptor set, their fields' behaviors
    and which RPCs reach them."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.fields: dict[str, list[Field]] = {}
        inputs: list[str] = []
        outputs: list[str] = []
        for file in files.file:
            if file.package != PACKAGE:
                continue
            for message in file.message_type:
                self._add(PACKAGE, message)
            for service in file.service:
                for method in service.method:
                    inputs.append(method.input_type.lstrip("."))
                    outputs.append(method.output_type.lstrip("."))
        self.inputs = self._reach(inputs)
        self.outputs = self._reach(outputs)

    def _add(self, prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        self.fields[name] = [
            Field(
                name,
                field.name,
                field.type_name.lstrip(".") if field.type == FIELD_TYPE_MESSAGE else "",
                tuple(FB.Name(b) for b in field.options.Extensions[field_behavior_pb2.field_behavior]),
            )
            for field in message.field
        ]
        for nested in message.nested_type:
            self._add(name, nested)

    def _reach(self, roots: list[str]) -> set[str]:
        seen: set[str] = set()
        todo = [r for r in roots if r in self.fields]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo += [f.type_name for f in self.fields[name] if f.type_name in self.fields]
        return seen

    def all_fields(self) -> Iterator[Field]:
        for fields in self.fields.values():
            yield from fields


# --- the rules -------------------------------------------------------------------


def unannotated(api: Api) -> list[str]:
    """Every field has at least one behavior, each at most once, none unspecified."""
    return [
        str(f)
        for f in api.all_fields()
        if not f.behaviors
        or len(set(f.behaviors)) != len(f.behaviors)
        or "FIELD_BEHAVIOR_UNSPECIFIED" in f.behaviors
    ]


def outside_the_convention(api: Api) -> list[str]:
    return [str(f) for f in api.all_fields() if set(f.behaviors) - CONVENTION]


def contradictions(api: Api) -> list[str]:
    """REQUIRED, OPTIONAL and OUTPUT_ONLY exclude one another."""
    return [str(f) for f in api.all_fields() if len(set(f.behaviors) & {REQUIRED, OPTIONAL, OUTPUT_ONLY}) > 1]


def undecided_inputs(api: Api) -> list[str]:
    """A field a caller sends says whether the server needs it: exactly one
    of REQUIRED or OPTIONAL (never OUTPUT_ONLY, which contradictions()
    already excludes beside them)."""
    return [
        str(f)
        for name in sorted(api.inputs)
        for f in api.fields[name]
        if len(set(f.behaviors) & {REQUIRED, OPTIONAL}) != 1
    ]


def misplaced_outputs(api: Api) -> list[str]:
    """A field only the server sends is OUTPUT_ONLY (the server sets it) or
    IMMUTABLE (the caller chose it at creation); REQUIRED and OPTIONAL describe
    requests and mean nothing there."""
    return [
        str(f)
        for name in sorted(api.outputs - api.inputs)
        for f in api.fields[name]
        if not set(f.behaviors) & {OUTPUT_ONLY, IMMUTABLE} or set(f.behaviors) & {REQUIRED, OPTIONAL}
    ]


def server_kept_not_output_only(api: Api) -> list[str]:
    """Times, states, statuses, counts, versions and attempts of what the
    server sends are the server's to set: OUTPUT_ONLY. A new field such as
    `archive_time` or `retry_count` marked IMMUTABLE (or REQUIRED) fails here."""
    return [
        str(f)
        for name in sorted(api.outputs - api.inputs)
        for f in api.fields[name]
        if SERVER_KEPT.fullmatch(f.name) and OUTPUT_ONLY not in f.behaviors
    ]


def create_time_not_fixed(api: Api) -> list[str]:
    """A create_time is set by the server once: OUTPUT_ONLY and IMMUTABLE."""
    return [
        str(f)
        for f in api.all_fields()
        if f.name == "create_time" and not {OUTPUT_ONLY, IMMUTABLE} <= set(f.behaviors)
    ]


def unreached(api: Api) -> list[str]:
    """Every message is some RPC's request or response, or nested in one, so
    the rules above classify every field."""
    return sorted(set(api.fields) - api.inputs - api.outputs)


RULES: list[Callable[[Api], list[str]]] = [
    unannotated,
    outside_the_convention,
    contradictions,
    undecided_inputs,
    misplaced_outputs,
    server_kept_not_output_only,
    create_time_not_fixed,
    unreached,
]


def load() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_the_api_keeps_the_rule(rule: Callable[[Api], list[str]]) -> None:
    assert rule(Api(load())) == []


def test_the_walk_sees_the_whole_api() -> None:
    api = Api(load())
    # A walk that found nothing would pass every rule.
    assert len(api.fields) >= 60 and sum(1 for _ in api.all_fields()) >= 250
    # Worker stream messages are classified by reach like the rest.
    assert {"chronosched.v1.Subscribe", "chronosched.v1.JobResult"} <= api.inputs - api.outputs
    assert {"chronosched.v1.Assignment", "chronosched.v1.Job"} <= api.outputs - api.inputs
    assert {"chronosched.v1.JobRef", "chronosched.v1.Dependency"} <= api.inputs & api.outputs


# --- each rule can fail ----------------------------------------------------------


def _field(
    files: descriptor_pb2.FileDescriptorSet, message: str, name: str
) -> descriptor_pb2.FieldDescriptorProto:
    for file in files.file:
        if file.package != PACKAGE:
            continue
        for m in file.message_type:
            if m.name == message:
                return next(f for f in m.field if f.name == name)
    raise LookupError(f"{message}.{name}")


def _set(files: descriptor_pb2.FileDescriptorSet, message: str, name: str, *behaviors: str) -> None:
    values = _field(files, message, name).options.Extensions[field_behavior_pb2.field_behavior]
    del values[:]
    values.extend(FB.Value(b) for b in behaviors)


@pytest.mark.parametrize(
    ("rule", "message", "field", "behaviors"),
    [
        (unannotated, "Job", "worker_id", ()),
        (unannotated, "GetJobRequest", "job_id", (REQUIRED, REQUIRED)),
        (outside_the_convention, "Job", "job_id", ("IDENTIFIER",)),
        (contradictions, "CreateNamespaceRequest", "description", (REQUIRED, OPTIONAL)),
        (contradictions, "TickRequest", "def_id", (REQUIRED, OUTPUT_ONLY)),
        (undecided_inputs, "ListJobsRequest", "state", (IMMUTABLE,)),
        (undecided_inputs, "Subscribe", "kinds", (OUTPUT_ONLY,)),
        (misplaced_outputs, "Dag", "name", (OPTIONAL,)),
        (misplaced_outputs, "ResultAck", "reason", (REQUIRED,)),
        (server_kept_not_output_only, "Job", "end_time", (IMMUTABLE,)),
        (server_kept_not_output_only, "Dag", "unfinished_job_count", (IMMUTABLE,)),
        (server_kept_not_output_only, "JobDefinition", "version", (IMMUTABLE,)),
        (create_time_not_fixed, "Namespace", "create_time", (OUTPUT_ONLY,)),
    ],
)
def test_a_broken_annotation_is_caught(
    rule: Callable[[Api], list[str]], message: str, field: str, behaviors: tuple[str, ...]
) -> None:
    files = load()
    _set(files, message, field, *behaviors)
    found = rule(Api(files))
    assert [p for p in found if p.startswith(f"{PACKAGE}.{message}.{field} ")], found


def test_a_message_no_rpc_reaches_is_caught() -> None:
    files = load()
    file = next(f for f in files.file if f.package == PACKAGE)
    file.message_type.add(name="Orphan").field.add(
        name="x", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32
    )
    assert unreached(Api(files)) == [f"{PACKAGE}.Orphan"]
