"""`chronosched up`'s local workers run real `command` jobs end to end, in
topological order, and a killed worker is restarted by the supervisor."""

from __future__ import annotations

import os
import signal
from datetime import datetime

import httpx
import pytest

from tests.e2e.conftest import UpProcess
from tests.support.processes import pid_alive
from tests.support.rest import Json, dag_jobs, get_dag, ok
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def wait_for_dag(api: httpx.Client, ns: str, dag_id: str, state: str, within_s: float = 60.0) -> Json:
    def reached() -> Json | None:
        dag = get_dag(api, ns, dag_id)
        if dag["state"] == state:
            return dag
        assert dag["state"] in ("STATE_PENDING", "STATE_RUNNING"), dag
        return None

    return wait_until(reached, within=within_s, what=f"DAG {dag_id} to reach {state}")


def command_dag(api: httpx.Client, ns: str, edges: list[tuple[str, str]], keys: str) -> str:
    d = ok(
        api.post(
            f"/api/v1/definitions/{ns}",
            json={"name": "echo", "kind": "command", "payload_template": {"argv": ["echo", "default"]}},
        )
    )
    body = {
        "name": "commands",
        "jobs": [{"key": k, "def_id": d["def_id"], "payload": {"argv": ["echo", f"job-{k}"]}} for k in keys],
        "dependencies": [{"parent": p, "child": c} for p, c in edges],
        "start": True,
    }
    dag_id: str = ok(api.post(f"/api/v1/dags/{ns}", json=body))["dag_id"]
    return dag_id


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_local_workers_run_a_command_dag_in_order(api: httpx.Client, ns: str) -> None:
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    dag_id = command_dag(api, ns, edges, "abcd")
    dag = wait_for_dag(api, ns, dag_id, "STATE_SUCCEEDED")
    assert dag["unfinished_job_count"] == 0
    jobs = dag_jobs(api, ns, dag_id)
    for key, job in jobs.items():
        assert job["state"] == "STATE_SUCCEEDED"
        assert job["result"]["exit_code"] == 0
        assert job["result"]["stdout_tail"].strip() == f"job-{key}"
        assert job["worker_id"].startswith("local-")
    for parent, child in edges:
        assert ts(jobs[child]["start_time"]) >= ts(jobs[parent]["end_time"]), (parent, child)


def test_a_killed_local_worker_is_restarted(up: UpProcess, api: httpx.Client, ns: str) -> None:
    before = up.reload_state()["worker_pids"]
    assert len(before) == 2 and all(pid_alive(p) for p in before)
    os.kill(before[0], signal.SIGKILL)

    def restarted() -> list[int] | None:
        now: list[int] = up.reload_state()["worker_pids"]
        return now if now[0] != before[0] and pid_alive(now[0]) else None

    now = wait_until(restarted, within=30, what="the killed worker's restart")
    assert now[1] == before[1]
    dag_id = command_dag(api, ns, [("x", "y")], "xy")
    wait_for_dag(api, ns, dag_id, "STATE_SUCCEEDED")
