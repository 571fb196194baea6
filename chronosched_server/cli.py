"""The `chronosched` command.

    chronosched up        everything on one machine: embedded PostgreSQL,
                          migrations, the gRPC server and Envoy (REST on :8080)
    chronosched server    the gRPC server alone (production; no migrations)
    chronosched migrate   apply pending database migrations
    chronosched worker    a worker process (chronosched_worker.cli)
    chronosched ns|def|dag|jobs|tick|schedules|prune
                          operator commands over the Python client
                          (chronosched.cli; docs/cli.md)

`chronosched --version` prints the installed version; plain `chronosched`
prints the help. Flags default from CHRONOSCHED_* environment variables;
configuration is read here once and passed down, so no other module reads the
environment. This module only parses and dispatches: the server is
`app.serve`, migrations are `storage.migrate`, `up` is `local.up.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from chronosched import cli as operator_cli
from chronosched_server.config import Config, env_default, format_duration, parse_duration
from chronosched_server.local import up as local_up
from chronosched_server.local.up import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_DATA_DIR,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_WORKERS,
)

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


def _duration(text: str) -> timedelta:
    # argparse puts the flag's name in front: "argument --retention: ...".
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_duration(text: str) -> timedelta:
    value = _duration(text)
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"must be longer than 0: {text!r}")
    return value


def _add_retention(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retention",
        type=_duration,
        default=env_default("RETENTION", format_duration(Config.retention)),
        help="move finished DAGs and standalone jobs that ended longer ago than this to the "
        "history tables, in the background on one replica; e.g. 7d, 12h, 30m, 3600s; 0 = never "
        f"(env CHRONOSCHED_RETENTION; default {format_duration(Config.retention)})",
    )


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


def version() -> str:
    """The installed distribution's version (pyproject.toml's [project] version)."""
    try:
        return importlib.metadata.version("chronosched")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (the chronosched package is not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chronosched",
        description="chronosched: a namespaced, DAG-driven job scheduler on PostgreSQL.",
        formatter_class=operator_cli.HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"chronosched {version()}")
    # Not required: plain `chronosched` prints the help (see main()).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
    _add_retention(up)
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
    _add_retention(server)
    server.add_argument(
        "--retention-interval",
        type=_positive_duration,
        default=env_default(
            "RETENTION_INTERVAL", format_duration(timedelta(seconds=Config.retention_interval_s))
        ),
        help="how long the retention loop rests once it has caught up "
        "(env CHRONOSCHED_RETENTION_INTERVAL; default "
        f"{format_duration(timedelta(seconds=Config.retention_interval_s))})",
    )
    _add_log_level(server)
    server.set_defaults(handler=_cmd_server)

    # Parsed by chronosched_worker.cli (main() hands the arguments over, so
    # `chronosched worker --help` shows that parser's description); listed
    # here so `chronosched --help` shows it.
    sub.add_parser(
        "worker",
        help="run a worker process (see `chronosched worker --help`)",
        description="Run a worker process that takes jobs from the server and runs them "
        "with the built-in kinds.",
        add_help=False,
    )

    migrate = sub.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply the database migrations not applied yet, in order, and list them; "
        "an up-to-date database is left as it is. Run it before `chronosched server`, "
        "which does not migrate (`chronosched up` migrates by itself).",
    )
    _add_database_url(migrate, "PostgreSQL URL (required)")
    _add_log_level(migrate)
    migrate.set_defaults(handler=_cmd_migrate)

    # ns, def, dag, jobs, tick, schedules, prune: parsed and run by the
    # client package's CLI (it never imports this package).
    operator_cli.add_commands(sub)
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
    if args.command is None:
        # Plain `chronosched`: asking what there is, not a usage error.
        parser.print_help()
        return 0
    if operator_cli.handles(args):
        return operator_cli.run(args)
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
        retention=args.retention,
        retention_interval_s=args.retention_interval.total_seconds(),
    )


def _cmd_migrate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.database_url:
        return _usage_error(parser, "migrate", "--database-url is required (or set CHRONOSCHED_DATABASE_URL)")
    from chronosched_server.errors import Unavailable
    from chronosched_server.storage.migrate import migrate

    try:
        applied = asyncio.run(migrate(args.database_url))
    except Unavailable as exc:
        print(
            f"chronosched migrate: error: cannot reach the database: {exc.__cause__ or exc}", file=sys.stderr
        )
        return 1
    if applied:
        print(f"applied {len(applied)} migration(s):")
        for name in applied:
            print(f"  {name}")
    else:
        print("nothing to apply: the database is up to date")
    return 0


# --- up ----------------------------------------------------------------------


def _cmd_up(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    ports = {"--grpc-port": args.grpc_port, "--http-port": args.http_port, "--admin-port": args.admin_port}
    if len(set(ports.values())) != len(ports):
        return _usage_error(parser, "up", f"ports must differ: {ports}")
    options = local_up.UpOptions(
        data_dir=args.data_dir,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        admin_port=args.admin_port,
        database_url=args.database_url or None,
        workers=args.workers,
        log_level=args.log_level,
        retention=args.retention,
    )
    return local_up.run(options)
