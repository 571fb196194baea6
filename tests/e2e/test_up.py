"""`chronosched up` and `chronosched migrate` as processes: data survives a
restart, one `up` per data directory, a dying child takes `up` down with a
non-zero status, and migrate is idempotent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from chronosched_server.embedded import pid_alive
from tests.e2e.conftest import STOP_TIMEOUT_S, UpProcess, run_up

pytestmark = pytest.mark.timeout(180)


def _chronosched(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCHED_")}
    return subprocess.run(
        [sys.executable, "-m", "chronosched_server", *args],
        capture_output=True,
        text=True,
        env=env,
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
