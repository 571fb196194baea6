"""The REST check (envoy/lua/rest_check.lua) through the real Envoy: strict
JSON, known fields, JSON types that match the proto, enum spellings and query
parameters, each refused with a 400 that names the field.

The cases are derived here from the generated Python descriptors, not from
the Lua schema the check runs on, so a field the schema forgot or typed
wrongly fails a case instead of agreeing with itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chronosched.v1 import (
    admin_pb2,
    dag_pb2,
    definition_pb2,
    job_pb2,
    namespace_pb2,
    schedule_pb2,
)
from tests.e2e.conftest import UpProcess
from tests.support.rest import (
    BAD_REQUEST,
    ERROR_INFO,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    Json,
    details,
    error,
    ok,
)

pytestmark = pytest.mark.timeout(120)

FD = descriptor.FieldDescriptor
MODULES = (admin_pb2, dag_pb2, definition_pb2, job_pb2, namespace_pb2, schedule_pb2)


@dataclass(frozen=True)
class Binding:
    method: str
    template: str
    body: str
    request: descriptor.Descriptor


def _bindings() -> list[Binding]:
    out: list[Binding] = []
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                if verb is None:
                    continue
                out.append(Binding(verb.upper(), getattr(rule, verb), rule.body, method.input_type))
    return out


BINDINGS = _bindings()


def _fill(template: str) -> str:
    return re.sub(
        r"\{[^}]+\}", lambda m: "team-x" if m.group(0) == "{namespace_id}" else str(uuid.uuid4()), template
    )


def _bound(template: str) -> set[str]:
    return set(re.findall(r"\{([^}=]+)", template))


def refusal(resp: httpx.Response) -> list[Json]:
    """A 400 from the REST check: the server's INVALID_ARGUMENT shape, with
    an ErrorInfo and a BadRequest; returns the field violations."""
    body = error(resp, 400, INVALID_ARGUMENT)
    assert set(body) == {"code", "message", "details"}, body
    (info,) = details(body, ERROR_INFO)
    assert info["domain"] == "chronosched.dev", body
    assert info["reason"] in ("INVALID_ARGUMENT", "INVALID_JSON"), body
    (bad,) = details(body, BAD_REQUEST)
    violations: list[Json] = bad["field_violations"]
    assert violations, body
    for v in violations:
        assert v["reason"], body
        assert v["description"], body
    return violations


def post_raw(api: httpx.Client, path: str, text: str) -> httpx.Response:
    return api.post(path, content=text.encode(), headers={"content-type": "application/json"})


# --- every field of every body, given a value of the wrong JSON type -------------

# JSON values no field of the kind accepts, and the reason each must get.
_WELL_KNOWN: dict[str, list[tuple[Any, str]]] = {
    "google.protobuf.Duration": [({}, "WRONG_TYPE"), ("5 minutes", "INVALID_FORMAT"), (90, "WRONG_TYPE")],
    "google.protobuf.Timestamp": [(5, "WRONG_TYPE"), ("yesterday", "INVALID_FORMAT")],
    "google.protobuf.Struct": [([], "WRONG_TYPE"), ("x", "WRONG_TYPE")],
}
_SCALAR_BAD: dict[int, list[tuple[Any, str]]] = {
    FD.CPPTYPE_STRING: [(5, "WRONG_TYPE"), (True, "WRONG_TYPE"), ({}, "WRONG_TYPE")],
    FD.CPPTYPE_BOOL: [("yes", "WRONG_TYPE"), (1, "WRONG_TYPE"), ("true", "WRONG_TYPE")],
    FD.CPPTYPE_INT32: [
        ("two", "WRONG_TYPE"),
        (1.5, "WRONG_TYPE"),
        (True, "WRONG_TYPE"),
        (2**31, "OUT_OF_RANGE"),
    ],
    FD.CPPTYPE_INT64: [("two", "WRONG_TYPE"), (1.5, "WRONG_TYPE"), ([], "WRONG_TYPE")],
    FD.CPPTYPE_UINT32: [(-1, "OUT_OF_RANGE"), ("x", "WRONG_TYPE")],
    FD.CPPTYPE_UINT64: [(-1, "OUT_OF_RANGE"), ("x", "WRONG_TYPE")],
    FD.CPPTYPE_DOUBLE: [("fast", "WRONG_TYPE"), (True, "WRONG_TYPE")],
    FD.CPPTYPE_FLOAT: [("fast", "WRONG_TYPE"), (True, "WRONG_TYPE")],
    FD.CPPTYPE_ENUM: [("BOGUS", "UNKNOWN_VALUE"), (True, "WRONG_TYPE"), (9999, "UNKNOWN_VALUE")],
}


def _bad_values(field: descriptor.FieldDescriptor) -> list[tuple[Any, str]]:
    if field.is_repeated:
        return [({}, "WRONG_TYPE"), ("x", "WRONG_TYPE")]
    if field.message_type is not None:
        known: list[tuple[Any, str]] | None = _WELL_KNOWN.get(field.message_type.full_name)
        if known is not None:
            return known
        return [("x", "WRONG_TYPE"), ([], "WRONG_TYPE")]
    return _SCALAR_BAD[field.cpp_type]


@dataclass(frozen=True)
class Case:
    binding: Binding
    body: Json
    field: str
    reason: str

    @property
    def id(self) -> str:
        return f"{self.binding.method} {self.binding.template} {self.field}={self.body_value!r}"

    @property
    def body_value(self) -> Any:
        value: Any = self.body
        while isinstance(value, dict) and len(value) == 1:
            (value,) = value.values()
            if isinstance(value, list) and value and isinstance(value[0], dict):
                value = value[0]
        return value


def _cases() -> Iterator[Case]:
    for binding in BINDINGS:
        if binding.body != "*":
            continue
        skip = _bound(binding.template)
        for field in binding.request.fields:
            if field.name in skip:
                continue
            for value, reason in _bad_values(field):
                yield Case(binding, {field.name: value}, field.name, reason)
            # One level down, through a list of messages or a message.
            nested = field.message_type
            if nested is None or nested.full_name.startswith("google.protobuf."):
                continue
            for sub in nested.fields:
                value, reason = _bad_values(sub)[0]
                inner = {sub.name: value}
                if field.is_repeated:
                    yield Case(binding, {field.name: [inner]}, f"{field.name}[0].{sub.name}", reason)
                else:
                    yield Case(binding, {field.name: inner}, f"{field.name}.{sub.name}", reason)


CASES = list(_cases())


def test_every_body_binding_has_cases() -> None:
    # The derivation above is what the next test relies on; if it found
    # nothing, every case would pass vacuously.
    bodies = {(b.method, b.template) for b in BINDINGS if b.body == "*"}
    covered = {(c.binding.method, c.binding.template) for c in CASES}
    empty_requests = {
        (b.method, b.template)
        for b in BINDINGS
        if b.body == "*" and not [f for f in b.request.fields if f.name not in _bound(b.template)]
    }
    assert bodies - empty_requests <= covered
    assert len(bodies) >= 14 and len(CASES) >= 100, (len(bodies), len(CASES))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_wrong_json_type_is_a_400_naming_the_field(api: httpx.Client, case: Case) -> None:
    resp = api.post(_fill(case.binding.template), json=case.body)
    violations = refusal(resp)
    assert [(v["field"], v["reason"]) for v in violations] == [(case.field, case.reason)], violations


# --- strict JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('{"namespace_id": "a",}', "", "trailing comma"),
        ('{"namespace_id": "a", "description": ["x",]}', "description", "trailing comma"),
        ("{'namespace_id': 'a'}", "", "single quote"),
        ('{namespace_id: "a"}', "", "double-quoted key"),
        ('{"namespace_id": "a"} // hi', "", "after the JSON value"),
        ('{"namespace_id": "a" /* c */}', "", "expected ',' or '}'"),
        ('{"namespace_id": NaN}', "namespace_id", "expected a value"),
        ('{"namespace_id": "a", "description": 01}', "description", "leading zero"),
        ('{"namespace_id": "a\tb"}', "namespace_id", "control character"),
        ('{"namespace_id": "a\\qb"}', "namespace_id", "unknown escape"),
        ('{"namespace_id": ', "namespace_id", "expected a value"),
        ('{"namespace_id": "a"', "", "expected ',' or '}'"),
        ('{"namespace_id": "a"}{}', "", "after the JSON value"),
        ("garbage", "", "expected an object"),
    ],
)
def test_body_that_is_not_strict_json_is_a_400(api: httpx.Client, text: str, field: str, words: str) -> None:
    resp = post_raw(api, "/api/v1/namespaces", text)
    (violation,) = refusal(resp)
    assert violation["reason"] == "INVALID_JSON", violation
    assert violation["field"] == field, violation
    assert words in violation["description"], violation
    assert re.search(r"line \d+, column \d+", violation["description"]), violation
    (info,) = details(resp.json(), ERROR_INFO)
    assert info["reason"] == "INVALID_JSON"


def test_the_syntax_error_is_located(api: httpx.Client) -> None:
    text = '{\n  "name": "etl",\n  "jobs": [\n    {"key": "a",}\n  ]\n}'
    (violation,) = refusal(post_raw(api, "/api/v1/dags/team-x", text))
    assert violation["field"] == "jobs[0]", violation
    assert "line 4, column 17" in violation["description"], violation


def test_the_body_must_be_an_object(api: httpx.Client) -> None:
    for text in ("[]", '"x"', "5", "true", "null"):
        (violation,) = refusal(post_raw(api, "/api/v1/namespaces", text))
        assert violation["field"] == "" and violation["reason"] == "WRONG_TYPE", (text, violation)


def test_nesting_is_bounded(api: httpx.Client) -> None:
    # The body's object and payload_template are two levels; 31 arrays more
    # make 33.
    deep = "[" * 31 + "]" * 31
    text = '{"name": "x", "kind": "noop", "payload_template": {"a": ' + deep + "}}"
    (violation,) = refusal(post_raw(api, "/api/v1/definitions/team-x", text))
    assert "nested deeper than 32 levels" in violation["description"], violation
    # 32 levels pass the check, and the server can decode them.
    ok_deep = "[" * 30 + "]" * 30
    ns = f"d-{uuid.uuid4().hex[:12]}"
    ok(api.post("/api/v1/namespaces", json={"namespace_id": ns}))
    text = '{"name": "x", "kind": "noop", "payload_template": {"a": ' + ok_deep + "}}"
    ok(post_raw(api, f"/api/v1/definitions/{ns}", text))


# --- fields -----------------------------------------------------------------------


def test_unknown_field_is_a_400_naming_it(api: httpx.Client) -> None:
    namespace_id = f"u-{uuid.uuid4().hex[:12]}"
    resp = api.post("/api/v1/namespaces", json={"namespace_id": namespace_id, "descripton": "typo"})
    assert [(v["field"], v["reason"]) for v in refusal(resp)] == [("descripton", "UNKNOWN_FIELD")]
    # Nothing was created.
    error(api.get(f"/api/v1/namespaces/{namespace_id}"), 404, 5)


def test_unknown_nested_field_is_named_with_its_path(api: httpx.Client) -> None:
    body = {"name": "etl", "jobs": [{"key": "a", "def_id": str(uuid.uuid4())}, {"key": "b", "defid": "x"}]}
    violations = refusal(api.post("/api/v1/dags/team-x", json=body))
    assert [(v["field"], v["reason"]) for v in violations] == [("jobs[1].defid", "UNKNOWN_FIELD")]


def test_a_field_given_twice_is_a_400(api: httpx.Client) -> None:
    for text in ('{"namespace_id": "a", "namespace_id": "b"}', '{"namespace_id": "a", "namespaceId": "b"}'):
        violations = refusal(post_raw(api, "/api/v1/namespaces", text))
        assert [(v["field"], v["reason"]) for v in violations] == [("namespace_id", "DUPLICATE")], text


def test_every_violation_is_reported_at_once(api: httpx.Client) -> None:
    body = {"name": 1, "kind": 2, "max_attempts": "x", "bogus": 3, "starting_deadline": {}}
    violations = refusal(api.post("/api/v1/definitions/team-x", json=body))
    assert [v["field"] for v in violations] == ["name", "kind", "max_attempts", "bogus", "starting_deadline"]
    many = {f"f{i}": i for i in range(30)}
    resp = api.post("/api/v1/definitions/team-x", json=many)
    assert len(refusal(resp)) == 20
    assert "(and 15 more)" in resp.json()["message"]


def test_well_formed_bodies_pass(api: httpx.Client) -> None:
    ns = f"p-{uuid.uuid4().hex[:12]}"
    # JSON names, null for "not set", ints as strings, enums by number, \u
    # escapes: all proto3 JSON, all accepted.
    ok(post_raw(api, "/api/v1/namespaces", '{"namespaceId": "' + ns + '", "description": "caf\\u00e9"}'))
    assert ok(api.get(f"/api/v1/namespaces/{ns}"))["description"] == "café"
    created = ok(
        api.post(
            f"/api/v1/definitions/{ns}",
            json={
                "name": "n",
                "kind": "noop",
                "maxAttempts": "3",
                "misfire_policy": 1,
                "backoff_initial": "1.5s",
                "starting_deadline": None,
                "payload_template": {"deep": {"list": [1, "a", None, True, {"x": []}]}},
            },
        )
    )
    assert created["max_attempts"] == 3
    assert created["backoff_initial"] == "1.500s"
    # An empty body is an empty message, as before.
    assert api.post(f"/api/v1/dags/{ns}/{uuid.uuid4()}/start", content=b"").status_code == 404


def test_a_large_body_passes(api: httpx.Client, ns: str) -> None:
    # Bodies are read whole for the check; the buffer filter lifts Envoy's
    # 1 MiB default so large DAGs still go through (this one is ~4 MB).
    definition = ok(api.post(f"/api/v1/definitions/{ns}", json={"name": "n", "kind": "noop"}))
    jobs = [
        {"key": f"job-{i:05d}", "def_id": definition["def_id"], "payload": {"pad": "x" * 150}}
        for i in range(20_000)
    ]
    created = ok(api.post(f"/api/v1/dags/{ns}", json={"name": "big", "jobs": jobs}))
    assert created["job_count"] == 20_000


def test_start_yes_no_longer_starts_a_dag(api: httpx.Client, ns: str) -> None:
    definition = ok(api.post(f"/api/v1/definitions/{ns}", json={"name": "n", "kind": "manual"}))
    body = {"name": "d", "jobs": [{"key": "a", "def_id": definition["def_id"]}], "start": "yes"}
    assert [v["field"] for v in refusal(api.post(f"/api/v1/dags/{ns}", json=body))] == ["start"]
    assert ok(api.get(f"/api/v1/dags/{ns}"))["dags"] == []


# --- query strings -----------------------------------------------------------------


def test_enum_filter_error_lists_the_spellings(api: httpx.Client, ns: str) -> None:
    (violation,) = refusal(api.get(f"/api/v1/jobs/{ns}", params={"state": "RUNNING"}))
    assert violation["field"] == "state" and violation["reason"] == "UNKNOWN_VALUE", violation
    spellings = [v.name for v in job_pb2.Job.State.DESCRIPTOR.values]
    assert all(s in violation["description"] for s in spellings), violation
    # The names and the numbers work.
    ok(api.get(f"/api/v1/jobs/{ns}", params={"state": "STATE_RUNNING"}))
    ok(api.get(f"/api/v1/jobs/{ns}", params={"state": str(job_pb2.Job.STATE_RUNNING)}))


def test_query_values_are_typed(api: httpx.Client, ns: str) -> None:
    cases = [
        ({"page_size": "ten"}, "page_size", "WRONG_TYPE"),
        ({"page_size": "99999999999"}, "page_size", "OUT_OF_RANGE"),
        ({"page_size": ""}, "page_size", "WRONG_TYPE"),
        ({"state": ""}, "state", "UNKNOWN_VALUE"),
    ]
    for params, field, reason in cases:
        violations = refusal(api.get(f"/api/v1/jobs/{ns}", params=params))
        assert [(v["field"], v["reason"]) for v in violations] == [(field, reason)], params


def test_a_query_parameter_given_twice_is_a_400(api: httpx.Client, ns: str) -> None:
    violations = refusal(api.get(f"/api/v1/jobs/{ns}?page_size=1&pageSize=2"))
    assert [(v["field"], v["reason"]) for v in violations] == [("page_size", "DUPLICATE")]


def test_unknown_query_parameter_lists_the_accepted_ones(api: httpx.Client, ns: str) -> None:
    (violation,) = refusal(api.get(f"/api/v1/jobs/{ns}", params={"stat": "STATE_READY"}))
    assert violation["field"] == "stat" and violation["reason"] == "UNKNOWN_FIELD", violation
    assert "page_size" in violation["description"] and "state" in violation["description"], violation
    (violation,) = refusal(api.post("/api/v1/namespaces?dry_run=true", json={"namespace_id": "x"}))
    assert "takes no query parameters" in violation["description"], violation


def test_path_fields_cannot_come_from_the_query(api: httpx.Client, ns: str) -> None:
    # The transcoder would let ?job_id= replace the path's job id, and it
    # drops ?namespace_id= silently; both are refused by name.
    job_id = str(uuid.uuid4())
    for params in ({"job_id": str(uuid.uuid4())}, {"namespace_id": "other"}):
        (violation,) = refusal(api.get(f"/api/v1/jobs/{ns}/{job_id}", params=params))
        assert violation["field"] == next(iter(params)) and violation["reason"] == "UNKNOWN_FIELD", violation


# --- results for jobs that already ended --------------------------------------------


def test_outcome_of_an_ended_job(api: httpx.Client, ns: str) -> None:
    definition = ok(
        api.post(f"/api/v1/definitions/{ns}", json={"name": "m", "kind": "manual", "max_attempts": 1})
    )

    def standalone() -> str:
        job = ok(api.post(f"/api/v1/definitions/{ns}/{definition['def_id']}/tick", json={}))
        job_id: str = job["job_id"]
        return job_id

    done = standalone()
    assert (
        ok(api.post(f"/api/v1/jobs/{done}/complete", json={"result": {"n": 1}}))["state"] == "STATE_SUCCEEDED"
    )
    # The same outcome again: an idempotent 200 that changes nothing.
    again = ok(api.post(f"/api/v1/jobs/{done}/complete", json={"result": {"n": 2}}))
    assert again["state"] == "STATE_SUCCEEDED" and again["result"] == {"n": 1}
    # Another outcome: FAILED_PRECONDITION naming the state.
    body = error(api.post(f"/api/v1/jobs/{done}/fail", json={"error": "late"}), 400, FAILED_PRECONDITION)
    assert "SUCCEEDED" in body["message"] and details(body, ERROR_INFO)[0]["reason"] == "JOB_SUCCEEDED"

    failed = standalone()
    assert ok(api.post(f"/api/v1/jobs/{failed}/fail", json={"error": "boom"}))["state"] == "STATE_FAILED"
    assert ok(api.post(f"/api/v1/jobs/{failed}/fail", json={"error": "boom"}))["state"] == "STATE_FAILED"
    body = error(api.post(f"/api/v1/jobs/{failed}/complete", json={}), 400, FAILED_PRECONDITION)
    assert "FAILED" in body["message"] and details(body, ERROR_INFO)[0]["reason"] == "JOB_FAILED"

    dag = ok(
        api.post(
            f"/api/v1/dags/{ns}",
            json={"name": "c", "jobs": [{"key": "a", "def_id": definition["def_id"]}], "start": True},
        )
    )
    ok(api.post(f"/api/v1/dags/{ns}/{dag['dag_id']}/cancel", json={}))
    (job,) = ok(api.get(f"/api/v1/dags/{ns}/{dag['dag_id']}/jobs"))["jobs"]
    assert job["state"] == "STATE_CANCELLED"
    for verb in ("complete", "fail"):
        body = error(api.post(f"/api/v1/jobs/{job['job_id']}/{verb}", json={}), 400, FAILED_PRECONDITION)
        assert "CANCELLED" in body["message"] and details(body, ERROR_INFO)[0]["reason"] == "JOB_CANCELLED"


# --- gRPC through the same Envoy is untouched -------------------------------------


def test_grpc_through_envoy_is_not_checked_or_buffered(up: UpProcess) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{up.http_port}") as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        # A server stream through the buffer-free gRPC route delivers its
        # first message before the stream ends.
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
