"""The REST surface end to end: httpx → the real Envoy
(grpc_json_transcoder) → the gRPC server → embedded PostgreSQL, all started by
`chronosched up`.

Assertions are on parsed JSON, HTTP status codes, gRPC codes in error bodies
and resource states; never on raw bytes.
"""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from tests.e2e.conftest import UpProcess
from tests.support.rest import (
    ALREADY_EXISTS,
    ERROR_INFO,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    complete,
    create_dag,
    create_definition,
    dag_jobs,
    details,
    error,
    get_dag,
    is_uuid,
    ok,
    states,
    violated_fields,
)

pytestmark = pytest.mark.timeout(120)

# --- health and transcoder behaviour -------------------------------------------


def test_healthz(api: httpx.Client) -> None:
    body = ok(api.get("/healthz"))
    assert body["status"] == "SERVING"
    assert body["version"]


def test_grpc_passes_through_envoy(up: UpProcess) -> None:
    # Envoy's route "/" also carries plain gRPC to the server (HTTP/2 upstream).
    with grpc.insecure_channel(f"127.0.0.1:{up.http_port}") as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        reply = check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_unknown_query_parameter_is_rejected(api: httpx.Client) -> None:
    resp = api.get("/api/v1/namespaces", params={"bogus": "1"})
    assert resp.status_code == 400
    # Rejected by the transcoder itself (as a JSON error), naming the parameter.
    assert "bogus" in resp.text


def test_unknown_path_is_404_and_a_wrong_method_405(api: httpx.Client) -> None:
    assert api.get("/api/v1/nothing-here").status_code == 404
    # A known path with a method it does not take (details in test_rest_errors.py).
    assert api.put("/api/v1/namespaces").status_code == 405


# --- namespaces --------------------------------------------------------------


def test_namespace_create_get_list_and_duplicate(api: httpx.Client) -> None:
    namespace_id = f"e2e-{uuid.uuid4().hex[:10]}"
    created = ok(api.post("/api/v1/namespaces", json={"namespace_id": namespace_id, "description": "team"}))
    assert created["namespace_id"] == namespace_id
    assert created["description"] == "team"
    assert created["create_time"].endswith("Z")

    assert ok(api.get(f"/api/v1/namespaces/{namespace_id}")) == created
    listed = ok(api.get("/api/v1/namespaces", params={"page_size": 1000}))
    assert namespace_id in [n["namespace_id"] for n in listed["namespaces"]]

    dup = error(api.post("/api/v1/namespaces", json={"namespace_id": namespace_id}), 409, ALREADY_EXISTS)
    infos = details(dup, ERROR_INFO)
    assert len(infos) == 1 and infos[0]["reason"], dup


def test_bad_namespace_id_names_the_field(api: httpx.Client) -> None:
    body = error(api.post("/api/v1/namespaces", json={"namespace_id": "Not_A_Slug!"}), 400, INVALID_ARGUMENT)
    assert "namespace_id" in violated_fields(body)
    assert details(body, ERROR_INFO)


def test_unknown_namespace_is_404(api: httpx.Client) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    error(api.get(f"/api/v1/namespaces/{missing}"), 404, NOT_FOUND)
    error(api.post(f"/api/v1/definitions/{missing}", json={"name": "x", "kind": "noop"}), 404, NOT_FOUND)


# --- definitions -------------------------------------------------------------


def test_definition_versions_get_and_paginated_list(api: httpx.Client, ns: str) -> None:
    v1 = create_definition(api, ns, "report", payload_template={"a": 1})
    v2 = create_definition(api, ns, "report", payload_template={"a": 2})
    create_definition(api, ns, "other")

    assert (v1["version"], v2["version"]) == (1, 2)
    assert is_uuid(v1["def_id"]) and is_uuid(v2["def_id"]) and v1["def_id"] != v2["def_id"]
    assert v1["namespace_id"] == ns and v1["name"] == "report" and v1["kind"] == "noop"
    assert v1["payload_template"] == {"a": 1}
    # Unset scalars and repeated fields are printed (always_print_primitive_fields).
    assert v1["cron_spec"] == "" and v1["next_fire_times"] == []

    got = ok(api.get(f"/api/v1/definitions/{ns}/{v1['def_id']}"))
    assert got["def_id"] == v1["def_id"] and got["version"] == 1 and got["payload_template"] == {"a": 1}

    first = ok(api.get(f"/api/v1/definitions/{ns}", params={"name": "report", "page_size": 1}))
    assert [d["version"] for d in first["definitions"]] == [1]
    assert first["next_page_token"]
    second = ok(
        api.get(
            f"/api/v1/definitions/{ns}",
            params={"name": "report", "page_size": 1, "page_token": first["next_page_token"]},
        )
    )
    assert [d["version"] for d in second["definitions"]] == [2]
    assert second["next_page_token"] == ""

    everything = ok(api.get(f"/api/v1/definitions/{ns}"))
    assert sorted(d["name"] for d in everything["definitions"]) == ["other", "report", "report"]


