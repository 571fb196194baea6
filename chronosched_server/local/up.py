"""`chronosched up`: everything on one machine, supervised.

Starts the pieces in order (embedded PostgreSQL unless a database URL is
given, migrations, the gRPC server as its own process, Envoy, local workers),
watches them (a local worker that dies is restarted; anything else dying
stops everything) and stops them in reverse order on SIGINT/SIGTERM.
`chronosched_server.cli` parses the flags and calls `run()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import functools
import ipaddress
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from chronosched_server.config import (
    DEFAULT_RETENTION,
    WILDCARD_HOSTS,
    connect_host,
    format_duration,
    host_port,
)
from chronosched_server.local.embedded import EmbeddedPostgres, EmbeddedPostgresError, pid_alive
from chronosched_server.local.envoy import EnvoyError, EnvoyProcess, EnvoySettings, start_envoy
from chronosched_server.tokens import NewToken

if TYPE_CHECKING:
    import grpc

    from chronosched_server.storage.db import Database

log = logging.getLogger("chronosched")

DEFAULT_DATA_DIR = "./.chronosched"
# Where the gRPC server and Envoy's REST listener bind unless --listen says
# otherwise: this machine only. Envoy passes gRPC through to anyone who
# reaches its listener, so a wider address is a decision, never a default.
DEFAULT_LISTEN = "127.0.0.1"
DEFAULT_GRPC_PORT = 50051
DEFAULT_HTTP_PORT = 8080
DEFAULT_ADMIN_PORT = 9901
DEFAULT_WORKERS = 2
# A local worker that dies is restarted after this pause, so one that cannot
# start does not spin; its drain grace stays inside SERVER_STOP_GRACE_S.
WORKER_RESTART_DELAY_S = 1.0
WORKER_GRACE_S = 10

# How long `up` waits for each piece to become ready, and how long the gRPC
# server gets to drain in-flight calls before it is killed.
SERVER_READY_TIMEOUT_S = 60.0
ENVOY_READY_TIMEOUT_S = 30.0
# Past this, `up` says it is ready with the local workers that connected so
# far (the banner says how many); the others keep trying.
WORKERS_READY_TIMEOUT_S = 30.0
WORKERS_POLL_S = 0.05
SERVER_STOP_GRACE_S = 15.0
ENVOY_STOP_GRACE_S = 10.0

# Files `up` keeps under <data-dir>/run/.
LOCK_FILE = "up.lock"
STATE_FILE = "up.json"

# Envoy's admin API (it can stop Envoy and dump its config) listens on
# loopback whatever --listen says; the gRPC server and Envoy's REST listener
# bind the --listen address.
ADMIN_HOST = "127.0.0.1"
# Settings of ours the children must not pick up from up's environment: up
# hands each child its TLS files as flags, or none.
_TLS_ENV = (
    "CHRONOSCHED_TLS_CERT",
    "CHRONOSCHED_TLS_KEY",
    "CHRONOSCHED_TLS_CLIENT_CA",
    "CHRONOSCHED_TLS_CA",
    "CHRONOSCHED_TLS_CLIENT_CERT",
    "CHRONOSCHED_TLS_CLIENT_KEY",
)


class StartupError(RuntimeError):
    """A piece of `up` failed to start; the message says which and why."""


class _Interrupted(Exception):
    """SIGINT/SIGTERM arrived while `up` was still starting."""


class _SignalWaker:
    """SIGINT/SIGTERM recorded as a flag plus a readable pipe.

    The handlers only record the signal; the main thread decides when to
    stop, so a Ctrl-C never lands in the middle of starting PostgreSQL or
    spawning a child. The pipe (signal.set_wakeup_fd) lets the supervisor
    block in select() on it together with the children's pidfds.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1

    def install(self) -> None:
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd)
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self.read_fd)
        os.close(self._write_fd)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read_fd, 512):
                pass

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to timeout_s, returning early (True) on a signal."""
        if self.received is None:
            with selectors.DefaultSelector() as sel:
                sel.register(self.read_fd, selectors.EVENT_READ)
                sel.select(timeout_s)
            self.drain()
        return self.received is not None

    def check(self) -> None:
        if self.received is not None:
            raise _Interrupted


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scope(listen: str) -> str:
    """Who can reach a listener bound to `listen`, in words."""
    if _is_loopback(listen):
        return "on this machine only"
    if listen in WILDCARD_HOSTS:
        return f"on every interface ({listen or '0.0.0.0'}), other machines included"
    return f"on {listen}, for whoever can reach that address"


def _pidfd(pid: int) -> int | None:
    # A pidfd becomes readable when the process exits, for children and
    # non-children (the daemonized postmaster) alike; Linux 5.3+ only.
    pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return pidfd_open(pid)
    except OSError:
        return None


def _bind_error(host: str, port: int) -> OSError | None:
    """Bind host:port and close at once: None if that worked, else why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: connections of an earlier listener
        # lingering in TIME_WAIT do not make a port busy, a listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _child_ended(proc: subprocess.Popen[bytes]) -> str | None:
    """How a child ended, or None while it runs."""
    code = proc.poll()
    if code is None:
        return None
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _stop_child(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM, then SIGKILL after grace_s; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop within %.0fs; killing it", proc.pid, grace_s)
            proc.kill()
            proc.wait()
    return proc.returncode


# Nor the tokens of up's environment: the server gets the admin token only
# with --auth, each worker the token up made for it.
_AUTH_ENV = ("CHRONOSCHED_ADMIN_TOKEN", "CHRONOSCHED_TOKEN", "CHRONOSCHED_INSECURE_NO_AUTH")


def _child_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _TLS_ENV + _AUTH_ENV}
    env.update(extra)
    return env


