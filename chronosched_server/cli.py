"""The `chronosched` command.

    chronosched up        everything on one machine: embedded PostgreSQL,
                          migrations, the gRPC server and Envoy (REST on :8080)
    chronosched server    the gRPC server alone (production; no migrations)
    chronosched migrate   apply pending database migrations
    chronosched worker    a worker process (chronosched_worker.cli)
    chronosched ns|def|dag|jobs|tick|schedules|prune|token|workers
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
import ipaddress
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from chronosched import cli as operator_cli
from chronosched import logs
from chronosched_server import eventloop
from chronosched_server.config import Config, env_default, format_duration, parse_duration
from chronosched_server.local import up as local_up
from chronosched_server.local.up import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_DATA_DIR,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_LISTEN,
    DEFAULT_WORKERS,
)
from chronosched_server.tokens import MIN_BOOTSTRAP_CHARS as MIN_ADMIN_TOKEN_CHARS
from chronosched_worker.cli import port_arg

# --- argument parsing --------------------------------------------------------


def _ip_address(text: str) -> str:
    # Envoy's listener takes an IP address, not a host name.
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an IP address: {text!r} (e.g. 127.0.0.1, 0.0.0.0, ::)"
        ) from None


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


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of at least 0: {text}")
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


def _add_log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        default=env_default("LOG_FORMAT", logs.DEFAULT_FORMAT),
        choices=logs.FORMATS,
        type=str.lower,
        help="text lines for people, or one JSON object per line for log collectors "
        f"(docs/operations.md; env CHRONOSCHED_LOG_FORMAT; default {logs.DEFAULT_FORMAT})",
    )


def _add_tls_server(parser: argparse.ArgumentParser, what: str) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("TLS", f"TLS on {what}; all PEM files (docs/security.md)")
    group.add_argument(
        "--tls-cert",
        type=Path,
        default=env_default("TLS_CERT"),
        metavar="FILE",
        help="serve TLS with this certificate (chain); needs --tls-key (env CHRONOSCHED_TLS_CERT)",
    )
    group.add_argument(
        "--tls-key",
        type=Path,
        default=env_default("TLS_KEY"),
        metavar="FILE",
        help="the private key of --tls-cert (env CHRONOSCHED_TLS_KEY)",
    )
    group.add_argument(
        "--tls-client-ca",
        type=Path,
        default=env_default("TLS_CLIENT_CA"),
        metavar="FILE",
        help="mutual TLS: refuse clients without a certificate this CA issued "
        "(env CHRONOSCHED_TLS_CLIENT_CA)",
    )
    return group


def _tls_usage(args: argparse.Namespace) -> str | None:
    """What is wrong with the TLS flags given together, or None."""
    if (args.tls_cert is None) != (args.tls_key is None):
        return "--tls-cert and --tls-key go together"
    if args.tls_client_ca is not None and args.tls_cert is None:
        return "--tls-client-ca needs --tls-cert and --tls-key (the server's own certificate)"
    if getattr(args, "tls_ca", None) is not None and args.tls_cert is None:
        return "--tls-ca is what up's own clients trust for --tls-cert: give --tls-cert and --tls-key too"
    return None


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
        type=port_arg,
        default=env_default("GRPC_PORT", str(DEFAULT_GRPC_PORT)),
        help=f"the gRPC server's port on --listen (env CHRONOSCHED_GRPC_PORT; default {DEFAULT_GRPC_PORT})",
    )
    up.add_argument(
        "--metrics-port",
        type=port_arg,
        default=env_default("METRICS_PORT"),
        help="the server's Prometheus /metrics port on --listen (env CHRONOSCHED_METRICS_PORT; "
        "default: not served)",
    )
    up.add_argument(
        "--http-port",
        type=port_arg,
        default=env_default("HTTP_PORT", str(DEFAULT_HTTP_PORT)),
        help=f"Envoy's REST/gRPC port on --listen (env CHRONOSCHED_HTTP_PORT; default {DEFAULT_HTTP_PORT})",
    )
    up.add_argument(
        "--admin-port",
        type=port_arg,
        default=env_default("ADMIN_PORT", str(DEFAULT_ADMIN_PORT)),
        help=f"Envoy's admin port on 127.0.0.1 (env CHRONOSCHED_ADMIN_PORT; default {DEFAULT_ADMIN_PORT})",
    )
    up.add_argument(
        "--listen",
        type=_ip_address,
        default=env_default("LISTEN", DEFAULT_LISTEN),
        metavar="ADDRESS",
        help="address the gRPC server and Envoy's REST listener bind, e.g. 0.0.0.0 for every "
        "interface; Envoy's admin API stays on 127.0.0.1 "
        f"(env CHRONOSCHED_LISTEN; default {DEFAULT_LISTEN}: this machine only)",
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
    _add_log_format(up)
    tls = _add_tls_server(up, "the gRPC server and on Envoy's REST listener")
    tls.add_argument(
        "--tls-ca",
        type=Path,
        default=env_default("TLS_CA"),
        metavar="FILE",
        help="the CA that issued --tls-cert, trusted by up's own clients (its readiness check, "
        "local workers, Envoy's upstream); with --tls-client-ca they present --tls-cert as their "
        "client certificate (env CHRONOSCHED_TLS_CA; default --tls-cert itself, for a "
        "self-signed certificate)",
    )
    up.add_argument(
        "--auth",
        action="store_true",
        default=_env_flag("AUTH"),
        help="require bearer tokens (docs/security.md): the admin token is CHRONOSCHED_ADMIN_TOKEN, "
        "or one up makes and prints; the local workers get a worker token of their own "
        "(env CHRONOSCHED_AUTH=1; default off: every caller may do everything)",
    )
    up.set_defaults(handler=_cmd_up, admin_token=env_default("ADMIN_TOKEN") or None)

    server = sub.add_parser(
        "server",
        help="run the gRPC server (does not migrate)",
        description="Run the gRPC server until SIGINT/SIGTERM. Run `chronosched migrate` first.",
        epilog=f"It runs on uvloop where that is installed; {eventloop.ENV}=asyncio picks asyncio's loop.",
    )
    _add_database_url(server, "PostgreSQL URL (required)")
    server.add_argument(
        "--listen",
        "--grpc-host",
        dest="grpc_host",
        metavar="ADDRESS",
        default=env_default("GRPC_HOST", Config.grpc_host),
        help="address to listen on; 0.0.0.0 (or ::) for every interface, as a server that other "
        "machines reach needs (env CHRONOSCHED_GRPC_HOST; default "
        f"{Config.grpc_host}: this machine only)",
    )
    server.add_argument(
        "--grpc-port",
        type=port_arg,
        default=env_default("GRPC_PORT", str(Config.grpc_port)),
        help=f"port to listen on (env CHRONOSCHED_GRPC_PORT; default {Config.grpc_port})",
    )
    server.add_argument(
        "--metrics-port",
        type=port_arg,
        default=env_default("METRICS_PORT"),
        help="serve Prometheus metrics at http://HOST:PORT/metrics on the --grpc-host address "
        "(env CHRONOSCHED_METRICS_PORT; default: not served)",
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
    _add_log_format(server)
    _add_tls_server(server, "the gRPC listener")
    auth = server.add_argument_group(
        "auth",
        "Every call needs a bearer token (docs/security.md). CHRONOSCHED_ADMIN_TOKEN (an environment "
        f"variable only, never a flag: command lines are public), at least {MIN_ADMIN_TOKEN_CHARS} "
        "characters, is accepted as an admin token without a database row; create the others with "
        "`chronosched token create`.",
    )
    auth.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=_env_flag("INSECURE_NO_AUTH"),
        help="accept every call without a token, from anyone who reaches the port: only for a "
        "server that nothing untrusted can reach (env CHRONOSCHED_INSECURE_NO_AUTH=1)",
    )
    quota = server.add_argument_group("per-caller quotas (a token, or a peer address without auth)")
    quota.add_argument(
        "--rate-limit",
        type=_non_negative_float,
        default=env_default("RATE_LIMIT", "0"),
        help="requests a second per caller, on average; more is RESOURCE_EXHAUSTED (429 through "
        "Envoy); 0 = no limit (env CHRONOSCHED_RATE_LIMIT; default 0)",
    )
    quota.add_argument(
        "--rate-burst",
        type=_non_negative_int,
        default=env_default("RATE_BURST", "0"),
        help="requests a caller may make at once above the rate; 0 = one second's worth "
        "(env CHRONOSCHED_RATE_BURST)",
    )
    quota.add_argument(
        "--max-streams-per-caller",
        type=_non_negative_int,
        default=env_default("MAX_STREAMS_PER_CALLER", "0"),
        help="open Dequeue streams per caller; 0 = no limit (env CHRONOSCHED_MAX_STREAMS_PER_CALLER)",
    )
    server.set_defaults(handler=_cmd_server, admin_token=env_default("ADMIN_TOKEN") or None)

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

    # ns, def, dag, jobs, tick, schedules, prune, token, workers: parsed and run by the
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
    # `migrate` has no --log-format: its output is a listing for people.
    logs.configure(getattr(logging, args.log_level), getattr(args, "log_format", logs.DEFAULT_FORMAT))
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
    tls_problem = _tls_usage(args)
    if tls_problem is not None:
        return _usage_error(parser, "server", tls_problem)
    auth_problem = _auth_usage(args)
    if auth_problem is not None:
        return _usage_error(parser, "server", auth_problem)
    try:
        eventloop.chosen()
    except ValueError as exc:
        return _usage_error(parser, "server", str(exc))
    from chronosched_server import app

    # serve() installs its own SIGINT/SIGTERM handlers and returns after a
    # graceful stop.
    try:
        eventloop.run(app.serve(server_config(args)))
    except (app.TlsError, app.ListenError) as exc:
        print(f"chronosched server: error: {exc}", file=sys.stderr)
        return 1
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
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        require_tokens=not args.insecure_no_auth,
        admin_token=None if args.insecure_no_auth else args.admin_token,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        max_streams_per_caller=args.max_streams_per_caller,
        metrics_port=args.metrics_port,
    )


def _env_flag(name: str) -> bool:
    return (env_default(name) or "").strip().lower() in ("1", "true", "yes", "on")


def _auth_usage(args: argparse.Namespace) -> str | None:
    """What is wrong with the auth settings given together, or None."""
    if args.admin_token is None:
        return None
    if args.insecure_no_auth:
        return "CHRONOSCHED_ADMIN_TOKEN is set, but --insecure-no-auth turns tokens off: choose one"
    if len(args.admin_token) < MIN_ADMIN_TOKEN_CHARS:
        return f"CHRONOSCHED_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters"
    return None


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
    if args.metrics_port is not None:
        ports["--metrics-port"] = args.metrics_port
    if len(set(ports.values())) != len(ports):
        return _usage_error(parser, "up", f"ports must differ: {ports}")
    tls_problem = _tls_usage(args)
    if tls_problem is not None:
        return _usage_error(parser, "up", tls_problem)
    if args.auth and args.admin_token is not None and len(args.admin_token) < MIN_ADMIN_TOKEN_CHARS:
        return _usage_error(
            parser, "up", f"CHRONOSCHED_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters"
        )
    options = local_up.UpOptions(
        data_dir=args.data_dir,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        admin_port=args.admin_port,
        database_url=args.database_url or None,
        workers=args.workers,
        log_level=args.log_level,
        log_format=args.log_format,
        retention=args.retention,
        listen=args.listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        tls_ca=args.tls_ca,
        auth=args.auth,
        admin_token=args.admin_token if args.auth else None,
        metrics_port=args.metrics_port,
    )
    return local_up.run(options)