def test_invalid_cron_spec_names_the_field(api: httpx.Client, ns: str) -> None:
    resp = api.post(
        f"/api/v1/definitions/{ns}", json={"name": "cron", "kind": "noop", "cron_spec": "not a cron"}
    )
    body = error(resp, 400, INVALID_ARGUMENT)
    assert "cron_spec" in violated_fields(body)
    listed = ok(api.get(f"/api/v1/definitions/{ns}", params={"name": "cron"}))
    assert listed["definitions"] == []


def test_tick_enqueues_a_standalone_job(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns, "ticked", payload_template={"a": 1, "b": "template"})
    job = ok(api.post(f"/api/v1/definitions/{ns}/{d['def_id']}/tick", json={"payload": {"b": "run"}}))
    assert is_uuid(job["job_id"])
    assert job["dag_id"] == ""
    assert job["def_id"] == d["def_id"] and job["def_version"] == 1
    assert job["state"] == "STATE_READY"
    assert job["attempt"] == 1
    assert job["payload"] == {"a": 1, "b": "run"}

    listed = ok(api.get(f"/api/v1/jobs/{ns}", params={"def_id": d["def_id"], "state": "STATE_READY"}))
    assert [j["job_id"] for j in listed["jobs"]] == [job["job_id"]]


def test_enqueue_jobs_makes_standalone_runs_all_or_none(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns, "batch", payload_template={"a": 1})
    made = ok(
        api.post(
            f"/api/v1/jobs/{ns}",
            json={
                "jobs": [{"def_id": d["def_id"]}, {"defId": d["def_id"], "payload": {"a": 2}, "priority": 9}]
            },
        )
    )
    assert len(made["job_ids"]) == 2 and all(is_uuid(j) for j in made["job_ids"])
    got = [ok(api.get(f"/api/v1/jobs/{ns}/{job_id}")) for job_id in made["job_ids"]]
    assert [(j["key"], j["state"], j["payload"], j["priority"]) for j in got] == [
        ("batch", "STATE_READY", {"a": 1}, 0),
        ("batch", "STATE_READY", {"a": 2}, 9),
    ]
    # A bad run anywhere refuses the call, naming the run, and makes nothing.
    body = error(
        api.post(
            f"/api/v1/jobs/{ns}",
            json={"jobs": [{"def_id": d["def_id"]}, {"def_id": d["def_id"], "priority": 5000}]},
        ),
        400,
        INVALID_ARGUMENT,
    )
    assert violated_fields(body) == ["jobs[1].priority"]
    # Loose JSON is refused before it reaches the server.
    error(
        api.post(f"/api/v1/jobs/{ns}", json={"jobs": [{"def_id": d["def_id"], "priorty": 1}]}),
        400,
        INVALID_ARGUMENT,
    )
    listed = ok(api.get(f"/api/v1/jobs/{ns}", params={"def_id": d["def_id"]}))
    assert sorted(j["job_id"] for j in listed["jobs"]) == sorted(made["job_ids"])


# --- DAGs --------------------------------------------------------------------


