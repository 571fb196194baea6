"""REST calls and checks for the end-to-end tests: JSON through the real
Envoy (grpc_json_transcoder) to the gRPC server."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

# gRPC codes as they appear in {"code": ...} error bodies.
INVALID_ARGUMENT = 3
NOT_FOUND = 5
ALREADY_EXISTS = 6
FAILED_PRECONDITION = 9

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

Json = dict[str, Any]


def ok(resp: httpx.Response) -> Json:
    assert resp.status_code == 200, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    assert resp.headers["content-type"].startswith("application/json")
    body: Json = resp.json()
    return body


def error(resp: httpx.Response, http_status: int, grpc_code: int) -> Json:
    """Assert a gRPC error rendered by the transcoder; returns the body."""
    assert resp.status_code == http_status, f"{resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    body: Json = resp.json()
    assert body["code"] == grpc_code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["details"], list), body
    return body


def details(body: Json, type_url: str) -> list[Json]:
    return [d for d in body["details"] if d["@type"] == type_url]


def violated_fields(body: Json) -> list[str]:
    return [v["field"] for d in details(body, BAD_REQUEST) for v in d["field_violations"]]


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def create_definition(api: httpx.Client, ns: str, name: str = "noop", **fields: Any) -> Json:
    body: Json = {"name": name, "kind": "noop", **fields}
    return ok(api.post(f"/api/v1/definitions/{ns}", json=body))


def create_dag(
    api: httpx.Client,
    ns: str,
    def_id: str,
    keys: list[str],
    edges: list[tuple[str, str]],
    *,
    start: bool = True,
) -> Json:
    body = {
        "name": "e2e",
        "jobs": [{"key": k, "def_id": def_id, "payload": {"key": k}} for k in keys],
        "dependencies": [{"parent": p, "child": c} for p, c in edges],
        "start": start,
    }
    return ok(api.post(f"/api/v1/dags/{ns}", json=body))


def dag_jobs(api: httpx.Client, ns: str, dag_id: str) -> dict[str, Json]:
    """key -> job for every job of the DAG."""
    page = ok(api.get(f"/api/v1/dags/{ns}/{dag_id}/jobs", params={"page_size": 1000}))
    assert page["next_page_token"] == ""
    return {j["key"]: j for j in page["jobs"]}


def states(api: httpx.Client, ns: str, dag_id: str) -> dict[str, str]:
    return {k: j["state"] for k, j in dag_jobs(api, ns, dag_id).items()}


def get_dag(api: httpx.Client, ns: str, dag_id: str) -> Json:
    return ok(api.get(f"/api/v1/dags/{ns}/{dag_id}"))


def complete(api: httpx.Client, job_id: str, result: Json | None = None) -> Json:
    return ok(api.post(f"/api/v1/jobs/{job_id}/complete", json={"result": result or {"ok": True}}))
