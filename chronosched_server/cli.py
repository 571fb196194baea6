"""The `chronosched` command.

    chronosched up        everything on one machine: embedded PostgreSQL,
                          migrations, the gRPC server and Envoy (REST on :8080)
    chronosched server    the gRPC server alone (production; no migrations)
    chronosched migrate   apply pending database migrations
    chronosched worker    a worker process (chronosched_worker.cli)

Flags default from CHRONOSCHED_* environment variables; configuration is read
here once and passed down, so no other module reads the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from chronosched_server.config import Config, env_default
from chronosched_server.embedded import EmbeddedPostgres, EmbeddedPostgresError, pid_alive
from chronosched_server.envoy import EnvoyError, EnvoyProcess, EnvoySettings, start_envoy

log = logging.getLogger("chronosched")

DEFAULT_DATA_DIR = "./.chronosched"
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
SERVER_STOP_GRACE_S = 15.0
ENVOY_STOP_GRACE_S = 10.0

# Files `up` keeps under <data-dir>/run/.
LOCK_FILE = "up.lock"
STATE_FILE = "up.json"


# --- argument parsing --------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def _add_database_url(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--database-url",
        default=env_default("DATABASE_URL"),
        help=f"{help_text} (env CHRONOSCHED_DATABASE_URL)",
    )


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default=env_default("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (env CHRONOSCHED_LOG_LEVEL; default INFO)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chronosched",
        description="chronosched: a namespaced, DAG-driven job scheduler on PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run everything on this machine (embedded PostgreSQL, server, Envoy)",
        description="Start an embedded PostgreSQL (unless --database-url), apply migrations, "
        "start the gRPC server and Envoy, and run until Ctrl-C. Data survives restarts.",
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        default=env_default("DATA_DIR", DEFAULT_DATA_DIR),
        help=f"PostgreSQL data and run files (env CHRONOSCHED_DATA_DIR; default {DEFAULT_DATA_DIR})",
    )
    up.add_argument(
        "--grpc-port",
        type=_port,
        default=env_default("GRPC_PORT", str(DEFAULT_GRPC_PORT)),
        help=f"gRPC port on 127.0.0.1 (env CHRONOSCHED_GRPC_PORT; default {DEFAULT_GRPC_PORT})",
    )
    up.add_argument(
        "--http-port",
        type=_port,
        default=env_default("HTTP_PORT", str(DEFAULT_HTTP_PORT)),
        help=f"Envoy's REST/gRPC port (env CHRONOSCHED_HTTP_PORT; default {DEFAULT_HTTP_PORT})",
    )
    up.add_argument(
        "--admin-port",
        type=_port,
        default=env_default("ADMIN_PORT", str(DEFAULT_ADMIN_PORT)),
        help=f"Envoy's admin port on 127.0.0.1 (env CHRONOSCHED_ADMIN_PORT; default {DEFAULT_ADMIN_PORT})",
    )
    _add_database_url(up, "use this PostgreSQL instead of the embedded one")
    up.add_argument(
        "--workers",
        type=_non_negative_int,
        default=env_default("WORKERS", str(DEFAULT_WORKERS)),
        help="local worker processes serving every namespace with the built-in kinds; "
        f"one that dies is restarted (env CHRONOSCHED_WORKERS; default {DEFAULT_WORKERS})",
    )
    _add_log_level(up)
    up.set_defaults(handler=_cmd_up)

    server = sub.add_parser(
        "server",
        help="run the gRPC server (does not migrate)",
        description="Run the gRPC server until SIGINT/SIGTERM. Run `chronosched migrate` first.",
    )
    _add_database_url(server, "PostgreSQL URL (required)")
    server.add_argument(
        "--grpc-host",
        default=env_default("GRPC_HOST", Config.grpc_host),
        help=f"address to listen on (env CHRONOSCHED_GRPC_HOST; default {Config.grpc_host})",
    )
    server.add_argument(
        "--grpc-port",
        type=_port,
        default=env_default("GRPC_PORT", str(Config.grpc_port)),
        help=f"port to listen on (env CHRONOSCHED_GRPC_PORT; default {Config.grpc_port})",
    )
    server.add_argument(
        "--pool-min-size",
        type=_positive_int,
        default=env_default("POOL_MIN_SIZE", str(Config.pool_min_size)),
        help=f"connections kept open (env CHRONOSCHED_POOL_MIN_SIZE; default {Config.pool_min_size})",
    )
    server.add_argument(
        "--pool-max-size",
        type=_positive_int,
        default=env_default("POOL_MAX_SIZE", str(Config.pool_max_size)),
        help=f"database connections at most (env CHRONOSCHED_POOL_MAX_SIZE; default {Config.pool_max_size})",
    )
    server.add_argument(
        "--lease-seconds",
        type=_positive_seconds,
        default=env_default("LEASE_SECONDS", str(Config.lease_s)),
        help="how long a pushed job's lease lasts; heartbeats renew it "
        f"(env CHRONOSCHED_LEASE_SECONDS; default {Config.lease_s:g})",
    )
    server.add_argument(
        "--reap-interval-seconds",
        type=_positive_seconds,
        default=env_default("REAP_INTERVAL_SECONDS", str(Config.reap_interval_s)),
        help="how often expired leases are looked for "
        f"(env CHRONOSCHED_REAP_INTERVAL_SECONDS; default {Config.reap_interval_s:g})",
    )
    server.add_argument(
        "--no-scheduler",
        action="store_true",
        default=(env_default("NO_SCHEDULER") or "").lower() in ("1", "true", "yes"),
        help="do not fire cron schedules in this process; replicas that run the "
        "scheduler fire every tick once between them (env CHRONOSCHED_NO_SCHEDULER=1)",
    )
    _add_log_level(server)
    server.set_defaults(handler=_cmd_server)

    # Parsed by chronosched_worker.cli (main() hands the arguments over);
    # listed here so `chronosched --help` shows it.
    sub.add_parser("worker", help="run a worker process (see `chronosched worker --help`)", add_help=False)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    _add_database_url(migrate, "PostgreSQL URL (required)")
    _add_log_level(migrate)
    migrate.set_defaults(handler=_cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `chronosched` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["worker"]:
        from chronosched_worker.cli import main as worker_main

        return worker_main(arguments[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        # argparse exits on --help (0) and on usage errors (2); as a function
        # we return the status instead of ending the caller's process.
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.handler
    return handler(args, parser)


def _usage_error(parser: argparse.ArgumentParser, command: str, message: str) -> int:
    # The same shape and status (2) as argparse's own usage errors.
    print(f"{parser.prog} {command}: error: {message}", file=sys.stderr)
    return 2


# --- server and migrate ------------------------------------------------------


def _cmd_server(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.database_url:
        return _usage_error(parser, "server", "--database-url is required (or set CHRONOSCHED_DATABASE_URL)")
    if args.pool_min_size > args.pool_max_size:
        return _usage_error(parser, "server", "--pool-min-size must not exceed --pool-max-size")
    from chronosched_server import app

    # serve() installs its own SIGINT/SIGTERM handlers and returns after a
    # graceful stop.
    asyncio.run(app.serve(server_config(args)))
    return 0


def server_config(args: argparse.Namespace) -> Config:
    return Config(
        database_url=args.database_url,
        grpc_host=args.grpc_host,
        grpc_port=args.grpc_port,
        pool_min_size=args.pool_min_size,
        pool_max_size=args.pool_max_size,
        lease_s=args.lease_seconds,
        reap_interval_s=args.reap_interval_seconds,
        scheduler_enabled=not args.no_scheduler,
    )


def _cmd_migrate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.database_url:
        return _usage_error(parser, "migrate", "--database-url is required (or set CHRONOSCHED_DATABASE_URL)")
    import psycopg

    from chronosched_server.storage.migrate import migrate

    try:
        applied = asyncio.run(migrate(args.database_url))
    except psycopg.OperationalError as exc:
        print(f"chronosched migrate: error: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    if applied:
        print(f"applied {len(applied)} migration(s):")
        for name in applied:
            print(f"  {name}")
    else:
        print("nothing to apply: the database is up to date")
    return 0


# --- up ----------------------------------------------------------------------


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


def _start_worker(index: int, grpc_target: str, log_level: str, state_dir: Path) -> subprocess.Popen[bytes]:
    """One local worker: every namespace, the built-in kinds; results not yet
    acknowledged survive its restart in `state_dir`."""
    args = [
        sys.executable,
        "-m",
        "chronosched_worker",
        "--server",
        grpc_target,
        "--all-namespaces",
        "--worker-id",
        f"local-{os.getpid()}-{index}",
        "--grace",
        str(WORKER_GRACE_S),
        "--log-level",
        log_level,
        "--state-dir",
        str(state_dir),
    ]
    # A session of its own (which also keeps a terminal's Ctrl-C away from
    # it, as for the other children): what its jobs leave behind when it dies
    # is then findable by session id, see _reap_worker_leftovers.
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)


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
class _Up:
    """`chronosched up`: start the pieces in order, supervise them, stop them
    in reverse order."""

    data_dir: Path
    grpc_port: int
    http_port: int
    admin_port: int
    database_url: str | None
    workers: int
    log_level: str
    signals: _SignalWaker = field(default_factory=_SignalWaker)
    run_dir: Path = field(init=False)
    pg: EmbeddedPostgres | None = None
    server: subprocess.Popen[bytes] | None = None
    envoy: EnvoyProcess | None = None
    worker_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = self.data_dir / "run"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def worker_state_dir(self) -> Path:
        return self.run_dir / "workers"

    def _spawn_worker(self, index: int) -> subprocess.Popen[bytes]:
        return _start_worker(index, self.grpc_target, self.log_level, self.worker_state_dir)

    # -- the whole life cycle --

    def run(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = self._lock()
        if lock is None:
            print(
                f"chronosched up: error: another `chronosched up` is already using {self.data_dir}",
                file=sys.stderr,
            )
            return 1
        self.signals.install()
        started = time.monotonic()
        try:
            try:
                self._reap_leftovers()
                self._start()
            except _Interrupted:
                log.info("interrupted during start-up; stopping")
                return 0
            except StartupError as exc:
                print(f"chronosched up: error: {exc}", file=sys.stderr)
                return 1
            self._announce(time.monotonic() - started)
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

    # -- start-up --

    def _start(self) -> None:
        if self.database_url is None:
            self.pg = EmbeddedPostgres(self.data_dir)
            try:
                url = self.pg.start()
            except EmbeddedPostgresError as exc:
                raise StartupError(str(exc)) from exc
            log.info("embedded PostgreSQL ready (pid %s, data in %s)", self.pg.pid, self.pg.pgdata)
        else:
            url = self.database_url
        self._save_state(database_url=url, postgres_pid=self.pg.pid if self.pg is not None else None)
        self.signals.check()

        self._migrate(url)
        self.signals.check()

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
            ready=True,
            rest_url=f"http://127.0.0.1:{self.http_port}/api/v1",
            health_url=f"http://127.0.0.1:{self.http_port}/healthz",
            grpc_target=self.grpc_target,
            worker_pids=[p.pid for p in self.worker_procs],
        )

    def _migrate(self, url: str) -> None:
        import psycopg

        from chronosched_server.storage.migrate import migrate

        try:
            applied = asyncio.run(migrate(url))
        except psycopg.Error as exc:
            raise StartupError(f"migrations failed: {exc}") from exc
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))

    def _start_server(self, url: str) -> None:
        args = [
            sys.executable,
            "-m",
            "chronosched_server",
            "server",
            "--database-url",
            url,
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(self.grpc_port),
            "--log-level",
            self.log_level,
        ]
        # Own process group: a terminal's Ctrl-C reaches only us, and we stop
        # the children in order (Envoy first, so no request hits a stopped
        # server). Its output goes to ours.
        self.server = subprocess.Popen(args, stdin=subprocess.DEVNULL, process_group=0)
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
        with grpc.insecure_channel(self.grpc_target, options=options) as channel:
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
                    pass
                if time.monotonic() >= deadline:
                    raise StartupError(f"the gRPC server was not serving after {SERVER_READY_TIMEOUT_S:.0f}s")
                if self.signals.wait(0.1):
                    raise _Interrupted

    def _start_envoy(self) -> None:
        settings = EnvoySettings(
            http_port=self.http_port,
            admin_port=self.admin_port,
            upstream_host="127.0.0.1",
            upstream_port=self.grpc_port,
        )
        try:
            self.envoy = start_envoy(settings, self.run_dir / "envoy", ready_timeout_s=ENVOY_READY_TIMEOUT_S)
        except EnvoyError as exc:
            raise StartupError(str(exc)) from exc
        self._save_state(envoy={"pid": self.envoy.pid, "args": self.envoy.proc.args})

    def _announce(self, elapsed_s: float) -> None:
        lines = [
            f"chronosched is up (started in {elapsed_s:.1f}s)",
            f"  REST    http://127.0.0.1:{self.http_port}/api/v1   (health: /healthz)",
            f"  gRPC    {self.grpc_target}   (also through Envoy on :{self.http_port})",
            f"  data    {self.data_dir}",
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)

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
                        log.info("received %s; stopping", signal.Signals(self.signals.received).name)
                        return 0
                    for name, pid, probe in watched:
                        ended = probe()
                        if ended is None:
                            continue
                        if self._restart_worker(pid, ended):
                            return None
                        print(
                            f"chronosched up: error: {name} (pid {pid}) {ended} unexpectedly;"
                            " stopping everything",
                            file=sys.stderr,
                        )
                        if name == "Envoy" and self.envoy is not None:
                            print(self.envoy.log_tail(), file=sys.stderr)
                        return 1
            finally:
                for fd in pidfds:
                    os.close(fd)

    def _restart_worker(self, pid: int, ended: str) -> bool:
        for index, proc in enumerate(self.worker_procs):
            if proc.pid == pid:
                log.warning("local worker (pid %d) %s; restarting it", pid, ended)
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


def _cmd_up(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    ports = {"--grpc-port": args.grpc_port, "--http-port": args.http_port, "--admin-port": args.admin_port}
    if len(set(ports.values())) != len(ports):
        return _usage_error(parser, "up", f"ports must differ: {ports}")
    data_dir: Path = args.data_dir.expanduser().resolve()
    up = _Up(
        data_dir=data_dir,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        admin_port=args.admin_port,
        database_url=args.database_url or None,
        workers=args.workers,
        log_level=args.log_level,
    )
    return up.run()
