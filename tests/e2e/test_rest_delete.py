"""The two DELETEs over REST through the real Envoy: retiring a definition
name (DELETE /api/v1/definitions/{namespace_id}/{def_id}) and deleting a
namespace (DELETE /api/v1/namespaces/{namespace_id}), with their 200, 400,
404 and 405 shapes."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.rest import (
    ALREADY_EXISTS,
    ERROR_INFO,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    Json,
    complete,
    create_dag,
    create_definition,
    dag_jobs,
    details,
    error,
    ok,
    violated_fields,
)

pytestmark = pytest.mark.timeout(120)

UNIMPLEMENTED = 12


def info(body: Json) -> Json:
    (found,) = details(body, ERROR_INFO)
    return found


def test_retire_over_rest(api: httpx.Client, ns: str) -> None:
    v1 = create_definition(api, ns, "beat", cron_spec="0 0 * * *")
    v2 = create_definition(api, ns, "beat", cron_spec="0 1 * * *")
    url = f"/api/v1/definitions/{ns}/{v1['def_id']}"

    retired = ok(api.delete(url))
    assert retired["def_id"] == v1["def_id"] and retired["retire_time"] and retired["next_fire_times"] == []
    # Read as before, marked; again is the same answer.
    assert ok(api.get(url))["retire_time"] == retired["retire_time"]
    listed = ok(api.get(f"/api/v1/definitions/{ns}", params={"name": "beat"}))["definitions"]
    assert [d["retire_time"] for d in listed] == [retired["retire_time"]] * 2
    assert ok(api.delete(f"/api/v1/definitions/{ns}/{v2['def_id']}"))["retire_time"] == retired["retire_time"]
    assert ok(api.delete(url)) == ok(api.get(url))

    # New work of it: 400 FAILED_PRECONDITION naming it.
    body = error(api.post(f"{url}/tick", json={}), 400, FAILED_PRECONDITION)
    assert info(body)["reason"] == "DEFINITION_RETIRED"
    assert info(body)["metadata"]["name"] == "beat" and "retired" in body["message"]
    dag = {"name": "x", "jobs": [{"key": "a", "def_id": v2["def_id"]}], "start": True}
    body = error(api.post(f"/api/v1/dags/{ns}", json=dag), 400, FAILED_PRECONDITION)
    assert info(body)["metadata"]["field"] == "jobs[0].def_id"
    schedule = ok(api.get(f"/api/v1/schedules/{ns}/beat"))
    assert schedule["retire_time"] == retired["retire_time"] and schedule["next_fire_times"] == []
    body = error(api.post(f"/api/v1/schedules/{ns}/beat/pause", json={}), 400, FAILED_PRECONDITION)
    assert info(body)["reason"] == "DEFINITION_RETIRED"

    # The name again: a live version 3.
    v3 = create_definition(api, ns, "beat", cron_spec="0 2 * * *")
    assert v3["version"] == 3 and v3.get("retire_time") is None
    assert len(ok(api.get(f"/api/v1/schedules/{ns}/beat"))["next_fire_times"]) == 5


def test_retire_errors_over_rest(api: httpx.Client, ns: str) -> None:
    body = error(api.delete(f"/api/v1/definitions/{ns}/not-a-uuid"), 400, INVALID_ARGUMENT)
    assert violated_fields(body) == ["def_id"]
    body = error(api.delete(f"/api/v1/definitions/{ns}/{uuid.uuid4()}"), 404, NOT_FOUND)
    assert info(body)["reason"] == "DEFINITION_NOT_FOUND"
    body = error(
        api.delete(f"/api/v1/definitions/missing-{uuid.uuid4().hex[:8]}/{uuid.uuid4()}"), 404, NOT_FOUND
    )
    assert info(body)["reason"] == "NAMESPACE_NOT_FOUND"


def test_namespace_delete_over_rest(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns, "manual", kind="manual")
    created = create_dag(api, ns, d["def_id"], ["a"], [])
    url = f"/api/v1/namespaces/{ns}"

    body = error(api.delete(url), 400, FAILED_PRECONDITION)
    assert info(body)["reason"] == "NAMESPACE_NOT_EMPTY"
    assert info(body)["metadata"] == {
        "namespace_id": ns,
        "live_dags": "1",
        "unfinished_jobs": "1",
        "unretired_definitions": "1",
    }
    assert "1 live DAG, 1 unfinished job, 1 unretired definition" in body["message"]

    complete(api, dag_jobs(api, ns, created["dag_id"])["a"]["job_id"])
    ok(api.delete(f"/api/v1/definitions/{ns}/{d['def_id']}"))
    assert ok(api.delete(url)) == {}
    assert info(error(api.get(url), 404, NOT_FOUND))["reason"] == "NAMESPACE_NOT_FOUND"
    assert info(error(api.delete(url), 404, NOT_FOUND))["reason"] == "NAMESPACE_NOT_FOUND"
    assert error(api.get(f"/api/v1/dags/{ns}/{created['dag_id']}"), 404, NOT_FOUND)

    # The id is free again (and, like any id, cannot be taken twice).
    ok(api.post("/api/v1/namespaces", json={"namespace_id": ns}))
    body = error(api.post("/api/v1/namespaces", json={"namespace_id": ns}), 409, ALREADY_EXISTS)
    assert info(body)["reason"] == "NAMESPACE_EXISTS"
    assert ok(api.get(f"/api/v1/definitions/{ns}"))["definitions"] == []


def test_namespace_delete_errors_over_rest(api: httpx.Client) -> None:
    body = error(api.delete("/api/v1/namespaces/Bad_Id"), 400, INVALID_ARGUMENT)
    assert violated_fields(body) == ["namespace_id"]


def test_the_delete_paths_allow_their_methods(api: httpx.Client, ns: str) -> None:
    for path in (f"/api/v1/namespaces/{ns}", f"/api/v1/definitions/{ns}/{uuid.uuid4()}"):
        resp = api.put(path)
        assert resp.status_code == 405, resp.text
        assert set(resp.headers["allow"].split(", ")) == {"GET", "DELETE"}
        assert resp.json()["code"] == UNIMPLEMENTED
