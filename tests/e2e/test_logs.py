"""`--log-format` on a real `chronosched up`: with `json` every line of its
output (its own, the server's, the local workers') is a JSON object with the
required keys, and a job that ran can be followed by its id; Envoy's access
log is JSON too. The session's `up` shows that the text format still works."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import UpProcess, run_up
from tests.support.rest import Json, create_definition, dag_jobs, get_dag, ok
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

REQUIRED = ("timestamp", "level", "logger", "event", "message")
RFC3339_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")


def run_one_command_job(api: httpx.Client) -> tuple[str, str, str]:
    """(namespace, dag_id, job_id) of a one-job DAG that ran to success on a local worker."""
    ns = f"logs-{uuid.uuid4().hex[:8]}"
    ok(api.post("/api/v1/namespaces", json={"namespace_id": ns}))
    d = create_definition(api, ns, "echo", kind="command", payload_template={"argv": ["echo", "hi"]})
    body = {"name": "logs", "jobs": [{"key": "a", "def_id": d["def_id"]}], "start": True}
    dag_id: str = ok(api.post(f"/api/v1/dags/{ns}", json=body))["dag_id"]

    def done() -> Json | None:
        dag = get_dag(api, ns, dag_id)
        assert dag["state"] in ("STATE_PENDING", "STATE_RUNNING", "STATE_SUCCEEDED"), dag
        return dag if dag["state"] == "STATE_SUCCEEDED" else None

    wait_until(done, within=60, what="the DAG to succeed")
    job_id: str = dag_jobs(api, ns, dag_id)["a"]["job_id"]
    return ns, dag_id, job_id


def envoy_log(up: UpProcess) -> Path:
    return up.data_dir / "run" / "envoy" / "envoy.log"


def access_line(up: UpProcess, request_id: str) -> str:
    """The access log's line of the request with this id (Envoy writes it
    when the request ends, and flushes its stdout on its own schedule)."""

    def find() -> str | None:
        for line in envoy_log(up).read_text(errors="replace").splitlines():
            if request_id in line:
                return line
        return None

    return wait_until(find, within=15, what=f"the access log line of request {request_id}")


def test_json_logs_are_one_object_a_line_and_follow_a_job(data_root: Path, tmp_path: Path) -> None:
    up = run_up(data_root / "data", tmp_path / "up.log", "--log-format", "json", "--workers", "1")
    request_id = f"req-{uuid.uuid4().hex}"
    try:
        with httpx.Client(base_url=up.base_url, timeout=30) as api:
            ns, dag_id, job_id = run_one_command_job(api)
            resp = api.get(f"/api/v1/dags/{ns}/{dag_id}", headers={"x-request-id": request_id})
            assert resp.status_code == 200, resp.text
            missing = api.get(f"/api/v1/dags/{ns}/{uuid.uuid4()}")
            assert missing.status_code == 404
        access = json.loads(access_line(up, request_id))
    finally:
        up.stop_and_check()

    lines = up.log_path.read_text().splitlines()
    parsed: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} of up's output is not JSON: {line!r}")
        assert isinstance(value, dict), line
        assert set(REQUIRED) <= value.keys(), line
        assert RFC3339_MS_UTC.fullmatch(value["timestamp"]), line
        assert value["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        parsed.append(value)
    events = [line["event"] for line in parsed]
    # up's own lines, the server's and the worker's.
    for event in ("postgres_ready", "server_started", "up_ready", "worker_connected", "up_stopping"):
        assert event in events, (event, events)
    # The server runs on uvloop (a dependency), and says so.
    assert parsed[events.index("server_started")]["event_loop"] == "uvloop"
    ready = parsed[events.index("up_ready")]
    assert ready["rest_url"] == f"{up.base_url}/api/v1" and ready["message"].startswith("chronosched is up")

    # The job that ran, by its id: started and finished on a local worker.
    of_job = [entry for entry in parsed if entry.get("job_id") == job_id]
    assert [entry["event"] for entry in of_job] == ["job_started", "job_succeeded"], of_job
    for entry in of_job:
        assert (entry["namespace"], entry["dag_id"], entry["attempt"]) == (ns, dag_id, 1)
        assert entry["worker_id"].startswith("local-") and entry["logger"] == "chronosched.worker"

    # Envoy's access line for the REST call: what the client sent.
    assert (access["method"], access["path"], access["status"]) == ("GET", f"/api/v1/dags/{ns}/{dag_id}", 200)
    assert (access["event"], access["logger"], access["level"]) == ("http_request", "envoy.access", "INFO")
    assert RFC3339_MS_UTC.fullmatch(access["timestamp"]) and access["message"].endswith(" 200")
    assert isinstance(access["duration_ms"], int) and access["bytes_sent"] > 0
    assert access["bytes_received"] == 0 and access["request_id"] == request_id
    # Every access line is JSON; the rest of the file is Envoy's own log.
    for text in envoy_log_lines(up):
        if '"envoy.access"' in text:
            assert isinstance(json.loads(text)["status"], int), text
        else:
            assert text.startswith("["), text


def envoy_log_lines(up: UpProcess) -> list[str]:
    return envoy_log(up).read_text(errors="replace").splitlines()


def test_text_logs_are_lines_for_people(up: UpProcess) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    with httpx.Client(base_url=up.base_url, timeout=30) as api:
        resp = api.get("/healthz", headers={"x-request-id": request_id})
    assert resp.status_code == 200, resp.text
    # Envoy's default access line, with the client's method (the transcoder
    # sends /healthz on as a gRPC POST): "METHOD PATH PROTOCOL" STATUS ...
    line = access_line(up, request_id)
    assert '"GET /healthz HTTP/1.1" 200 ' in line and not line.startswith("{"), line

    output = up.log_path.read_text(errors="replace")
    assert "chronosched is up (started in" in output
    connected = [line for line in output.splitlines() if "event=worker_connected" in line]
    assert connected, output[-4000:]
    for line in connected:
        assert TEXT_LINE.match(line) and " worker_id=local-" in line, line
    # Both ends log the stream: the server and the worker.
    loggers = {line.split(" ")[2] for line in connected}
    assert loggers == {"chronosched_server.api.worker:", "chronosched.worker:"}, connected
