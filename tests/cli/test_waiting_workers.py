"""`workers list`, why jobs wait (`jobs list`, `jobs get`, `dag show`) and
the warnings of `def create`, in this process against the real in-process
server with bare worker streams (RawWorker) connected to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from chronosched import Client, Waiting, WaitingReason
from chronosched.cli._show import waiting_note
from tests.cli.conftest import NS, Cli, chronosched
from tests.cli.test_commands import _fields, _json, _table
from tests.client.conftest import Running
from tests.client.test_waiting_workers import NO_WORKER, unserved

pytestmark = pytest.mark.timeout(60)


def test_def_create_prints_warnings_on_stderr_only(cli: Cli, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text("name: typo\nkind: comand\n---\nname: again\nkind: comand\n")
    made = cli("def", "create", NS, "-f", str(path), "-o", "json")
    assert made.code == 0, made.err
    # One warning per definition made, each naming it; stdout is the data alone.
    assert made.err.splitlines() == [
        f"chronosched: warning: typo@1: {unserved('comand')}",
        f"chronosched: warning: again@1: {unserved('comand')}",
    ]
    data = json.loads(made.out)
    assert [(d["name"], d["kind"]) for d in data] == [("typo", "comand"), ("again", "comand")]
    assert all("warnings" not in d for d in data) and "no worker" not in made.out

    # The table too; and a single definition's JSON is one object.
    path.write_text("name: typo\nkind: comand\n")
    shown = cli("def", "create", NS, "-f", str(path))
    assert shown.code == 0
    assert shown.err == f"chronosched: warning: typo@2: {unserved('comand')}\n"
    assert [r[:3] for r in _table(shown.out)] == [["NAME", "VERSION", "KIND"], ["typo", "2", "comand"]]
    one = _json(cli("def", "create", NS, "-f", str(path), "-o", "json"))
    assert isinstance(one, dict) and one["version"] == 3 and "warnings" not in one
    assert "warnings" not in _fields(cli("def", "get", NS, "typo").out)

    # As a process: stdout parses as JSON, the warning is on stderr.
    process = chronosched(client.target, "def", "create", NS, "-f", str(path), "-o", "json")
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout)["version"] == 4
    assert process.stderr == f"chronosched: warning: typo@4: {unserved('comand')}\n"


def test_jobs_say_why_they_wait(cli: Cli, client: Client, tmp_path: Path) -> None:
    typo = client.create_definition(NS, "typo", "comand")
    job = client.tick(NS, typo.def_id)

    got = cli("jobs", "get", NS, job.job_id)
    assert got.code == 0, got.err
    fields = _fields(got.out)
    assert (fields["state"], fields["waiting"]) == ("READY", f"NO_WORKER: {NO_WORKER}")
    assert "waiting_parents" not in fields
    data = _json(cli("jobs", "get", NS, job.job_id, "-o", "json"))
    assert isinstance(data, dict) and data["waiting"] == {
        "reason": "REASON_NO_WORKER",
        "message": NO_WORKER,
        "unfinished_parents": 0,
        "parents": [],
        "due_time": None,
        "retry_after_attempt": 0,
        "kind": "comand",
        "slots_in_use": 0,
        "slots_total": 0,
    }
    assert yaml.safe_load(cli("jobs", "get", NS, job.job_id, "-o", "yaml").out) == data

    # A DAG job waiting on its parents names them, with their ids.
    path = tmp_path / "dag.yaml"
    path.write_text(
        "name: fan-in\njobs:\n"
        "  - {key: a, definition: typo}\n"
        "  - {key: b, definition: typo}\n"
        "  - {key: c, definition: typo, depends_on: [a, b]}\n"
    )
    dag_id = _json(cli("dag", "submit", NS, "-f", str(path), "-o", "json"))["dag_id"]  # type: ignore[index]
    jobs = {j.key: j for j in client.list_dag_jobs(NS, dag_id)}
    child = _fields(cli("jobs", "get", NS, jobs["c"].job_id).out)
    assert child["waiting"] == "PARENTS: waiting on 2 unfinished parents: a (READY), b (READY)"
    assert child["waiting_parents"] == f"a {jobs['a'].job_id} (READY), b {jobs['b'].job_id} (READY)"

    # `jobs list` ends with the sentence; a finished job has none.
    client.complete_job(jobs["a"].job_id)
    listed = _table(cli("jobs", "list", NS).out)
    assert listed[0] == ["JOB_ID", "KEY", "STATE", "ATTEMPT", "KIND", "DAG_ID", "UPDATED", "WAITING"]
    assert {(r[1], r[2], r[-1]) for r in listed[1:]} == {
        ("typo", "READY", NO_WORKER),
        ("a", "SUCCEEDED", "-"),
        ("b", "READY", NO_WORKER),
        ("c", "PENDING", "waiting on 1 unfinished parent: b (READY)"),
    }
    as_json = _json(cli("jobs", "list", NS, "--state", "pending", "-o", "json"))
    assert isinstance(as_json, list)
    assert [(j["key"], j["waiting"]["reason"], j["waiting"]["unfinished_parents"]) for j in as_json] == [
        ("c", "REASON_PARENTS", 1)
    ]
    assert as_json[0]["waiting"]["parents"] == [
        {"key": "b", "job_id": jobs["b"].job_id, "state": "STATE_READY"}
    ]

    # The tree marks what it does not show by itself: the missing worker.
    tree = cli("dag", "show", NS, dag_id)
    assert tree.code == 0, tree.err
    assert tree.out.splitlines()[1:] == [
        "├── a [SUCCEEDED]",
        "│   └── c [PENDING]",
        "└── b [READY] (no worker for kind comand)",
        "    └── c [PENDING] (see above)",
    ]


def test_workers_list(cli: Cli, client: Client, server: Running) -> None:
    empty = cli("workers", "list")
    assert empty.code == 0 and _table(empty.out) == [
        ["WORKER", "NAMESPACES", "KINDS", "SLOTS", "IN_FLIGHT", "CONNECTED", "LAST_HEARTBEAT"]
    ]
    assert _json(cli("workers", "list", "-o", "json")) == []

    typo = client.create_definition(NS, "typo", "comand")
    job = client.tick(NS, typo.def_id)
    w1 = server.open_worker(worker_id="w-1", namespaces=[NS, "team-c"], kinds=["comand", "echo"], slots=2)
    assert w1.assignment().job.job_id == job.job_id
    server.open_worker(worker_id="w-2", all_namespaces=True, kinds=["x"], slots=5)
    server.publish_workers()

    table = _table(cli("workers", "list").out)
    assert table[0] == ["WORKER", "NAMESPACES", "KINDS", "SLOTS", "IN_FLIGHT", "CONNECTED", "LAST_HEARTBEAT"]
    rows = table[1:]
    assert [r[:5] for r in rows] == [
        ["w-1", f"{NS}, team-c", "comand, echo", "2", "1"],
        ["w-2", "*", "x", "5", "0"],
    ]
    assert all(r[5].endswith("Z") and r[6].endswith("Z") for r in rows)

    listed = _json(cli("workers", "list", "-o", "json"))
    assert isinstance(listed, list) and len(listed) == 2
    assert set(listed[0]) == {
        "worker_id",
        "stream_id",
        "replica_id",
        "namespaces",
        "all_namespaces",
        "kinds",
        "slots",
        "jobs_in_flight",
        "connect_time",
        "heartbeat_time",
    }
    assert [
        (w["worker_id"], w["namespaces"], w["all_namespaces"], w["slots"], w["jobs_in_flight"])
        for w in listed
    ] == [("w-1", [NS, "team-c"], False, 2, 1), ("w-2", [], True, 5, 0)]
    assert listed[0]["stream_id"] != listed[1]["stream_id"] and listed[0]["connect_time"].endswith("Z")
    assert yaml.safe_load(cli("workers", "list", "-o", "yaml").out) == listed

    # NS: the workers taking jobs from it, by name or from every namespace.
    only = _json(cli("workers", "list", "team-b", "-o", "json"))
    assert isinstance(only, list) and [w["worker_id"] for w in only] == ["w-2"]
    both = _json(cli("workers", "list", "team-c", "-o", "json"))
    assert isinstance(both, list) and [w["worker_id"] for w in both] == ["w-1", "w-2"]
    cut = cli("workers", "list", "--limit", "1", "-o", "json")
    assert [w["worker_id"] for w in json.loads(cut.out)] == ["w-1"] and "--limit" in cut.err

    # The job the worker runs waits for nothing.
    assert _fields(cli("jobs", "get", NS, job.job_id).out)["waiting"] == "-"


def test_the_trees_waiting_notes() -> None:
    due = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)
    full = Waiting(WaitingReason.WORKERS_FULL, "...", kind="x", slots_in_use=4, slots_total=4)
    retry = Waiting(WaitingReason.NOT_DUE, "...", due_time=due, retry_after_attempt=1)
    assert [
        waiting_note(None),
        waiting_note(Waiting(WaitingReason.NO_WORKER, "...", kind="comand")),
        waiting_note(full),
        waiting_note(Waiting(WaitingReason.NOT_DUE, "...", due_time=due)),
        waiting_note(retry),
    ] == [
        "",
        "no worker for kind comand",
        "workers full: 4 of 4 slots in use",
        "due at 2026-11-30T08:00:00Z",
        "attempt 2 at 2026-11-30T08:00:00Z",
    ]
    # What the drawing shows already gets no note.
    for reason in (WaitingReason.PARENTS, WaitingReason.DAG_NOT_STARTED, WaitingReason.DISPATCHING):
        assert waiting_note(Waiting(reason, "...", kind="x")) == ""