def test_create_dag_with_topology_and_run_it(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns, payload_template={"from": "template"})
    dag = create_dag(
        api,
        ns,
        d["def_id"],
        ["extract", "transform", "load"],
        [("extract", "transform"), ("transform", "load")],
    )
    assert is_uuid(dag["dag_id"])
    assert dag["state"] == "STATE_RUNNING"
    # int64 fields are strings in proto3 JSON.
    assert dag["job_count"] == 3
    assert dag["unfinished_job_count"] == 3
    assert "start_time" in dag and "create_time" in dag

    assert get_dag(api, ns, dag["dag_id"])["state"] == "STATE_RUNNING"
    listed = ok(api.get(f"/api/v1/dags/{ns}"))
    assert [x["dag_id"] for x in listed["dags"]] == [dag["dag_id"]]

    jobs = dag_jobs(api, ns, dag["dag_id"])
    assert {k: j["state"] for k, j in jobs.items()} == {
        "extract": "STATE_READY",
        "transform": "STATE_PENDING",
        "load": "STATE_PENDING",
    }
    extract = jobs["extract"]
    assert extract["payload"] == {"from": "template", "key": "extract"}
    assert extract["attempt"] == 1 and isinstance(extract["attempt"], int)
    assert extract["def_id"] == d["def_id"] and extract["dag_id"] == dag["dag_id"]

    fetched = ok(api.get(f"/api/v1/jobs/{ns}/{extract['job_id']}"))
    assert fetched["job_id"] == extract["job_id"] and fetched["state"] == "STATE_READY"

    done = complete(api, extract["job_id"], {"rows": 42})
    assert done["state"] == "STATE_SUCCEEDED"
    assert done["result"] == {"rows": 42}
    assert states(api, ns, dag["dag_id"]) == {
        "extract": "STATE_SUCCEEDED",
        "transform": "STATE_READY",
        "load": "STATE_PENDING",
    }

    complete(api, jobs["transform"]["job_id"])
    complete(api, jobs["load"]["job_id"])
    final = get_dag(api, ns, dag["dag_id"])
    assert final["state"] == "STATE_SUCCEEDED"
    assert final["unfinished_job_count"] == 0
    assert "end_time" in final


def test_cycle_is_rejected_and_names_the_cycle(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns)
    body = {
        "name": "cyclic",
        "jobs": [{"key": k, "def_id": d["def_id"]} for k in ("alpha", "bravo", "charlie", "delta")],
        "dependencies": [
            {"parent": "delta", "child": "alpha"},
            {"parent": "alpha", "child": "bravo"},
            {"parent": "bravo", "child": "charlie"},
            {"parent": "charlie", "child": "alpha"},
        ],
        "start": True,
    }
    err = error(api.post(f"/api/v1/dags/{ns}", json=body), 400, FAILED_PRECONDITION)
    message = err["message"]
    assert "cycle" in message.lower()
    for key in ("alpha", "bravo", "charlie"):
        assert key in message, message
    # Nothing was written.
    assert ok(api.get(f"/api/v1/dags/{ns}"))["dags"] == []


def test_build_then_start(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns)
    dag = ok(api.post(f"/api/v1/dags/{ns}", json={"name": "built"}))
    dag_id = dag["dag_id"]
    assert dag["state"] == "STATE_PENDING" and dag["job_count"] == 0

    created = ok(
        api.post(
            f"/api/v1/dags/{ns}/{dag_id}/jobs",
            json={"jobs": [{"key": k, "def_id": d["def_id"]} for k in ("a", "b", "c", "d")]},
        )
    )["jobs"]
    assert [j["key"] for j in created] == ["a", "b", "c", "d"]
    assert {j["state"] for j in created} == {"STATE_PENDING"}
    ids = {j["key"]: j["job_id"] for j in created}

    edge = ok(
        api.post(
            f"/api/v1/dags/{ns}/{dag_id}/dependencies",
            json={"parent_job_id": ids["a"], "child_job_id": ids["b"]},
        )
    )
    assert edge == {"parent_job_id": ids["a"], "child_job_id": ids["b"]}
    bulk = ok(
        api.post(
            f"/api/v1/dags/{ns}/{dag_id}/dependencies/bulk",
            json={
                "dependencies": [
                    {"parent_job_id": ids["a"], "child_job_id": ids["c"]},
                    {"parent_job_id": ids["b"], "child_job_id": ids["d"]},
                    {"parent_job_id": ids["c"], "child_job_id": ids["d"]},
                ]
            },
        )
    )
    assert len(bulk["dependencies"]) == 3

    # A batch that closes a cycle is refused whole: its valid edge is not kept.
    cyclic = api.post(
        f"/api/v1/dags/{ns}/{dag_id}/dependencies/bulk",
        json={
            "dependencies": [
                {"parent_job_id": ids["b"], "child_job_id": ids["c"]},
                {"parent_job_id": ids["d"], "child_job_id": ids["a"]},
            ]
        },
    )
    assert "cycle" in error(cyclic, 400, FAILED_PRECONDITION)["message"].lower()

    edges = ok(api.get(f"/api/v1/dags/{ns}/{dag_id}/dependencies"))
    assert {(e["parent_job_id"], e["child_job_id"]) for e in edges["dependencies"]} == {
        (ids["a"], ids["b"]),
        (ids["a"], ids["c"]),
        (ids["b"], ids["d"]),
        (ids["c"], ids["d"]),
    }
    assert edges["next_page_token"] == ""

    started = ok(api.post(f"/api/v1/dags/{ns}/{dag_id}/start", json={}))
    assert started["state"] == "STATE_RUNNING" and started["job_count"] == 4
    assert states(api, ns, dag_id) == {
        "a": "STATE_READY",
        "b": "STATE_PENDING",
        "c": "STATE_PENDING",
        "d": "STATE_PENDING",
    }

    # Starting sealed the topology.
    late_job = api.post(
        f"/api/v1/dags/{ns}/{dag_id}/jobs", json={"jobs": [{"key": "e", "def_id": d["def_id"]}]}
    )
    assert "immutable" in error(late_job, 400, FAILED_PRECONDITION)["message"].lower()
    late_edge = api.post(
        f"/api/v1/dags/{ns}/{dag_id}/dependencies", json={"parent_job_id": ids["b"], "child_job_id": ids["c"]}
    )
    error(late_edge, 400, FAILED_PRECONDITION)
    error(api.post(f"/api/v1/dags/{ns}/{dag_id}/start", json={}), 400, FAILED_PRECONDITION)
    assert get_dag(api, ns, dag_id)["job_count"] == 4


