"""Every operator command's happy path, in this process against the real
in-process server: the table people read and the JSON scripts read (proto
field names, enums by their protobuf names)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from chronosched import Client, DagState, FireStatus, JobState
from tests.cli.conftest import NS, Cli
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def _json(result: object) -> object:
    assert getattr(result, "code", None) == 0, result
    return json.loads(getattr(result, "out", ""))


def _table(text: str) -> list[list[str]]:
    """A printed table's rows, split on the runs of spaces between columns."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


def _fields(text: str) -> dict[str, str]:
    """A printed object's `field  value` lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        fields[name] = value.strip()
    return fields


def test_namespaces(cli: Cli) -> None:
    created = cli("ns", "create", "team-a", "--description", "the A team")
    assert created.code == 0 and created.err == ""
    assert _fields(created.out) | {"create_time": "-"} == {
        "namespace_id": "team-a",
        "description": "the A team",
        "create_time": "-",
    }
    cli("ns", "create", "team-b")

    listed = cli("ns", "list")
    rows = _table(listed.out)
    assert rows[0] == ["NAMESPACE", "DESCRIPTION", "CREATED"]
    assert [row[0] for row in rows[1:]] == ["team-a", "team-b"]
    assert rows[1][1] == "the A team"

    data = _json(cli("ns", "list", "-o", "json"))
    assert isinstance(data, list) and [n["namespace_id"] for n in data] == ["team-a", "team-b"]
    one = _json(cli("ns", "get", "team-a", "-o", "json"))
    assert isinstance(one, dict) and set(one) == {"namespace_id", "description", "create_time"}
    assert one["create_time"].endswith("Z")
    assert yaml.safe_load(cli("ns", "get", "team-a", "-o", "yaml").out) == one

    assert cli("ns", "delete", "team-b").out == "namespace team-b deleted\n"
    assert _json(cli("ns", "delete", "team-a", "-o", "json")) == {}
    assert _json(cli("ns", "list", "-o", "json")) == []


DEFINITIONS = """\
name: report
kind: manual
payload_template: {format: csv, rows: 10}
max_attempts: 3
backoff_initial: 1s
backoff_max: 5m
backoff_multiplier: 1.5
execution_timeout: 90s
default_priority: 7
delay_after_parents: 250ms
---
name: nightly
kind: manual
cron_spec: "@every 1s"
time_zone: Europe/Berlin
misfire_policy: fire-once
overlap_policy: allow
starting_deadline: 1m
"""


def test_definitions_fires_schedules_and_retire(cli: Cli, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text(DEFINITIONS)
    created = cli("def", "create", NS, "-f", str(path))
    assert created.code == 0, created.err
    rows = _table(created.out)
    assert [r[:3] for r in rows] == [
        ["NAME", "VERSION", "KIND"],
        ["report", "1", "manual"],
        ["nightly", "1", "manual"],
    ]

    report = _json(cli("def", "get", NS, "report", "-o", "json"))
    assert isinstance(report, dict)
    assert {k: report[k] for k in ("name", "version", "max_attempts", "default_priority")} == {
        "name": "report",
        "version": 1,
        "max_attempts": 3,
        "default_priority": 7,
    }
    assert report["payload_template"] == {"format": "csv", "rows": 10}
    assert (report["backoff_initial"], report["backoff_max"], report["execution_timeout"]) == (
        "1s",
        "300s",
        "90s",
    )
    assert (report["backoff_multiplier"], report["delay_after_parents"]) == (1.5, "0.250s")
    assert report["cron_spec"] is None and report["retire_time"] is None
    nightly = _json(cli("def", "get", NS, "nightly@1", "-o", "json"))
    assert isinstance(nightly, dict)
    assert (nightly["misfire_policy"], nightly["overlap_policy"]) == (
        "MISFIRE_POLICY_FIRE_ONCE",
        "OVERLAP_POLICY_ALLOW",
    )
    assert (nightly["time_zone"], nightly["starting_deadline"]) == ("Europe/Berlin", "60s")
    # A def_id names the version as well; the table shows it field by field.
    by_id = cli("def", "get", NS, report["def_id"])
    shown = _fields(by_id.out)
    assert (shown["max_attempts"], shown["execution_timeout"], shown["backoff_max"]) == ("3", "1m30s", "5m")
    assert (shown["payload_template"], shown["cron_spec"]) == ('{"format":"csv","rows":10}', "-")

    # A second version of report.
    path.write_text("name: report\nkind: manual\n")
    assert _json(cli("def", "create", NS, "-f", str(path), "-o", "json"))["version"] == 2  # type: ignore[index]
    versions = _table(cli("def", "versions", NS, "report").out)
    assert [r[:2] for r in versions[1:]] == [["report", "1"], ["report", "2"]]
    listed = _json(cli("def", "list", NS, "-o", "json"))
    assert isinstance(listed, list)
    assert [(d["name"], d["version"]) for d in listed] == [
        ("step", 1),
        ("report", 1),
        ("nightly", 1),
        ("report", 2),
    ]

    # The cron definition fires every second (the server runs its scheduler).
    wait_until(lambda: any(True for _ in client.list_fires(NS, nightly["def_id"])), within=10, what="a fire")
    fires = cli("def", "fires", NS, "nightly")
    assert fires.code == 0
    assert _table(fires.out)[0] == ["SCHEDULED", "STATUS", "VERSION", "JOB_ID", "REASON"]
    assert _table(fires.out)[1][1:3] == ["FIRED", "1"]
    fired = _json(cli("def", "fires", NS, "nightly", "-o", "json", "--limit", "1"))
    assert isinstance(fired, list) and len(fired) == 1 and fired[0]["status"] == "STATUS_FIRED"
    assert FireStatus.FIRED.name in fires.out

    paused = _json(cli("schedules", "pause", NS, "nightly", "-o", "json"))
    assert isinstance(paused, dict) and paused["paused"] is True and paused["pause_time"]
    schedule = _fields(cli("schedules", "get", NS, "nightly").out)
    assert (schedule["paused"], schedule["cron_spec"], schedule["def_version"]) == ("true", "@every 1s", "1")
    resumed = _json(cli("schedules", "resume", NS, "nightly", "-o", "json"))
    assert isinstance(resumed, dict) and resumed["paused"] is False

    retired = _json(cli("def", "retire", NS, "nightly", "-o", "json"))
    assert isinstance(retired, dict) and retired["retire_time"]
    assert _table(cli("def", "versions", NS, "nightly").out)[1][-1] != "-"  # RETIRED column set


DAG = """\
name: etl
jobs:
  - key: extract
    definition: step
    payload: {table: orders}
    priority: 5
  - {key: clean, definition: step@1, depends_on: [extract]}
  - {key: load, definition: step, depends_on: [clean]}
