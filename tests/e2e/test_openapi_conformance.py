"""Real REST answers through Envoy match docs/openapi.yaml: each 200 body
validates against its operation's schema and each error against Status.

The document is generated from the proto; this is where it meets what the
transcoder actually prints (int32 as numbers, int64 as strings, enums by
name, unset messages left out, no field the document does not list)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from tests.support.rest import ok

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            op: dict[str, Any] = ops[method.lower()]
            return op
    raise AssertionError(f"{method} {path} is not in the document")


def check(doc: dict[str, Any], resp: httpx.Response) -> Any:
    op = _operation(doc, resp.request.method, resp.request.url.path)
    status = "200" if resp.status_code == 200 else "default"
    schema = op["responses"][status]["content"]["application/json"]["schema"]
    body = resp.json()
    # Refs are "#/components/...", so the components travel with the schema.
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(body)
    return body


def test_answers_match_the_document(api: httpx.Client, document: dict[str, Any]) -> None:
    ns = f"o-{uuid.uuid4().hex[:12]}"
    calls: list[httpx.Response] = []

    def call(method: str, path: str, **kwargs: Any) -> Any:
        resp = api.request(method, path, **kwargs)
        calls.append(resp)
        return check(document, resp)

    call("POST", "/api/v1/namespaces", json={"namespace_id": ns, "description": "openapi"})
    call("GET", "/api/v1/namespaces")
    call("GET", f"/api/v1/namespaces/{ns}")
    manual = call(
        "POST", f"/api/v1/definitions/{ns}", json={"name": "m", "kind": "manual", "max_attempts": 2}
    )
    cron = call(
        "POST",
        f"/api/v1/definitions/{ns}",
        json={"name": "c", "kind": "manual", "cron_spec": "@daily", "backoff_initial": "1.5s"},
    )
    call("GET", f"/api/v1/definitions/{ns}")
    call("GET", f"/api/v1/definitions/{ns}/{manual['def_id']}")
    call("GET", f"/api/v1/definitions/{ns}/{cron['def_id']}/fires")
    call("GET", f"/api/v1/schedules/{ns}/c")
    call("POST", f"/api/v1/schedules/{ns}/c/pause", json={})
    call("POST", f"/api/v1/schedules/{ns}/c/resume", json={})
    dag = call(
        "POST",
        f"/api/v1/dags/{ns}",
        json={
            "name": "d",
            "jobs": [
                {"key": "a", "def_id": manual["def_id"], "payload": {"x": [1, "y", None]}},
                {"key": "b", "def_id": manual["def_id"]},
            ],
            "dependencies": [{"parent": "a", "child": "b"}],
            "start": True,
        },
    )
    dag_id = dag["dag_id"]
    jobs = call("GET", f"/api/v1/dags/{ns}/{dag_id}/jobs")["jobs"]
    call("GET", f"/api/v1/dags/{ns}/{dag_id}/dependencies")
    call("POST", f"/api/v1/jobs/{jobs[0]['job_id']}/complete", json={"result": {"rows": 3}})
    call("POST", f"/api/v1/jobs/{jobs[1]['job_id']}/fail", json={"error": "boom"})
    call("GET", f"/api/v1/jobs/{ns}/{jobs[1]['job_id']}")
    call("GET", f"/api/v1/jobs/{ns}", params={"state": "STATE_READY"})
    call("GET", f"/api/v1/dags/{ns}")
    call("GET", f"/api/v1/dags/{ns}/{dag_id}")
    call("POST", f"/api/v1/dags/{ns}/{dag_id}/cancel", json={})
    built = call("POST", f"/api/v1/dags/{ns}", json={"name": "built"})
    added = call(
        "POST",
        f"/api/v1/dags/{ns}/{built['dag_id']}/jobs",
        json={"jobs": [{"key": k, "def_id": manual["def_id"]} for k in ("p", "q", "r")]},
    )
    ids = [j["job_id"] for j in added["jobs"]]
    call(
        "POST",
        f"/api/v1/dags/{ns}/{built['dag_id']}/dependencies",
        json={"parent_job_id": ids[0], "child_job_id": ids[1]},
    )
    call(
        "POST",
        f"/api/v1/dags/{ns}/{built['dag_id']}/dependencies/bulk",
        json={"dependencies": [{"parent_job_id": ids[1], "child_job_id": ids[2]}]},
    )
    call("POST", f"/api/v1/dags/{ns}/{built['dag_id']}/start", json={})
    call("POST", f"/api/v1/definitions/{ns}/{manual['def_id']}/tick", json={})
    call(
        "POST",
        f"/api/v1/jobs/{ns}",
        json={
            "jobs": [
                {"def_id": manual["def_id"]},
                {"defId": manual["def_id"], "payload": {"x": 1}, "priority": 3},
            ]
        },
    )
    # The namespaced result paths, and tokens (this `up` runs without auth).
    for verb, body in (("complete", {"result": {}}), ("fail", {"error": "boom", "non_retryable": True})):
        ticked = call("POST", f"/api/v1/definitions/{ns}/{manual['def_id']}/tick", json={})
        call("POST", f"/api/v1/jobs/{ns}/{ticked['job_id']}/{verb}", json=body)
    made = call("POST", "/api/v1/tokens", json={"scope": "SCOPE_READ", "namespace_id": ns, "ttl": "3600s"})
    call("GET", "/api/v1/tokens", params={"namespace_id": ns})
    call("GET", "/api/v1/workers", params={"page_size": 10})
    call("GET", f"/api/v1/workers/{ns}")
    call("DELETE", f"/api/v1/tokens/{made['token']['token_id']}")
    call("DELETE", f"/api/v1/dags/{ns}/{built['dag_id']}")
    call("DELETE", f"/api/v1/definitions/{ns}/{cron['def_id']}")
    call("POST", "/api/v1/admin/prune", json={"older_than": "3600s"})
    call("GET", "/healthz")
    # Errors validate against Status.
    call("GET", f"/api/v1/namespaces/{ns}-missing")
    call("POST", f"/api/v1/dags/{ns}", json={"name": 5})

    unexpected = [
        (r.request.method, r.request.url.path, r.status_code, r.text[:300])
        for r in calls
        if r.status_code not in (200, 400, 404)
    ]
    assert not unexpected
    assert sum(r.status_code == 200 for r in calls) >= 30
    # Every operation of the document was exercised except the namespace
    # delete, which needs an empty namespace: do it last.
    call("DELETE", f"/api/v1/definitions/{ns}/{manual['def_id']}")
    leftover = ok(api.get(f"/api/v1/jobs/{ns}"))["jobs"]
    for job in leftover:
        if job["state"] in ("STATE_READY", "STATE_RUNNING"):
            ok(api.post(f"/api/v1/jobs/{job['job_id']}/complete", json={}))
    call("DELETE", f"/api/v1/namespaces/{ns}")
    exercised = {(r.request.method.lower(), _template(document, r)) for r in calls}
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert documented <= exercised, documented - exercised


def _template(doc: dict[str, Any], resp: httpx.Response) -> str:
    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, resp.request.url.path) and resp.request.method.lower() in ops:
            return str(template)
    return ""