def test_cancel_dag(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns)
    dag = create_dag(api, ns, d["def_id"], ["a", "b"], [("a", "b")])
    jobs = dag_jobs(api, ns, dag["dag_id"])

    cancelled = ok(api.post(f"/api/v1/dags/{ns}/{dag['dag_id']}/cancel", json={}))
    assert cancelled["state"] == "STATE_CANCELLED"
    assert cancelled["unfinished_job_count"] == 0
    assert states(api, ns, dag["dag_id"]) == {"a": "STATE_CANCELLED", "b": "STATE_CANCELLED"}
    # A cancelled job takes no result; repeating the cancel changes nothing.
    error(api.post(f"/api/v1/jobs/{jobs['a']['job_id']}/complete", json={}), 400, FAILED_PRECONDITION)
    again = ok(api.post(f"/api/v1/dags/{ns}/{dag['dag_id']}/cancel", json={}))
    assert again["state"] == "STATE_CANCELLED" and again["end_time"] == cancelled["end_time"]

    # A DAG that already succeeded cannot be cancelled.
    done = create_dag(api, ns, d["def_id"], ["only"], [])
    complete(api, dag_jobs(api, ns, done["dag_id"])["only"]["job_id"])
    error(api.post(f"/api/v1/dags/{ns}/{done['dag_id']}/cancel", json={}), 400, FAILED_PRECONDITION)
    assert get_dag(api, ns, done["dag_id"])["state"] == "STATE_SUCCEEDED"


def test_cancel_does_not_rewrite_a_failed_dag(api: httpx.Client, ns: str) -> None:
    # A FAILED DAG stays FAILED, and one with nothing left to run cannot be
    # cancelled (docs/architecture.md, "Job and DAG semantics", Cancel).
    d = create_definition(api, ns, max_attempts=1)
    dag = create_dag(api, ns, d["def_id"], ["a", "b"], [("a", "b")])
    a = dag_jobs(api, ns, dag["dag_id"])["a"]
    ok(api.post(f"/api/v1/jobs/{a['job_id']}/fail", json={"error": "boom"}))
    assert get_dag(api, ns, dag["dag_id"])["state"] == "STATE_FAILED"

    error(api.post(f"/api/v1/dags/{ns}/{dag['dag_id']}/cancel", json={}), 400, FAILED_PRECONDITION)
    assert get_dag(api, ns, dag["dag_id"])["state"] == "STATE_FAILED"