"""


def test_dags(cli: Cli, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "dag.yaml"
    path.write_text(DAG)
    pending = _json(cli("dag", "submit", NS, "-f", str(path), "--no-start", "-o", "json"))
    assert isinstance(pending, dict)
    dag_id = pending["dag_id"]
    assert (pending["name"], pending["state"], pending["job_count"]) == ("etl", "STATE_PENDING", 3)
    jobs = {j.key: j for j in client.list_dag_jobs(NS, dag_id)}
    assert jobs["extract"].payload == {"table": "orders"} and jobs["extract"].priority == 5
    assert client.dag_run(NS, dag_id).edges() == {("extract", "clean"), ("clean", "load")}

    started = cli("dag", "start", NS, dag_id)
    assert started.code == 0 and _fields(started.out)["state"] == "RUNNING"
    assert _fields(cli("dag", "get", NS, dag_id).out)["job_count"] == "3"

    other = _json(cli("dag", "submit", NS, "-f", str(path), "-o", "json"))
    assert isinstance(other, dict) and other["state"] == "STATE_RUNNING"

    listed = _table(cli("dag", "list", NS).out)
    assert listed[0] == ["DAG_ID", "NAME", "STATE", "FINISHED", "CREATED", "ENDED"]
    assert [(r[0], r[2], r[3]) for r in listed[1:]] == [
        (dag_id, "RUNNING", "0/3"),
        (other["dag_id"], "RUNNING", "0/3"),
    ]

    cancelled = _json(cli("dag", "cancel", NS, other["dag_id"], "-o", "json"))
    assert isinstance(cancelled, dict) and cancelled["state"] == "STATE_CANCELLED"
    running = _json(cli("dag", "list", NS, "--state", "running", "-o", "json"))
    assert isinstance(running, list) and [d["dag_id"] for d in running] == [dag_id]
    by_proto_name = _json(cli("dag", "list", NS, "--state", "STATE_CANCELLED", "-o", "json"))
    assert isinstance(by_proto_name, list) and [d["dag_id"] for d in by_proto_name] == [other["dag_id"]]

    # --limit cuts the list and says so on stderr.
    first = cli("dag", "list", NS, "--limit", "1", "-o", "json")
    assert len(json.loads(first.out)) == 1 and "--limit" in first.err

    assert cli("dag", "delete", NS, other["dag_id"]).out == f"dag {other['dag_id']} deleted\n"
    assert client.get_dag(NS, dag_id).state is DagState.RUNNING
    assert [d.dag_id for d in client.list_dags(NS)] == [dag_id]


def test_jobs_enqueue_makes_runs_from_a_count_or_a_file(cli: Cli, client: Client, tmp_path: Path) -> None:
    made = _json(
        cli(
            "jobs",
            "enqueue",
            NS,
            "step",
            "--count",
            "3",
            "--payload",
            '{"n": 1}',
            "--priority",
            "4",
            "-o",
            "json",
        )
    )
    assert isinstance(made, dict) and len(made["job_ids"]) == 3
    jobs = [client.get_job(NS, job_id) for job_id in made["job_ids"]]
    assert {(j.key, j.state, j.priority, j.dag_id) for j in jobs} == {("step", JobState.READY, 4, None)}
    assert [j.payload for j in jobs] == [{"n": 1}] * 3

    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"a": 1}\n\n{"a": 2, "n": 5}\n')
    printed = _table(cli("jobs", "enqueue", NS, "step", "-f", str(runs), "--payload", '{"n": 1}').out)
    assert printed[0] == ["JOB_ID"] and len(printed) == 3
    assert [client.get_job(NS, row[0]).payload for row in printed[1:]] == [{"n": 1, "a": 1}, {"n": 5, "a": 2}]

    runs.write_text('{"a": 1}\n[2]\n')
    bad = cli("jobs", "enqueue", NS, "step", "-f", str(runs))
    assert bad.code == 2 and f"{runs}:2: expected a JSON object" in bad.err, bad
    runs.write_text("\n")
    assert "no runs" in cli("jobs", "enqueue", NS, "step", "-f", str(runs)).err
    # Neither bad file made anything.
    assert len([j for j in client.list_jobs(NS) if j.dag_id is None]) == 5


def test_jobs_tick_and_prune(cli: Cli, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "dag.yaml"
    path.write_text(DAG)
    dag_id = _json(cli("dag", "submit", NS, "-f", str(path), "-o", "json"))["dag_id"]  # type: ignore[index]
    jobs = {j.key: j for j in client.list_dag_jobs(NS, dag_id)}

    listed = _table(cli("jobs", "list", NS, "--dag", dag_id).out)
    assert listed[0] == ["JOB_ID", "KEY", "STATE", "ATTEMPT", "KIND", "DAG_ID", "UPDATED", "WAITING"]
    assert sorted((r[1], r[2], r[3]) for r in listed[1:]) == [
        ("clean", "PENDING", "1/3"),
        ("extract", "READY", "1/3"),
        ("load", "PENDING", "1/3"),
    ]
    ready = _json(cli("jobs", "list", NS, "--state", "ready", "-o", "json"))
    assert isinstance(ready, list) and [(j["key"], j["state"]) for j in ready] == [("extract", "STATE_READY")]

    done = _json(
        cli(
            "jobs",
            "complete",
            jobs["extract"].job_id,
            "--result",
            '{"rows": 3}',
            "--attempt",
            "1",
            "-o",
            "json",
        )
    )
    assert isinstance(done, dict) and (done["state"], done["result"]) == ("STATE_SUCCEEDED", {"rows": 3})
    got = _fields(cli("jobs", "get", NS, jobs["extract"].job_id).out)
    assert (got["state"], got["result"], got["attempt"]) == ("SUCCEEDED", '{"rows":3}', "1")

    failed = cli("jobs", "fail", jobs["clean"].job_id, "--error", "disk full", "--non-retryable")
    assert failed.code == 0 and _fields(failed.out)["state"] == "FAILED"
    assert _fields(failed.out)["error"] == "disk full"
    assert client.get_dag(NS, dag_id).state is DagState.FAILED
    assert client.get_job(NS, jobs["load"].job_id).state is JobState.SKIPPED

    ticked = _json(cli("tick", NS, "step", "--payload", '{"n": 1}', "-o", "json"))
    assert isinstance(ticked, dict)
    assert (ticked["key"], ticked["state"], ticked["payload"], ticked["dag_id"]) == (
        "step",
        "STATE_READY",
        {"n": 1},
        None,
    )
    client.complete_job(ticked["job_id"])

    pruned = _json(cli("prune", "--older-than", "0", "--namespace", NS, "-o", "json"))
    assert pruned == {"dags_pruned": 1, "jobs_pruned": 4, "dependencies_pruned": 2}
    assert _fields(cli("prune").out)["dags_pruned"] == "0"
    # Pruned work is still found, in history.
    assert client.get_job(NS, ticked["job_id"]).state is JobState.SUCCEEDED
