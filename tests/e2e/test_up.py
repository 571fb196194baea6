"""`chronosched up` and `chronosched migrate` as processes: data survives a
restart, one `up` per data directory, a dying child takes `up` down with a
non-zero status, and migrate is idempotent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.e2e.conftest import STOP_TIMEOUT_S, UpProcess, run_up
from tests.support.processes import clean_env, pid_alive
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


def _chronosched(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chronosched_server", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )


def test_restart_keeps_data_and_a_dead_child_stops_everything(data_root: Path, tmp_path: Path) -> None:
    data_dir = data_root / "data"
    namespace_id = f"kept-{uuid.uuid4().hex[:8]}"

    first = run_up(data_dir, tmp_path / "first.log")
    with httpx.Client(base_url=first.base_url, timeout=30) as api:
        assert api.post("/api/v1/namespaces", json={"namespace_id": namespace_id}).status_code == 200
    first.stop_and_check()

    second = run_up(data_dir, tmp_path / "second.log")
    try:
        with httpx.Client(base_url=second.base_url, timeout=30) as api:
            resp = api.get(f"/api/v1/namespaces/{namespace_id}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["namespace_id"] == namespace_id

        # The gRPC server dies under `up`: everything else must be stopped
        # and `up` must report failure.
        pids = second.child_pids()
        os.kill(pids["server"], signal.SIGKILL)
        assert second.proc is not None
        code = second.proc.wait(STOP_TIMEOUT_S)
        assert code != 0
        assert "gRPC server" in second.log_tail() and "SIGKILL" in second.log_tail()
        survivors = {name: pid for name, pid in pids.items() if pid_alive(pid)}
        assert not survivors, survivors
    finally:
        second.stop()


def test_second_up_on_the_same_data_dir_is_refused(up: UpProcess) -> None:
    result = _chronosched(
        "up",
        "--data-dir",
        str(up.data_dir),
        "--grpc-port",
        "1",
        "--http-port",
        "2",
        "--admin-port",
        "3",
    )
    assert result.returncode == 1
    assert "already using" in result.stderr
    with httpx.Client(base_url=up.base_url, timeout=10) as api:
        assert api.get("/healthz").status_code == 200


def test_migrate_is_idempotent(up: UpProcess) -> None:
    # A fresh database in the session's embedded PostgreSQL.
    base_url: str = up.state["database_url"]
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = base_url.replace("/chronosched?", f"/{name}?", 1)
    assert url != base_url

    first = _chronosched("migrate", "--database-url", url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied ")
    applied = [line.strip() for line in first.stdout.splitlines()[1:]]
    assert applied and all(n.endswith(".sql") for n in applied)

    second = _chronosched("migrate", "--database-url", url)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("command", ["server", "migrate"])
def test_missing_database_url_is_a_usage_error(command: str) -> None:
    result = _chronosched(command)
    assert result.returncode == 2
    assert "--database-url is required" in result.stderr


# Each copy of the job holds an exclusive flock on <dir>/lock for as long as
# it or its grandchild lives (the grandchild inherits the descriptor), so a
# copy that starts while an earlier one still runs records "overlap". It
# appends "<pid> <grandchild pid> alone|overlap" to <dir>/runs; the first copy
# then sleeps, later ones exit 0.
OVERLAP_PROBE = """
import fcntl, os, subprocess, sys, time
d = sys.argv[1]
runs = os.path.join(d, 'runs')
first = not os.path.exists(runs)
lock = os.open(os.path.join(d, 'lock'), os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    alone = 'alone'
except BlockingIOError:
    alone = 'overlap'
grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], pass_fds=[lock])
with open(runs, 'a') as f:
    f.write(f'{os.getpid()} {grandchild.pid} {alone}\\n')
if first:
    time.sleep(300)
"""


def _runs(path: Path) -> list[list[str]]:
    text = path.read_text() if path.exists() else ""
    return [line.split() for line in text.splitlines(keepends=True) if line.endswith("\n")]


def test_a_killed_workers_job_processes_are_gone_before_its_restart(data_root: Path, tmp_path: Path) -> None:
    up = UpProcess(data_dir=data_root / "data", log_path=tmp_path / "up.log", extra_args=["--workers", "1"])
    up.start()
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    leftovers: list[int] = []
    try:
        up.wait_ready()
        [worker] = up.state["worker_pids"]
        ns = f"reap-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=up.base_url, timeout=30) as api:
            assert api.post("/api/v1/namespaces", json={"namespace_id": ns}).status_code == 200
            definition = {
                "name": "probe",
                "kind": "command",
                "payload_template": {"argv": [sys.executable, "-c", OVERLAP_PROBE, str(job_dir)]},
                "max_attempts": 3,
                "backoff_initial": "0s",
            }
            resp = api.post(f"/api/v1/definitions/{ns}", json=definition)
            assert resp.status_code == 200, resp.text
            dag = {"name": "reap", "jobs": [{"key": "probe", "def_id": resp.json()["def_id"]}], "start": True}
            resp = api.post(f"/api/v1/dags/{ns}", json=dag)
            assert resp.status_code == 200, resp.text
            dag_id = resp.json()["dag_id"]

            runs = job_dir / "runs"
            [[child, grandchild, alone]] = wait_until(
                lambda: _runs(runs) or None, within=30, what="the job to start", every=0.02
            )
            leftovers += [int(child), int(grandchild)]
            assert alone == "alone" and all(pid_alive(p) for p in leftovers)

            os.kill(worker, signal.SIGKILL)
            wait_until(
                lambda: up.reload_state()["worker_pids"][0] != worker or None,
                within=30,
                what="the worker's restart",
                every=0.02,
            )
            # `up` writes the new pid only after starting the new worker.
            assert not [p for p in leftovers if pid_alive(p)], "the killed worker's job outlived it"

            def done() -> dict[str, Any] | None:
                [job] = api.get(f"/api/v1/dags/{ns}/{dag_id}/jobs").json()["jobs"]
                assert job["state"] != "STATE_FAILED", job
                return job if job["state"] == "STATE_SUCCEEDED" else None

            job = wait_until(done, within=60, what="the job to succeed again", every=0.02)
        assert job["attempt"] == 2, job
        assert [alone for _, _, alone in _runs(runs)] == ["alone", "alone"]
        assert "leftover process(es) of local worker (pid" in up.log_tail(60_000)
        up.stop_and_check()
    finally:
        up.stop()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
