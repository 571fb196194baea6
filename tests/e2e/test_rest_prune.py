"""Prune over REST through Envoy with an empty body (the 7-day default
cutoff), and `up` handing its retention to the server it starts."""

from __future__ import annotations

from datetime import timedelta

import httpx
import psycopg
import pytest

from tests.e2e.conftest import UpProcess
from tests.support.rest import (
    INVALID_ARGUMENT,
    complete,
    create_dag,
    create_definition,
    dag_jobs,
    error,
    get_dag,
    ok,
    violated_fields,
)

pytestmark = pytest.mark.timeout(120)


def finished_dag(api: httpx.Client, ns: str, def_id: str) -> str:
    dag = create_dag(api, ns, def_id, ["a", "b"], [("a", "b")])
    jobs = dag_jobs(api, ns, dag["dag_id"])
    complete(api, jobs["a"]["job_id"])
    complete(api, jobs["b"]["job_id"])
    assert get_dag(api, ns, dag["dag_id"])["state"] == "STATE_SUCCEEDED"
    dag_id: str = dag["dag_id"]
    return dag_id


def age(up: UpProcess, dag_id: str, back: timedelta) -> None:
    with psycopg.connect(up.state["database_url"], autocommit=True) as conn:
        conn.execute("update dags set end_time = end_time - %s where dag_id = %s", (back, dag_id))
        conn.execute("update jobs set end_time = end_time - %s where dag_id = %s", (back, dag_id))


def test_an_empty_body_prunes_what_finished_more_than_7_days_ago(
    api: httpx.Client, up: UpProcess, ns: str
) -> None:
    d = create_definition(api, ns)
    old, recent = finished_dag(api, ns, d["def_id"]), finished_dag(api, ns, d["def_id"])
    age(up, old, timedelta(days=8))
    age(up, recent, timedelta(days=6))

    # The literal `{}` a shell user sends: no older_than, every namespace.
    pruned = ok(api.post("/api/v1/admin/prune", content=b"{}", headers={"content-type": "application/json"}))
    # The counts include ours unless the server's own retention loop moved it
    # first; either way the old DAG is in history and the recent one is not.
    assert set(pruned) == {"dags_pruned", "jobs_pruned", "dependencies_pruned"}
    assert [d["dag_id"] for d in ok(api.get(f"/api/v1/dags/{ns}"))["dags"]] == [recent]
    assert get_dag(api, ns, old)["state"] == "STATE_SUCCEEDED"  # from history

    # Scoped to the namespace: nothing left that is that old.
    again = ok(api.post("/api/v1/admin/prune", json={"namespace_id": ns}))
    assert again == {"dags_pruned": "0", "jobs_pruned": "0", "dependencies_pruned": "0"}
    # A bad cutoff is still refused, naming the field.
    body = error(api.post("/api/v1/admin/prune", json={"older_than": "-1s"}), 400, INVALID_ARGUMENT)
    assert violated_fields(body) == ["older_than"]


def test_up_hands_its_retention_to_the_server(up: UpProcess) -> None:
    args = up.reload_state()["server"]["args"]
    assert args[args.index("--retention") + 1] == "7d"
