"""clients/python/demo_client.py, run as a user runs it (its own process,
`--server` and `--rest` pointed at the session's `chronosched up`), walks
through every step and exits 0; its narrative shows each step's outcome,
and what it says happened is checked against the server afterwards."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chronosched import Client, DagState, FireStatus, JobState
from tests.e2e.conftest import UpProcess
from tests.support.processes import clean_env, free_port

pytestmark = pytest.mark.timeout(240)

DEMO = Path(__file__).resolve().parents[2] / "clients" / "python" / "demo_client.py"
# The demo bounds each of its steps at 60 s; eight steps and their output
# fit well inside this, so a demo that hangs fails here instead of at the
# test's own timeout.
RUN_TIMEOUT_S = 200.0

# One pattern per step: the line that says the step did what it should.
KEY_LINES = [
    r"^\[0\] server 127\.0\.0\.1:\d+ is healthy",
    r"^\[0\] REST face http://127\.0\.0\.1:\d+ answers /healthz with 200$",
    r"^\[1\] namespace demo-[0-9a-f]+ created",
    r"^\[2\] definition say version 1 created",
    r"^\[2\] the same name again made say version 2",
    r"^\[3\] DAG demo-pipeline created: \S+, state PENDING",
    r"^\[3\] CreateJobs added 3 jobs",
    r"^\[3\] dependencies wired: extract -> transform -> load",
    r"^\[3\] load -> extract would close a cycle; the server refused it: "
    r"FAILED_PRECONDITION \[CYCLE_DETECTED\]",
    r"^\[4\] DAG started: state RUNNING",
    r"^\[4\] DAG SUCCEEDED: extract, transform, load ran in order",
    r"^\[5\] attempt 1 FAILED \(exit 1: failing on purpose\), was retried, and attempt 2 SUCCEEDED",
    r"^\[6\] \d+ fires ran; definition heartbeat retired",
    r"^\[6\] retired schedule stopped: no fire in 3s after the retire",
    r"^\[7\] REST GET /api/v1/dags/\S+ -> 200: state STATE_SUCCEEDED, job_count 3",
    r"^demo finished: every step did what it should",
]


def test_the_demo_client_walks_through_every_step(up: UpProcess) -> None:
    # The demo needs workers that serve `command` in every namespace: `up`
    # starts DEFAULT_WORKERS (2) of them, with --all-namespaces and the
    # built-in kinds.
    assert len(up.state.get("worker_pids", [])) >= 1, up.state

    done = subprocess.run(
        [sys.executable, str(DEMO), "--server", up.grpc_target, "--rest", up.base_url],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=clean_env(),
        check=False,
    )
    output = f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, output
    missing = [p for p in KEY_LINES if not re.search(p, done.stdout, re.M)]
    assert not missing, f"lines missing from the demo's output: {missing}\n{output}"

    # What the narrative claims, checked against the server.
    ns = re.search(r"namespace (demo-[0-9a-f]+)", done.stdout)
    assert ns is not None
    namespace = ns[1]
    with Client(up.grpc_target) as client:
        versions = [d.version for d in client.definition_versions(namespace, "say")]
        assert versions == [1, 2]
        (dag,) = client.list_dags(namespace)
        assert dag.state is DagState.SUCCEEDED and dag.job_count == 3
        states = {j.key: j.state for j in client.list_dag_jobs(namespace, dag.dag_id)}
        assert states == dict.fromkeys(("extract", "transform", "load"), JobState.SUCCEEDED)
        (flaky_def,) = client.definition_versions(namespace, "flaky")
        (flaky,) = client.list_jobs(namespace, def_id=flaky_def.def_id)
        assert (flaky.state, flaky.attempt) == (JobState.SUCCEEDED, 2)
        (beat,) = client.definition_versions(namespace, "heartbeat")
        assert beat.retire_time is not None
        fires = list(client.list_fires(namespace, beat.def_id))
        assert sum(f.status is FireStatus.FIRED for f in fires) >= 3
        assert all(f.fire_time < beat.retire_time for f in fires)


def test_the_demo_client_fails_clearly_when_nothing_answers() -> None:
    """Pointed at a port nobody listens on, the demo gives up with status 1
    and says what it waited for (its step bound shortened to 2 s)."""
    port = free_port()
    runner = (
        "import sys; sys.path.insert(0, sys.argv[1]); import demo_client as d; "
        "d.STEP_TIMEOUT_S = 2.0; sys.exit(d.main(sys.argv[2:]))"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            runner,
            str(DEMO.parent),
            "--server",
            f"127.0.0.1:{port}",
            "--rest",
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"demo FAILED: timed out after 2s waiting for the server at 127.0.0.1:{port}" in done.stderr
    assert "[1]" not in done.stdout


def test_the_demo_client_uses_only_the_client_package() -> None:
    """It shows what a user of the `chronosched` package can do, so it
    imports neither the server nor the worker (nor test helpers)."""
    tree = ast.parse(DEMO.read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "chronosched" in imported
    assert not imported & {"chronosched_server", "chronosched_worker", "tests"}, imported
