"""Embedded PostgreSQL for `chronosched up`, from the pgserver package.

The cluster lives in `<data_dir>/pg` and outlives the process: a later start
on the same directory finds the same data. pgserver's own cleanup only stops
the postmaster when the *last* process that opened it lets go (it keeps a list
of handle pids in the data directory) and does nothing for pids that died
without letting go, so `stop()` checks the outcome and stops the postmaster
itself when pgserver left it running with nobody else using it.

The SQL it needs (cluster settings, creating the database) lives in the
storage layer: `chronosched_server.storage.bootstrap`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from chronosched_server.errors import DomainError
from chronosched_server.storage.bootstrap import prepare_database

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "chronosched"
_HANDLE_PIDS = ".handle_pids.json"


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started or stopped."""


def _import_pgserver() -> None:
    # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers,
    # CI) and falls back to /tmp/runtime-<uid>, which is what we want anyway.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver  # noqa: F401

    # pgserver logs every pg_ctl call at INFO; only its problems matter here.
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def pid_alive(pid: int) -> bool:
    """Whether a process exists and has not exited.

    A zombie counts as gone: a daemonized postmaster is reparented to init,
    and some inits (this project's CI VMs among them) reap late, so an exited
    postgres can stay visible to kill(pid, 0) for seconds.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        # Without procfs (macOS) kill(pid, 0) is all we have; with it, a
        # missing entry means the process went away just now.
        return not Path("/proc/self").exists()
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def _postmaster_pid(pgdata: Path) -> int | None:
    """The running postmaster's pid from postmaster.pid, or None."""
    try:
        first = (pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0]
        pid = int(first.strip())
    except (OSError, IndexError, ValueError):
        return None
    return pid if pid_alive(pid) else None


class EmbeddedPostgres:
    """One PostgreSQL cluster under `<data_dir>/pg`, serving one database."""

    def __init__(self, data_dir: Path, database: str = DEFAULT_DATABASE) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "pg"
        self.database = database
        self._server: PostgresServer | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """URL of the chronosched database (a unix-socket URI)."""
        if self._url is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not started")
        return self._url

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return _postmaster_pid(self.pgdata)

    def start(self) -> str:
        """Start (or attach to) the cluster, create the database if missing and
        return its URL."""
        _import_pgserver()
        from pgserver.postgres_server import PostgresServer, get_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles(PostgresServer)
        try:
            # cleanup_mode="stop": the data must survive us ("delete" would
            # remove it, None would leave postgres running after exit).
            self._server = get_server(self.pgdata, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise EmbeddedPostgresError(
                f"could not start PostgreSQL in {self.pgdata}: {exc}{self._log_tail()}"
            ) from exc
        try:
            prepare_database(self._server.get_uri(), self.database)
        except DomainError as exc:
            raise EmbeddedPostgresError(
                f"could not create database {self.database!r}: {exc.__cause__ or exc}"
            ) from exc
        self._url = self._server.get_uri(self.database)
        return self._url

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the postmaster (unless another live process still uses it) and
        wait until it is gone. Safe to call more than once."""
        server, self._server = self._server, None
        if server is None:
            return
        from pgserver.postgres_server import PostgresServer

        # Drops our handle; stops postgres if we were its last user.
        server.cleanup()
        PostgresServer._instances.pop(self.pgdata, None)
        pid = _postmaster_pid(self.pgdata)
        if pid is None:
            return
        others = [p for p in self._handle_pids() if p != os.getpid() and pid_alive(p)]
        if others:
            log.info("PostgreSQL left running for other processes using it: %s", others)
            return
        self._stop_postmaster(pid, server.system_user, timeout_s)

    # --- internals -----------------------------------------------------------

    def _log_tail(self, max_chars: int = 2000) -> str:
        # pgserver points postgres' own log at <pgdata>/log; its last lines
        # usually say why a start failed (port, permissions, corrupt data).
        try:
            text = (self.pgdata / "log").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""
        return f"\n--- {self.pgdata / 'log'} ---\n{text[-max_chars:]}" if text else ""

    def _handle_pids(self) -> list[int]:
        try:
            raw = json.loads((self.pgdata / _HANDLE_PIDS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [p for p in raw if isinstance(p, int)] if isinstance(raw, list) else []

    def _forget_dead_handles(self, server_cls: type[PostgresServer]) -> None:
        # A process killed without running its atexit hooks stays in the
        # handle list forever, and pgserver would then never stop postgres
        # for anyone again. Prune it under pgserver's own inter-process lock.
        path = self.pgdata / _HANDLE_PIDS
        if not path.exists():
            return
        with server_cls._lock:
            pids = self._handle_pids()
            alive = [p for p in pids if pid_alive(p)]
            if alive != pids:
                path.write_text(json.dumps(alive), encoding="utf-8")

    def _stop_postmaster(self, pid: int, system_user: str | None, timeout_s: float) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        # "fast" disconnects clients and shuts down cleanly (checkpoint), so
        # the next start needs no crash recovery.
        cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w"]
        cmd += ["-t", str(int(timeout_s)), "stop"]
        try:
            subprocess.run(cmd, user=system_user, capture_output=True, timeout=timeout_s + 5, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log.warning("pg_ctl stop failed (%s); signalling the postmaster", exc)
        if self._wait_gone(pid, 2.0):
            return
        # SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its
        # backends down with it, which SIGKILL would not.
        for sig, wait_s in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if self._wait_gone(pid, wait_s):
                return
        raise EmbeddedPostgresError(f"PostgreSQL (pid {pid}) did not stop")

    @staticmethod
    def _wait_gone(pid: int, timeout_s: float) -> bool:
        # The postmaster is not our child (pg_ctl daemonizes it), so there is
        # no wait() to block on; poll its pid briefly.
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True