def _start_worker(
    index: int,
    grpc_target: str,
    log_level: str,
    state_dir: Path,
    tls_args: list[str],
    log_format: str = "text",
    token: str | None = None,
) -> subprocess.Popen[bytes]:
    """One local worker: every namespace, the built-in kinds; results not yet
    acknowledged survive its restart in `state_dir`. `token` (up --auth) is
    handed over in its environment, never on its command line."""
    args = [
        sys.executable,
        "-m",
        "chronosched_worker",
        "--server",
        grpc_target,
        "--all-namespaces",
        "--worker-id",
        local_worker_id(index),
        "--grace",
        str(WORKER_GRACE_S),
        "--log-level",
        log_level,
        "--log-format",
        log_format,
        "--state-dir",
        str(state_dir),
        *tls_args,
    ]
    # A session of its own (which also keeps a terminal's Ctrl-C away from
    # it, as for the other children): what its jobs leave behind when it dies
    # is then findable by session id, see _reap_worker_leftovers.
    env = _child_env(CHRONOSCHED_TOKEN=token) if token else _child_env()
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def local_worker_id(index: int) -> str:
    """A local worker's id: it carries this run's pid (see _start)."""
    return f"local-{os.getpid()}-{index}"


@contextlib.asynccontextmanager
async def _database(url: str) -> AsyncIterator[Database]:
    """One connection's Database for up's own few statements, closed after."""
    # Imported here, as in _migrate: the CLI imports this module for its
    # defaults, and psycopg is heavy.
    from chronosched_server.storage.db import Database

    db = Database(url, min_size=1, max_size=1)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def _reap_worker_leftovers(pid: int) -> None:
    """Kill what a local worker that has exited left in its session."""
    # Imported here: only `up` needs the worker package, and it is heavy.
    from chronosched_worker.reaper import reap_session

    killed = reap_session(pid)
    if killed:
        log.warning(
            "killed %d leftover process(es) of local worker (pid %d): %s",
            len(killed),
            pid,
            ", ".join(map(str, killed)),
        )
    else:
        log.debug("local worker (pid %d) left no processes behind", pid)


@dataclass
class UpOptions:
    """What `chronosched up` was asked for (its flags, already validated)."""

    data_dir: Path
    grpc_port: int
    http_port: int
    admin_port: int
    database_url: str | None
    workers: int
    log_level: str
    # `text` or `json`: up's own lines, and handed to the server and workers.
    log_format: str = "text"
    # Handed to the server (`chronosched server --retention`).
    retention: timedelta = DEFAULT_RETENTION
    # What the gRPC server and Envoy's REST listener bind.
    listen: str = DEFAULT_LISTEN
    # TLS on both (PEM files); with a client CA both require client
    # certificates. `tls_ca` is what up's own clients trust (default: the
    # certificate itself); with a client CA they present tls_cert/tls_key.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tls_ca: Path | None = None
    # Bearer tokens (--auth): the server requires them; its admin token is
    # `admin_token` (CHRONOSCHED_ADMIN_TOKEN) or one up makes and prints.
    # Without --auth the server runs with --insecure-no-auth.
    auth: bool = False
    admin_token: str | None = field(default=None, repr=False)
    # Handed to the server (`chronosched server --metrics-port`); None: off.
    metrics_port: int | None = None


