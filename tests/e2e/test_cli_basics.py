"""`chronosched up` beside a running one, as processes: on the same data
directory it names the running one (it holds the lock, its state file says
where it listens); on another data directory but the same ports it names the
busy ports before starting anything. Both exit 1 and leave the running one
alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import UpProcess
from tests.support.processes import clean_env

pytestmark = pytest.mark.timeout(180)


def _up(data_dir: Path, running: UpProcess) -> subprocess.CompletedProcess[str]:
    """A second `chronosched up` on data_dir with the running one's ports."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "chronosched_server",
            "up",
            "--data-dir",
            str(data_dir),
            "--grpc-port",
            str(running.grpc_port),
            "--http-port",
            str(running.http_port),
            "--admin-port",
            str(running.admin_port),
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=data_dir.parent,
        timeout=60,
        check=False,
    )


def test_a_second_up_beside_a_running_one_is_refused(data_root: Path, tmp_path: Path) -> None:
    running = UpProcess(
        data_dir=data_root / "data", log_path=tmp_path / "up.log", extra_args=["--workers", "0"]
    )
    running.start()
    try:
        running.wait_ready()
        assert running.proc is not None

        same_dir = _up(running.data_dir, running)
        assert same_dir.returncode == 1, same_dir.stderr
        assert same_dir.stderr == (
            f"chronosched up: error: chronosched is already running at {running.data_dir.resolve()}: "
            f"another `chronosched up` (pid {running.proc.pid}) is already using it\n"
            f"  REST    {running.base_url}/api/v1\n"
            f"  gRPC    {running.grpc_target}\n"
        )
        assert same_dir.stdout == ""

        fresh_dir = data_root / "fresh"
        same_ports = _up(fresh_dir, running)
        assert same_ports.returncode == 1, same_ports.stderr
        # Nothing proves the ports' holder is chronosched: the message asks.
        assert (
            f"chronosched up: error: ports {running.grpc_port} (--grpc-port), {running.http_port} "
            f"(--http-port) and {running.admin_port} (--admin-port) are already in use "
            "(is chronosched already running?)\n"
        ) in same_ports.stderr
        assert "chronosched is already running" not in same_ports.stderr
        assert "Envoy" not in same_ports.stderr and "Traceback" not in same_ports.stderr
        # Refused before anything started: no PostgreSQL initialised, no state.
        assert not (fresh_dir / "pg").exists()
        assert not (fresh_dir / "run" / "up.json").exists()

        # The running one is untouched.
        assert running.proc.poll() is None
        with httpx.Client(base_url=running.base_url, timeout=10) as api:
            assert api.get("/healthz").status_code == 200
        assert running.reload_state()["supervisor_pid"] == running.proc.pid
        running.stop_and_check()
    finally:
        running.stop()