def test_fail_retries_then_fails_for_good(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns, max_attempts=3, backoff_initial="0s")
    dag = create_dag(api, ns, d["def_id"], ["a", "b", "c"], [("a", "b"), ("b", "c")])
    a = dag_jobs(api, ns, dag["dag_id"])["a"]
    assert a["max_attempts"] == 3

    retried = ok(api.post(f"/api/v1/jobs/{a['job_id']}/fail", json={"error": "flaky"}))
    assert retried["state"] == "STATE_READY"
    assert retried["attempt"] == 2
    assert retried["error"] == "flaky"

    # A result for the superseded attempt is fenced off and changes nothing.
    stale = api.post(f"/api/v1/jobs/{a['job_id']}/complete", json={"attempt": 1})
    error(stale, 400, FAILED_PRECONDITION)
    assert ok(api.get(f"/api/v1/jobs/{ns}/{a['job_id']}"))["state"] == "STATE_READY"

    failed = ok(api.post(f"/api/v1/jobs/{a['job_id']}/fail", json={"error": "fatal", "non_retryable": True}))
    assert failed["state"] == "STATE_FAILED"
    assert failed["error"] == "fatal"
    assert states(api, ns, dag["dag_id"]) == {"a": "STATE_FAILED", "b": "STATE_SKIPPED", "c": "STATE_SKIPPED"}
    final = get_dag(api, ns, dag["dag_id"])
    assert final["state"] == "STATE_FAILED"
    assert final["unfinished_job_count"] == 0


def test_delete_dag(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns)
    dag = create_dag(api, ns, d["def_id"], ["a", "b"], [("a", "b")])
    job_id = dag_jobs(api, ns, dag["dag_id"])["a"]["job_id"]

    assert ok(api.delete(f"/api/v1/dags/{ns}/{dag['dag_id']}")) == {}

    error(api.get(f"/api/v1/dags/{ns}/{dag['dag_id']}"), 404, NOT_FOUND)
    error(api.get(f"/api/v1/jobs/{ns}/{job_id}"), 404, NOT_FOUND)
    assert ok(api.get(f"/api/v1/dags/{ns}"))["dags"] == []
    error(api.delete(f"/api/v1/dags/{ns}/{dag['dag_id']}"), 404, NOT_FOUND)


def test_prune_moves_finished_work_to_history(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns)
    dag = create_dag(api, ns, d["def_id"], ["a", "b"], [("a", "b")])
    jobs = dag_jobs(api, ns, dag["dag_id"])
    complete(api, jobs["a"]["job_id"])
    complete(api, jobs["b"]["job_id"])
    standalone = ok(api.post(f"/api/v1/definitions/{ns}/{d['def_id']}/tick", json={}))
    complete(api, standalone["job_id"])
    assert get_dag(api, ns, dag["dag_id"])["state"] == "STATE_SUCCEEDED"

    pruned = ok(api.post("/api/v1/admin/prune", json={"older_than": "0s", "namespace_id": ns}))
    assert pruned == {"dags_pruned": "1", "jobs_pruned": "3", "dependencies_pruned": "1"}

    # Gone from the live lists, still readable one by one.
    assert ok(api.get(f"/api/v1/dags/{ns}"))["dags"] == []
    assert ok(api.get(f"/api/v1/jobs/{ns}"))["jobs"] == []
    job = ok(api.get(f"/api/v1/jobs/{ns}/{jobs['a']['job_id']}"))
    assert job["state"] == "STATE_SUCCEEDED" and job["dag_id"] == dag["dag_id"]
    assert ok(api.get(f"/api/v1/jobs/{ns}/{standalone['job_id']}"))["state"] == "STATE_SUCCEEDED"
    assert get_dag(api, ns, dag["dag_id"])["state"] == "STATE_SUCCEEDED"

    again = ok(api.post("/api/v1/admin/prune", json={"older_than": "0s", "namespace_id": ns}))
    assert again == {"dags_pruned": "0", "jobs_pruned": "0", "dependencies_pruned": "0"}


# --- bad input ---------------------------------------------------------------


def test_bad_input_names_the_field(api: httpx.Client, ns: str) -> None:
    d = create_definition(api, ns)
    cases: list[tuple[httpx.Response, str]] = [
        (api.get("/api/v1/namespaces", params={"page_size": 5000}), "page_size"),
        (api.get("/api/v1/namespaces", params={"page_token": "garbage"}), "page_token"),
        (api.get(f"/api/v1/jobs/{ns}/not-a-uuid"), "job_id"),
        (api.post(f"/api/v1/definitions/{ns}", json={"name": "x", "kind": "Not A Kind"}), "kind"),
        (api.post("/api/v1/admin/prune", json={"older_than": "-5s"}), "older_than"),
        (
            api.post(
                f"/api/v1/dags/{ns}",
                json={
                    "name": "dup",
                    "jobs": [{"key": "a", "def_id": d["def_id"]}, {"key": "a", "def_id": d["def_id"]}],
                },
            ),
            "jobs[1].key",
        ),
    ]
    for resp, field_name in cases:
        body = error(resp, 400, INVALID_ARGUMENT)
        assert field_name in violated_fields(body), (field_name, body)
    assert ok(api.get(f"/api/v1/dags/{ns}"))["dags"] == []


