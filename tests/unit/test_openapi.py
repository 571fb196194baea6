"""docs/openapi.yaml: a valid OpenAPI 3.1 document that lists exactly the
google.api.http bindings of the transcoded services (read here from the
generated Python descriptors, not from the generator's own schema code)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2
from openapi_spec_validator import validate

from chronosched.v1 import (
    admin_pb2,
    dag_pb2,
    definition_pb2,
    job_pb2,
    namespace_pb2,
    schedule_pb2,
    token_pb2,
    worker_pb2,
)

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
MODULES = (admin_pb2, dag_pb2, definition_pb2, job_pb2, namespace_pb2, schedule_pb2, token_pb2, worker_pb2)


def _document() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _bindings() -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    if verb is not None:
                        out.add((verb, getattr(binding, verb)))
    return out


def test_document_is_valid_openapi() -> None:
    validate(_document())


def test_document_lists_every_binding_and_nothing_else() -> None:
    doc = _document()
    listed = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert listed == _bindings()


def test_request_bodies_are_closed_and_leave_out_path_fields() -> None:
    doc = _document()
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        bound = set(re.findall(r"\{([a-z_]+)\}", path))
        for op in ops.values():
            if "requestBody" not in op:
                continue
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            body = schemas[ref.rsplit("/", 1)[1]]
            # The REST check refuses unknown fields, so the document says so.
            assert body["additionalProperties"] is False, ref
            assert not bound & set(body["properties"]), (path, ref)


def test_json_types_follow_proto3_json() -> None:
    schemas = _document()["components"]["schemas"]
    dag = schemas["Dag"]["properties"]
    # int32 counts are numbers, int64 ones strings, enums names.
    assert dag["job_count"]["type"] == "integer"
    assert schemas["PruneResponse"]["properties"]["jobs_pruned"]["type"] == "string"
    assert schemas["Job_State"]["enum"][:2] == ["STATE_UNSPECIFIED", "STATE_PENDING"]
    assert schemas["JobDefinition"]["properties"]["backoff_initial"]["pattern"].endswith("s$")
