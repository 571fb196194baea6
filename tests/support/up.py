"""`chronosched up` as a real process (embedded PostgreSQL, the gRPC server
and the real Envoy), for the tests that reach it over HTTP: the end-to-end
tests (tests/e2e/) and the REST fuzzer (tests/fuzz/) each run one per session.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import clean_env, free_port, pid_alive
from tests.support.waiting import wait_until

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


@dataclass
class UpProcess:
    """A running `python -m chronosched_server up`."""

    data_dir: Path
    log_path: Path
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    # More `up` flags (`--workers 1`, ...).
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, max_chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "chronosched_server",
            "up",
            "--data-dir",
            str(self.data_dir),
            "--grpc-port",
            str(self.grpc_port),
            "--http-port",
            str(self.http_port),
            "--admin-port",
            str(self.admin_port),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # The embedded mode is under test: no CHRONOSCHED_* setting
                # from the developer's shell (a DATABASE_URL above all) may
                # leak in.
                env=clean_env(),
                cwd=self.data_dir.parent,
            )

    def wait_ready(self) -> None:
        """Poll GET /healthz through Envoy and `up`'s run file until both say
        ready; fail at once if `up` exits."""
        proc = self.proc
        assert proc is not None
        state_path = self.data_dir / "run" / "up.json"
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:

            def ready_state() -> dict[str, Any] | None:
                code = proc.poll()
                if code is not None:
                    pytest.fail(
                        f"`chronosched up` exited with {code} before it was ready:\n{self.log_tail()}"
                    )
                try:
                    healthy = client.get("/healthz").status_code == 200
                except httpx.TransportError:
                    healthy = False
                if not healthy:
                    return None
                try:
                    state: dict[str, Any] = json.loads(state_path.read_text())
                except (OSError, ValueError):
                    return None
                return state if state.get("ready") else None

            self.state = wait_until(
                ready_state,
                within=READY_TIMEOUT_S,
                what="`chronosched up` to be ready",
                every=0.1,
                detail=self.log_tail,
            )

    def child_pids(self) -> dict[str, int]:
        pids = {
            "postgres": self.state["postgres_pid"],
            "server": self.state["server"]["pid"],
            "envoy": self.state["envoy"]["pid"],
        }
        for i, pid in enumerate(self.state.get("worker_pids", [])):
            pids[f"worker-{i}"] = pid
        for name, pid in pids.items():
            assert isinstance(pid, int), (name, pid)
        return pids

    def reload_state(self) -> dict[str, Any]:
        self.state = json.loads((self.data_dir / "run" / "up.json").read_text())
        return self.state

    def stop(self) -> int:
        """Ctrl-C (SIGINT) and wait; returns `up`'s exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"`up` did not exit within {STOP_TIMEOUT_S:.0f}s of SIGINT:\n{self.log_tail()}")
        return self.proc.returncode

    def stop_and_check(self) -> None:
        """Stop with SIGINT and assert a clean exit that leaves nothing running."""
        pids = self.child_pids()
        code = self.stop()
        assert code == 0, f"`chronosched up` exited with {code}:\n{self.log_tail()}"
        survivors = {name: pid for name, pid in pids.items() if pid_alive(pid)}
        assert not survivors, f"still running after `up` exited: {survivors}"
        assert not (self.data_dir / "run" / "up.json").exists()


@contextlib.contextmanager
def temporary_data_root() -> Iterator[Path]:
    """A directory for PostgreSQL data, outside pytest's tmp_path.

    Running as root, pgserver opens every parent of the data directory to
    its `pgserver` user (o+rx), and any other pytest session starting
    meanwhile resets /tmp/pytest-of-root to 0700, locking postgres out.
    """
    root = Path(tempfile.mkdtemp(prefix="chronosched-e2e-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_up(data_dir: Path, log_path: Path, *extra_args: str) -> UpProcess:
    up = UpProcess(data_dir=data_dir, log_path=log_path, extra_args=list(extra_args))
    up.start()
    try:
        up.wait_ready()
    except BaseException:
        up.stop()
        raise
    return up


@contextlib.contextmanager
def session_up(log_dir: Path, *extra_args: str) -> Iterator[UpProcess]:
    """A ready `up` (with more `up` flags, if given) on a fresh data directory;
    on exit it is stopped with SIGINT, which must exit 0 and leave no
    PostgreSQL, server or Envoy behind."""
    with temporary_data_root() as root:
        running = run_up(root / "data", log_dir / "up.log", *extra_args)
        yield running
        running.stop_and_check()