@dataclass
class _Up(UpOptions):
    """`chronosched up`: start the pieces in order, supervise them, stop them
    in reverse order."""

    signals: _SignalWaker = field(default_factory=_SignalWaker)
    run_dir: Path = field(init=False)
    pg: EmbeddedPostgres | None = None
    server: subprocess.Popen[bytes] | None = None
    envoy: EnvoyProcess | None = None
    worker_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # How many local workers had their streams open when up said it was ready.
    workers_connected: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    # With --auth: whether up made the admin token (then the banner shows
    # it), and the worker token up made for its local workers.
    admin_token_made: bool = False
    worker_token: NewToken | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.run_dir = self.data_dir / "run"

    @property
    def local_host(self) -> str:
        """Where up's own clients reach the --listen address (loopback for
        a wildcard); a TLS certificate must name it."""
        return connect_host(self.listen)

    @property
    def grpc_target(self) -> str:
        return host_port(self.local_host, self.grpc_port)

    @property
    def rest_url(self) -> str:
        scheme = "https" if self.tls_cert is not None else "http"
        return f"{scheme}://{host_port(self.local_host, self.http_port)}"

    @property
    def trusted_ca(self) -> Path | None:
        """The CA up's own clients verify the server with, under TLS."""
        return self.tls_ca or self.tls_cert

    @property
    def client_identity(self) -> tuple[Path, Path] | None:
        """The certificate and key up's own clients present: with mutual
        TLS, the server's own (it must be one the client CA issued)."""
        if self.tls_client_ca is None or self.tls_cert is None or self.tls_key is None:
            return None
        return self.tls_cert, self.tls_key

    @property
    def worker_state_dir(self) -> Path:
        return self.run_dir / "workers"

    def _worker_tls_args(self) -> list[str]:
        if self.trusted_ca is None:
            return []
        args = ["--tls-ca", str(self.trusted_ca)]
        if self.client_identity is not None:
            cert, key = self.client_identity
            args += ["--tls-cert", str(cert), "--tls-key", str(key)]
        return args

    def _spawn_worker(self, index: int) -> subprocess.Popen[bytes]:
        return _start_worker(
            index,
            self.grpc_target,
            self.log_level,
            self.worker_state_dir,
            self._worker_tls_args(),
            log_format=self.log_format,
            token=self.worker_token.text if self.worker_token is not None else None,
        )

    # -- the whole life cycle --

    def run(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = self._lock()
        if lock is None:
            self._error(self._already_running())
            return 1
        self.signals.install()
        started = time.monotonic()
        try:
            try:
                self._reap_leftovers()
                self._check_ports()
                self._start()
            except _Interrupted:
                log.info("interrupted during start-up; stopping")
                return 0
            except StartupError as exc:
                self._error(str(exc))
                return 1
            self._announce(time.monotonic() - started)
            # Ready only once announced: whoever waits on the run file can
            # then read the banner (the admin token of `--auth`) in the log.
            self._save_state(ready=True)
            return self._supervise()
        finally:
            self._shutdown()
            self.signals.uninstall()
            (self.run_dir / STATE_FILE).unlink(missing_ok=True)
            os.close(lock)

    def _lock(self) -> int | None:
        # One `up` per data directory: two would share one PostgreSQL and
        # fight over the run files. The lock dies with the process, so a
        # crashed `up` never blocks the next one.
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _already_running(self) -> str:
        """Why `up` cannot use this data directory: another `up` holds its
        lock. Names that one's pid and, once it is ready, its addresses,
        from its state file."""
        holder = "another `chronosched up`"
        addresses: list[str] = []
        state = self._holder_state()
        if state is not None:
            ready = state.get("ready") is True
            holder += f" (pid {state['supervisor_pid']}{'' if ready else ', still starting'})"
            if ready:
                for label, key in (("REST", "rest_url"), ("gRPC", "grpc_target")):
                    value = state.get(key)
                    if isinstance(value, str):
                        addresses.append(f"  {label:<7} {value}")
        head = f"chronosched is already running at {self.data_dir}: {holder} is already using it"
        return "\n".join([head, *addresses])

    def _holder_state(self) -> dict[str, Any] | None:
        # The lock holder's state file, if it has written one yet. A file
        # left by an `up` that died unclean (the holder has not cleared it
        # yet) names a dead pid and says nothing about the holder.
        try:
            state = json.loads((self.run_dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict):
            return None
        pid = state.get("supervisor_pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid == os.getpid() or not pid_alive(pid):
            return None
        return state

    def _check_ports(self) -> None:
        """Refuse to start when a port is taken, before anything is started,
        rather than fail later with Envoy's bind error. Whoever holds it is
        not necessarily chronosched (another data directory's `up`, say), so
        the message only asks."""
        busy: list[str] = []
        for flag, host, port in (
            ("--grpc-port", self.listen, self.grpc_port),
            ("--http-port", self.listen, self.http_port),
            ("--admin-port", ADMIN_HOST, self.admin_port),
            *([("--metrics-port", self.listen, self.metrics_port)] if self.metrics_port is not None else []),
        ):
            error = _bind_error(host, port)
            if error is None:
                continue
            if error.errno != errno.EADDRINUSE:
                raise StartupError(
                    f"cannot listen on {host_port(host, port)} ({flag}): {error.strerror or error}"
                )
            busy.append(f"{port} ({flag})")
        if len(busy) == 1:
            raise StartupError(f"port {busy[0]} is already in use (is chronosched already running?)")
        if busy:
            ports = f"{', '.join(busy[:-1])} and {busy[-1]}"
            raise StartupError(f"ports {ports} are already in use (is chronosched already running?)")

    # -- start-up --

    def _start(self) -> None:
        if self.database_url is None:
            self.pg = EmbeddedPostgres(self.data_dir)
            try:
                url = self.pg.start()
            except EmbeddedPostgresError as exc:
                raise StartupError(str(exc)) from exc
            log.info(
                "embedded PostgreSQL ready (pid %s, data in %s)",
                self.pg.pid,
                self.pg.pgdata,
                extra={"event": "postgres_ready"},
            )
        else:
            url = self.database_url
        self._save_state(database_url=url, postgres_pid=self.pg.pid if self.pg is not None else None)
        self.signals.check()

        self._migrate(url)
        self.signals.check()

        if self.auth:
            self._make_tokens(url)
        self._start_server(url)
        self._wait_serving()
        self.signals.check()

        self._start_envoy()
        self.signals.check()

        # Worker ids carry this run's pid, so what earlier runs' workers kept
        # there can never be reported again (their leases brought the jobs back).
        shutil.rmtree(self.worker_state_dir, ignore_errors=True)
        self.worker_procs = [self._spawn_worker(i) for i in range(self.workers)]
        self._save_state(
            rest_url=f"{self.rest_url}/api/v1",
            health_url=f"{self.rest_url}/healthz",
            grpc_target=self.grpc_target,
            worker_pids=[p.pid for p in self.worker_procs],
        )
        self.workers_connected = self._wait_workers(url)
        self.signals.check()

    def _wait_workers(self, url: str) -> int:
        """Wait until every local worker's stream is open (its row in
        worker_streams, which ListWorkers reads), so that whoever reads the
        banner finds them listed and a job enqueued then starts at once;
        stop waiting after WORKERS_READY_TIMEOUT_S, when a worker exits
        (the supervisor restarts it) or on a signal. How many connected."""
        if not self.worker_procs:
            return 0
        # Imported here, as in _migrate: psycopg is heavy.
        from chronosched_server.errors import DomainError
        from chronosched_server.storage import presence

        ids = {local_worker_id(i) for i in range(len(self.worker_procs))}
        # Streams are listed in (worker_id, stream_id) order: start just
        # before this run's ids, so other workers of a shared database
        # cannot crowd them out of the page.
        before_ours = (local_worker_id(0)[:-1], uuid.UUID(int=0))

        async def wait() -> set[str]:
            async with _database(url) as db:
                deadline = time.monotonic() + WORKERS_READY_TIMEOUT_S
                while True:
                    rows = await presence.list_page(db, None, before_ours, 10 * len(ids))
                    connected = ids & {row.worker_id for row in rows}
                    ended = any(p.poll() is not None for p in self.worker_procs)
                    if connected == ids or ended or time.monotonic() >= deadline:
                        return connected
                    self.signals.check()
                    await asyncio.sleep(WORKERS_POLL_S)

        try:
            connected = asyncio.run(wait())
        except DomainError as exc:
            log.warning("could not see whether the local workers connected: %s", exc)
            return 0
        if connected != ids:
            log.warning(
                "%d of %d local workers connected; the others keep trying (their logs say why)",
                len(connected),
                len(ids),
                extra={"event": "workers_not_connected", "missing": sorted(ids - connected)},
            )
        return len(connected)

    @property
    def _worker_token_description(self) -> str:
        return f"chronosched up: its local workers (data dir {self.data_dir})"

    def _make_tokens(self, url: str) -> None:
        """--auth: the admin token (made here unless CHRONOSCHED_ADMIN_TOKEN
        gave one), and a worker token for every namespace for the local
        workers, stored like any token. A worker token an earlier run left
        (killed before it revoked it) is revoked first."""
        # Imported here, as in _migrate: the CLI imports this module for its
        # defaults, and psycopg is heavy.
        from chronosched_server import tokens
        from chronosched_server.errors import DomainError
        from chronosched_server.storage import tokens as stored_tokens

        if not self.admin_token:
            self.admin_token = tokens.new_admin_token()
            self.admin_token_made = True
        if not self.workers:
            return
        made = tokens.new_token()
        description = self._worker_token_description

        async def store() -> None:
            async with _database(url) as db:
                await stored_tokens.revoke_described(db, description)
                await stored_tokens.create(
                    db,
                    token_id=made.token_id,
                    digest=made.digest,
                    scope=tokens.Scope.WORKER.value,
                    namespace_id=None,
                    description=description,
                    ttl=None,
                )

        try:
            asyncio.run(store())
        except DomainError as exc:
            raise StartupError(f"could not make the local workers' token: {exc}") from exc
        self.worker_token = made

    def _revoke_worker_token(self) -> None:
        """Revoke the local workers' token once they are gone (best effort:
        the next `up --auth` on this data directory revokes a leftover)."""
        url = self.state.get("database_url")
        if self.worker_token is None or not isinstance(url, str):
            return
        from chronosched_server.errors import DomainError
        from chronosched_server.storage import tokens as stored_tokens

        token_id = self.worker_token.token_id

        async def revoke() -> None:
            async with _database(url) as db:
                await stored_tokens.revoke(db, token_id)

        try:
            asyncio.run(revoke())
        except DomainError as exc:
            log.warning("could not revoke the local workers' token %s: %s", token_id, exc)

    def _migrate(self, url: str) -> None:
        from chronosched_server.errors import DomainError
        from chronosched_server.storage.migrate import migrate

        try:
            applied = asyncio.run(migrate(url))
        except DomainError as exc:
            raise StartupError(f"migrations failed: {exc.__cause__ or exc}") from exc
        if applied:
            log.info(
                "applied migrations: %s",
                ", ".join(applied),
                extra={"event": "migrations_applied", "migrations": applied},
            )

    def _start_server(self, url: str) -> None:
        args = [
            sys.executable,
            "-m",
            "chronosched_server",
            "server",
            "--database-url",
            url,
            "--grpc-host",
            self.listen,
            "--grpc-port",
            str(self.grpc_port),
            "--log-level",
            self.log_level,
            "--log-format",
            self.log_format,
            "--retention",
            format_duration(self.retention),
        ]
        if self.tls_cert is not None and self.tls_key is not None:
            args += ["--tls-cert", str(self.tls_cert), "--tls-key", str(self.tls_key)]
        if self.tls_client_ca is not None:
            args += ["--tls-client-ca", str(self.tls_client_ca)]
        if self.metrics_port is not None:
            args += ["--metrics-port", str(self.metrics_port)]
        # The admin token travels in the environment (command lines are
        # public); without --auth the server takes calls without tokens.
        if self.auth and self.admin_token:
            env = _child_env(CHRONOSCHED_ADMIN_TOKEN=self.admin_token)
        else:
            args.append("--insecure-no-auth")
            env = _child_env()
        # Own process group: a terminal's Ctrl-C reaches only us, and we stop
        # the children in order (Envoy first, so no request hits a stopped
        # server). Its output goes to ours.
        self.server = subprocess.Popen(args, stdin=subprocess.DEVNULL, process_group=0, env=env)
        self._save_state(server={"pid": self.server.pid, "args": args})

    def _wait_serving(self) -> None:
        """Poll grpc.health.v1 until the server reports SERVING."""
        import grpc
        from grpc_health.v1 import health_pb2

        assert self.server is not None
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        # Short reconnect backoff: the default (1 s, growing) would add
        # seconds to start-up after the first refused connection.
        options = [
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 250),
        ]
        credentials = self._channel_credentials()
        with (
            grpc.insecure_channel(self.grpc_target, options=options)
            if credentials is None
            else grpc.secure_channel(self.grpc_target, credentials, options=options)
        ) as channel:
            # The method itself rather than HealthStub, whose typeshed stub
            # declares no methods.
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            while True:
                code = self.server.poll()
                if code is not None:
                    raise StartupError(
                        f"the gRPC server exited with status {code} before serving (see its log above)"
                    )
                try:
                    reply = check(health_pb2.HealthCheckRequest(service=""), timeout=0.5, wait_for_ready=True)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    # A certificate up's own clients cannot verify would
                    # only show as a time-out: say why at once.
                    self._check_tls_handshake()
                if time.monotonic() >= deadline:
                    raise StartupError(f"the gRPC server was not serving after {SERVER_READY_TIMEOUT_S:.0f}s")
                if self.signals.wait(0.1):
                    raise _Interrupted

    def _channel_credentials(self) -> grpc.ChannelCredentials | None:
        """grpc.ChannelCredentials for up's own clients under TLS, else None."""
        if self.trusted_ca is None:
            return None
        import grpc

        identity = self.client_identity
        return grpc.ssl_channel_credentials(
            root_certificates=self.trusted_ca.read_bytes(),
            private_key=identity[1].read_bytes() if identity else None,
            certificate_chain=identity[0].read_bytes() if identity else None,
        )

    def _check_tls_handshake(self) -> None:
        """Under TLS, raise StartupError if the server's port answers with
        a certificate (or a demand for one) that up's own clients cannot
        satisfy; nothing listening yet is not an error."""
        import ssl

        if self.trusted_ca is None:
            return
        context = ssl.create_default_context(cafile=str(self.trusted_ca))
        context.set_alpn_protocols(["h2"])
        if self.client_identity is not None:
            context.load_cert_chain(*self.client_identity)
        try:
            with (
                socket.create_connection((self.local_host, self.grpc_port), timeout=2.0) as raw,
                context.wrap_socket(raw, server_hostname=self.local_host) as tls,
            ):
                # TLS 1.3 reports a refused client certificate only on the
                # first read after the handshake.
                tls.settimeout(0.2)
                with contextlib.suppress(TimeoutError, ssl.SSLWantReadError):
                    tls.recv(1)
        except ssl.SSLError as exc:
            # A failed verification says what did not match (the name, the
            # issuer); other failures only have their reason.
            why = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise StartupError(
                f"up's own clients cannot talk TLS to the gRPC server at {self.grpc_target} "
                f"(trusting {self.trusted_ca}"
                + (f", presenting {self.client_identity[0]}" if self.client_identity else "")
                + f"): {why}. The certificate must be issued by --tls-ca and name "
                f"{self.local_host}"
                + (
                    "; with --tls-client-ca it must also be a client certificate that CA issued"
                    if self.client_identity
                    else ""
                )
            ) from exc
        except OSError:
            return

    def _start_envoy(self) -> None:
        identity = self.client_identity
        settings = EnvoySettings(
            http_port=self.http_port,
            admin_port=self.admin_port,
            upstream_host=self.local_host,
            upstream_port=self.grpc_port,
            listen_address=self.listen,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
            tls_client_ca=self.tls_client_ca,
            upstream_tls_ca=self.trusted_ca,
            upstream_tls_cert=identity[0] if identity else None,
            upstream_tls_key=identity[1] if identity else None,
            log_format=self.log_format,
        )
        try:
            self.envoy = start_envoy(settings, self.run_dir / "envoy", ready_timeout_s=ENVOY_READY_TIMEOUT_S)
        except EnvoyError as exc:
            raise StartupError(str(exc)) from exc
        self._save_state(envoy={"pid": self.envoy.pid, "args": self.envoy.proc.args})

    def _announce(self, elapsed_s: float) -> None:
        lines = self.banner(elapsed_s)
        if self.log_format == "json":
            # Every line of up's output is then JSON: the banner as one event.
            extra = {
                "event": "up_ready",
                "rest_url": f"{self.rest_url}/api/v1",
                "grpc_target": self.grpc_target,
                "data_dir": str(self.data_dir),
                "banner": lines[1:],
            }
            log.info("%s", lines[0], extra=extra)
            return
        print("\n".join(lines), flush=True)

    def _error(self, message: str, **fields: str) -> None:
        """`chronosched up: error: ...` on stderr, or in JSON an `up_error` line."""
        if self.log_format == "json":
            log.error("%s", message, extra={"event": "up_error", **fields})
            return
        print(f"chronosched up: error: {message}", file=sys.stderr)
        for text in fields.values():
            print(text, file=sys.stderr)

    def banner(self, elapsed_s: float) -> list[str]:
        """What `up` prints once ready: where to go, then everything that
        listens (address:port and what it serves), TLS and auth."""
        http = host_port(self.listen, self.http_port)
        grpc = host_port(self.listen, self.grpc_port)
        admin = host_port(ADMIN_HOST, self.admin_port)
        width = max(len(http), len(grpc), len(admin), len("PostgreSQL")) + 2
        scope = _scope(self.listen)
        lines = [
            f"chronosched is up (started in {elapsed_s:.1f}s)",
            f"  REST    {self.rest_url}/api/v1   (health: /healthz)",
            f"  gRPC    {self.grpc_target}   (also through Envoy on :{self.http_port})",
            f"  data    {self.data_dir}",
            f"Listening {scope}:",
            f"  {http:<{width}}Envoy: REST under /api/v1 and /healthz, gRPC passed through to the server",
            f"  {grpc:<{width}}gRPC server: the API and the workers' job streams",
            f"  {admin:<{width}}Envoy's admin API (always 127.0.0.1: it can stop Envoy)",
            *(
                [f"  {host_port(self.listen, self.metrics_port):<{width}}Prometheus metrics at /metrics"]
                if self.metrics_port is not None
                else []
            ),
            f"  {'PostgreSQL':<{width}}{self._database_line()}",
            f"TLS:  {self._tls_line()}",
            f"auth: {self._auth_line()}",
            f"workers: {self._workers_line()}",
        ]
        if not _is_loopback(self.listen) and self.tls_client_ca is None and not self._auth_on():
            lines.append(
                f"WARNING: anyone who can reach {self.listen} can use the whole API: "
                "nothing authenticates callers"
            )
        lines.append("Press Ctrl-C to stop.")
        return lines

    def _workers_line(self) -> str:
        if not self.workers:
            return "none here (--workers 0); connect your own"
        if self.workers_connected == self.workers:
            return f"{self.workers} local, connected (every namespace, the built-in kinds)"
        return f"{self.workers_connected} of {self.workers} local connected so far; the others keep trying"

    def _database_line(self) -> str:
        if self.pg is None:
            return "yours (--database-url); up starts none"
        url = urlsplit(str(self.state.get("database_url", "")))
        socket_dir = parse_qs(url.query).get("host", ["?"])[0]
        # pgserver starts it with `-h ""`: no TCP listener at all.
        return f"unix socket in {socket_dir} only, no TCP port"

    def _tls_line(self) -> str:
        if self.tls_cert is None:
            return "off (plaintext gRPC and HTTP)"
        line = f"on for gRPC and REST, certificate {self.tls_cert}"
        if self.tls_client_ca is not None:
            line += f"; client certificates required (issued by {self.tls_client_ca})"
        return line

    def _auth_on(self) -> bool:
        return self.auth

    def _auth_line(self) -> str:
        if self._auth_on():
            if self.admin_token_made and self.admin_token:
                # Made for this run: shown once, here (CHRONOSCHED_ADMIN_TOKEN keeps one).
                return f"on (bearer tokens); admin token for this run: {self.admin_token}"
            return "on (bearer tokens); admin token: CHRONOSCHED_ADMIN_TOKEN"
        if self.tls_client_ca is not None:
            return "client certificates only (mutual TLS); no tokens"
        if _is_loopback(self.listen):
            return "off (loopback only)"
        return "off"

    # -- running --

    def _watched(self) -> list[tuple[str, int, Callable[[], str | None]]]:
        """(name, pid, probe) of everything that must stay up; a probe
        returns how the process ended, or None while it runs."""
        watched: list[tuple[str, int, Callable[[], str | None]]] = []
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        if self.server is not None:
            children.append(("gRPC server", self.server))
        if self.envoy is not None:
            children.append(("Envoy", self.envoy.proc))
        children += [(f"worker {p.pid}", p) for p in self.worker_procs]
        for name, proc in children:
            watched.append((name, proc.pid, functools.partial(_child_ended, proc)))
        pg_pid = self.pg.pid if self.pg is not None else None
        if pg_pid is not None:
            # Not our child (pg_ctl daemonized it): no exit status to read.
            watched.append(("PostgreSQL", pg_pid, lambda: None if pid_alive(pg_pid) else "exited"))
        return watched

    def _supervise(self) -> int:
        """Block until a signal (exit 0) or until a piece dies (exit 1); a
        local worker that dies is restarted instead."""
        while True:
            outcome = self._watch_once()
            if outcome is not None:
                return outcome

    def _watch_once(self) -> int | None:
        """Wait for the next event; None means a worker was restarted."""
        watched = self._watched()
        pidfds = [fd for fd in (_pidfd(pid) for _, pid, _ in watched) if fd is not None]
        # Without pidfds (not Linux) fall back to checking once a second.
        timeout = None if len(pidfds) == len(watched) else 1.0
        with selectors.DefaultSelector() as sel:
            sel.register(self.signals.read_fd, selectors.EVENT_READ)
            for fd in pidfds:
                sel.register(fd, selectors.EVENT_READ)
            try:
                while True:
                    sel.select(timeout)
                    self.signals.drain()
                    if self.signals.received is not None:
                        received = signal.Signals(self.signals.received).name
                        log.info("received %s; stopping", received, extra={"event": "up_stopping"})
                        return 0
                    for name, pid, probe in watched:
                        ended = probe()
                        if ended is None:
                            continue
                        if self._restart_worker(pid, ended):
                            return None
                        tail = {"envoy_log": self.envoy.log_tail()} if name == "Envoy" and self.envoy else {}
                        self._error(f"{name} (pid {pid}) {ended} unexpectedly; stopping everything", **tail)
                        return 1
            finally:
                for fd in pidfds:
                    os.close(fd)

    def _restart_worker(self, pid: int, ended: str) -> bool:
        for index, proc in enumerate(self.worker_procs):
            if proc.pid == pid:
                log.warning(
                    "local worker (pid %d) %s; restarting it",
                    pid,
                    ended,
                    extra={"event": "local_worker_restarted", "pid": pid},
                )
                # At once, not after the delay: its jobs' processes must not
                # run beside the copies the server hands out again once the
                # new worker connects under the same id, and the sooner it
                # runs the less chance the pid is free for reuse.
                _reap_worker_leftovers(pid)
                if self.signals.wait(WORKER_RESTART_DELAY_S):
                    return True  # the supervisor loop sees the signal next
                self.worker_procs[index] = self._spawn_worker(index)
                self._save_state(worker_pids=[p.pid for p in self.worker_procs])
                return True
        return False

    # -- shutdown --

    def _shutdown(self) -> None:
        # Reverse start order: workers and Envoy first so nothing new reaches
        # the server, then the server (it drains in-flight calls), then the
        # database it was using.
        for proc in self.worker_procs:
            # A worker whose death was already seen had its session reaped
            # then (and its pid may be anyone's by now). Any other, stopped
            # here or dead unseen, may have left its jobs' processes running,
            # above all one killed after its grace.
            seen_dead = proc.returncode is not None
            _stop_child(proc, SERVER_STOP_GRACE_S)
            if not seen_dead:
                _reap_worker_leftovers(proc.pid)
        self._revoke_worker_token()
        if self.envoy is not None:
            self.envoy.stop(ENVOY_STOP_GRACE_S)
        if self.server is not None:
            code = _stop_child(self.server, SERVER_STOP_GRACE_S)
            if code not in (0, -signal.SIGTERM):
                log.warning("gRPC server exited with status %s", code)
        if self.pg is not None:
            self.pg.stop()

    # -- run files --

    def _save_state(self, **values: Any) -> None:
        # <data-dir>/run/up.json: what is running, for the operator, for
        # tests, and for cleaning up after an `up` that was SIGKILLed.
        self.state.update(values, supervisor_pid=os.getpid(), data_dir=str(self.data_dir))
        path = self.run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2), encoding="utf-8")
        tmp.replace(path)

    def _reap_leftovers(self) -> None:
        # We hold the lock, so an existing state file belongs to an `up`
        # that died without its shutdown (SIGKILL, power loss). Its Envoy and
        # server may still hold our ports: stop them, but only after checking
        # the pid still runs the very command we started (pids get reused).
        # A leftover postmaster needs nothing: pgserver attaches to it.
        path = self.run_dir / STATE_FILE
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        path.unlink(missing_ok=True)
        for name in ("envoy", "server"):
            entry = old.get(name)
            if not isinstance(entry, dict):
                continue
            pid, args = entry.get("pid"), entry.get("args")
            if not isinstance(pid, int) or not isinstance(args, list) or len(args) < 2:
                continue
            cmdline = _cmdline(pid)
            # Compare without argv[0]: a launcher script may exec the real
            # binary under another name.
            if cmdline is None or cmdline[-(len(args) - 1) :] != [str(a) for a in args[1:]]:
                continue
            log.warning(
                "stopping leftover %s (pid %d) from an earlier `up` that did not shut down", name, pid
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + SERVER_STOP_GRACE_S
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def run(options: UpOptions) -> int:
    """Run `chronosched up` until SIGINT/SIGTERM; returns the exit status."""
    up = _Up(**{**dataclasses.asdict(options), "data_dir": options.data_dir.expanduser().resolve()})
    return up.run()