# --- namespace isolation -----------------------------------------------------


def test_other_namespace_paths_see_nothing(api: httpx.Client, ns: str) -> None:
    other = f"o-{uuid.uuid4().hex[:12]}"
    ok(api.post("/api/v1/namespaces", json={"namespace_id": other}))
    d = create_definition(api, ns)
    dag = create_dag(api, ns, d["def_id"], ["a"], [], start=False)
    job_id = dag_jobs(api, ns, dag["dag_id"])["a"]["job_id"]

    error(api.get(f"/api/v1/jobs/{other}/{job_id}"), 404, NOT_FOUND)
    error(api.get(f"/api/v1/dags/{other}/{dag['dag_id']}"), 404, NOT_FOUND)
    error(api.get(f"/api/v1/definitions/{other}/{d['def_id']}"), 404, NOT_FOUND)
    error(api.post(f"/api/v1/dags/{other}/{dag['dag_id']}/start", json={}), 404, NOT_FOUND)
    error(api.post(f"/api/v1/definitions/{other}/{d['def_id']}/tick", json={}), 404, NOT_FOUND)
    assert ok(api.get(f"/api/v1/jobs/{other}"))["jobs"] == []
    # Another namespace's definition cannot be used to make jobs.
    borrowed = api.post(
        f"/api/v1/dags/{other}", json={"name": "x", "jobs": [{"key": "a", "def_id": d["def_id"]}]}
    )
    assert "jobs[0].def_id" in violated_fields(error(borrowed, 400, INVALID_ARGUMENT))
    assert ok(api.get(f"/api/v1/dags/{other}"))["dags"] == []
    assert get_dag(api, ns, dag["dag_id"])["state"] == "STATE_PENDING"


def test_path_namespace_cannot_be_overridden(api: httpx.Client, ns: str) -> None:
    other = f"o-{uuid.uuid4().hex[:12]}"
    ok(api.post("/api/v1/namespaces", json={"namespace_id": other}))
    d = create_definition(api, ns)
    dag = create_dag(api, ns, d["def_id"], ["a"], [], start=False)
    job_id = dag_jobs(api, ns, dag["dag_id"])["a"]["job_id"]

    # A body field that contradicts the path is refused by Envoy (a JSON error)...
    clash = api.post(f"/api/v1/dags/{other}", json={"namespace_id": ns, "name": "sneaky"})
    assert clash.status_code == 400
    assert ok(api.get(f"/api/v1/dags/{ns}"))["dags"] == [get_dag(api, ns, dag["dag_id"])]
    # ...and so is a query copy of namespace_id (the REST check refuses it by
    # name; the transcoder would only have dropped it), so the path decides.
    for path_ns, query_ns in ((other, ns), (ns, other)):
        resp = api.get(f"/api/v1/jobs/{path_ns}/{job_id}", params={"namespace_id": query_ns})
        assert (
            error(resp, 400, INVALID_ARGUMENT)["details"][1]["field_violations"][0]["field"] == "namespace_id"
        )
    error(api.get(f"/api/v1/jobs/{other}/{job_id}"), 404, NOT_FOUND)
    assert ok(api.get(f"/api/v1/jobs/{ns}/{job_id}"))["namespace_id"] == ns


# --- size --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_large_dag_through_envoy(api: httpx.Client, ns: str) -> None:
    # ~20 MB of JSON: well past Envoy's 1 MiB defaults, within the limits set
    # in envoy/envoy.yaml.
    d = create_definition(api, ns)
    n = 100_000
    body = {
        "name": "large",
        "jobs": [{"key": f"j{i}", "def_id": d["def_id"], "payload": {"i": i}} for i in range(n)],
        # parent < child everywhere, so acyclic; 99,999 + 99,998 + 3 edges.
        "dependencies": [
            {"parent": f"j{i}", "child": f"j{i + step}"}
            for step, count in ((1, n - 1), (2, n - 2), (3, 3))
            for i in range(count)
        ],
    }
    assert len(body["dependencies"]) == 200_000
    dag = ok(api.post(f"/api/v1/dags/{ns}", json=body, timeout=150))
    assert dag["state"] == "STATE_PENDING"
    assert dag["job_count"] == 100000
