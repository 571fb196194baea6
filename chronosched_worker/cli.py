"""`chronosched worker` (also `python -m chronosched_worker`): a worker
process serving the built-in kinds.

    chronosched worker --server HOST:PORT (--namespace NS ... | --all-namespaces)
                       [--kinds a,b] [--concurrency N] [--prefetch auto|N] [--grace SECONDS] [--worker-id ID]
                       [--tls-ca FILE [--tls-cert FILE --tls-key FILE]] [--token TOKEN]
                       [--metrics-port PORT [--metrics-host HOST]]

Flags default from CHRONOSCHED_* variables (named in each flag's help); this
module is the only one in the package that reads the environment.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import grpc

from chronosched_worker import logs
from chronosched_worker.kinds import BUILTIN_KINDS, register_builtin_kinds
from chronosched_worker.sdk import Worker

DEFAULT_SERVER = "127.0.0.1:50051"
_TRUE = {"1", "true", "yes", "on"}


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {value}")
        return value

    return parse


_positive_int = _int_at_least(1)


def prefetch_arg(text: str) -> int | Literal["auto"]:
    """`--prefetch`: 'auto' or a number of at least 0 (the benches parse it too)."""
    if text == "auto":
        return "auto"
    try:
        return _int_at_least(0)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"not 'auto' or an integer of at least 0: {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0: {text}")
    return value


def port_arg(text: str) -> int:
    """A TCP port, 1-65535 (the server's CLI parses its ports with it too)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chronosched worker",
        description="Run a chronosched worker: stream jobs from the server and run them "
        f"with the built-in kinds ({', '.join(BUILTIN_KINDS)}). SIGTERM or Ctrl-C drains "
        "(finishes running jobs within the grace period); a second one stops at once.",
    )
    parser.add_argument(
        "--server",
        default=env.get("CHRONOSCHED_SERVER", DEFAULT_SERVER),
        help=f"the server's gRPC address HOST:PORT (env CHRONOSCHED_SERVER; default {DEFAULT_SERVER})",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        action="append",
        default=None,
        metavar="NS",
        help="take jobs from this namespace; repeat or separate with commas for several "
        "(env CHRONOSCHED_WORKER_NAMESPACES, comma-separated)",
    )
    scope.add_argument(
        "--all-namespaces",
        action="store_true",
        default=None,
        help="take jobs from every namespace (env CHRONOSCHED_WORKER_ALL_NAMESPACES=1)",
    )
    parser.add_argument(
        "--kinds",
        type=_csv,
        default=_csv(env.get("CHRONOSCHED_WORKER_KINDS", "")),
        metavar="A,B",
        help="serve only these built-in kinds (env CHRONOSCHED_WORKER_KINDS; default all)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=env.get("CHRONOSCHED_WORKER_CONCURRENCY", "16"),
        help="jobs run at once (env CHRONOSCHED_WORKER_CONCURRENCY; default 16)",
    )
    parser.add_argument(
        "--prefetch",
        type=prefetch_arg,
        default=env.get("CHRONOSCHED_WORKER_PREFETCH", "auto"),
        metavar="auto|N",
        help="jobs leased beyond --concurrency that wait here for a slot, so a freed slot starts "
        "the next at once; auto: as many as --concurrency while handler runs are short (median "
        "10 ms or less), up to 64 held in all while they are tiny (1 ms or less), else none "
        "(env CHRONOSCHED_WORKER_PREFETCH; default auto)",
    )
    parser.add_argument(
        "--grace",
        type=_seconds,
        default=env.get("CHRONOSCHED_WORKER_GRACE", "30"),
        metavar="SECONDS",
        help="on shutdown, how long running jobs get to finish (env CHRONOSCHED_WORKER_GRACE; default 30)",
    )
    parser.add_argument(
        "--worker-id",
        default=env.get("CHRONOSCHED_WORKER_ID"),
        help="id shown in the server's job records; never shared by two live workers, since "
        "a worker that (re)connects gives back every lease its id holds that it does not run; "
        "a restarted worker reusing its id thus frees its predecessor's jobs at once "
        "(env CHRONOSCHED_WORKER_ID; default hostname-pid-random)",
    )
    parser.add_argument(
        "--state-dir",
        default=env.get("CHRONOSCHED_WORKER_STATE_DIR"),
        metavar="DIR",
        help="keep results the server has not acknowledged yet in DIR/WORKER_ID, so a worker "
        "restarted under the same --worker-id reports them instead of losing the runs "
        "(env CHRONOSCHED_WORKER_STATE_DIR; default: kept in memory only)",
    )
    parser.add_argument(
        "--token",
        default=env.get("CHRONOSCHED_TOKEN"),
        help="bearer token for a server that requires one: a worker token of the namespaces "
        "served (docs/security.md). Prefer the environment: command lines are public "
        "(env CHRONOSCHED_TOKEN)",
    )
    tls = parser.add_argument_group("TLS", "talk TLS to the server (PEM files; docs/security.md)")
    tls.add_argument(
        "--tls-ca",
        default=env.get("CHRONOSCHED_TLS_CA"),
        metavar="FILE",
        help="trust the server's certificate if this CA issued it; switches to TLS (env CHRONOSCHED_TLS_CA)",
    )
    tls.add_argument(
        "--tls-cert",
        default=env.get("CHRONOSCHED_TLS_CLIENT_CERT"),
        metavar="FILE",
        help="present this client certificate, for a server with mutual TLS; needs --tls-key "
        "(env CHRONOSCHED_TLS_CLIENT_CERT)",
    )
    tls.add_argument(
        "--tls-key",
        default=env.get("CHRONOSCHED_TLS_CLIENT_KEY"),
        metavar="FILE",
        help="the private key of --tls-cert (env CHRONOSCHED_TLS_CLIENT_KEY)",
    )
    parser.add_argument(
        "--metrics-port",
        type=port_arg,
        default=env.get("CHRONOSCHED_WORKER_METRICS_PORT"),
        metavar="PORT",
        help="serve this worker's Prometheus metrics at http://HOST:PORT/metrics "
        "(env CHRONOSCHED_WORKER_METRICS_PORT; default: not served)",
    )
    parser.add_argument(
        "--metrics-host",
        default=env.get("CHRONOSCHED_WORKER_METRICS_HOST", "127.0.0.1"),
        metavar="HOST",
        help="address the metrics port listens on; 0.0.0.0 for a Prometheus on another host "
        "(env CHRONOSCHED_WORKER_METRICS_HOST; default 127.0.0.1)",
    )
    parser.add_argument(
        "--log-level",
        default=env.get("CHRONOSCHED_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (env CHRONOSCHED_LOG_LEVEL; default INFO)",
    )
    parser.add_argument(
        "--log-format",
        default=env.get("CHRONOSCHED_LOG_FORMAT", logs.DEFAULT_FORMAT),
        choices=logs.FORMATS,
        type=str.lower,
        help="text lines for people, or one JSON object per line for log collectors "
        f"(env CHRONOSCHED_LOG_FORMAT; default {logs.DEFAULT_FORMAT})",
    )
    return parser


def build_worker(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Worker:
    """Parse the command line into a ready Worker (exits with status 2 on bad usage)."""
    env = os.environ if env is None else env
    parser = build_parser(env)
    args = parser.parse_args(argv)

    # Flags win over the environment; only without either flag does it count.
    namespaces = [ns for value in args.namespace or () for ns in _csv(value)]
    all_namespaces = bool(args.all_namespaces)
    if not namespaces and not all_namespaces:
        namespaces = _csv(env.get("CHRONOSCHED_WORKER_NAMESPACES", ""))
        all_namespaces = env.get("CHRONOSCHED_WORKER_ALL_NAMESPACES", "").strip().lower() in _TRUE
        if namespaces and all_namespaces:
            parser.error("CHRONOSCHED_WORKER_NAMESPACES and CHRONOSCHED_WORKER_ALL_NAMESPACES are both set")
    if not namespaces and not all_namespaces:
        parser.error("one of --namespace NS or --all-namespaces is required")

    unknown = [kind for kind in args.kinds if kind not in BUILTIN_KINDS]
    if unknown:
        parser.error(
            f"unknown kind(s) in --kinds: {', '.join(unknown)} (built-in: {', '.join(BUILTIN_KINDS)})"
        )

    try:
        worker = Worker(
            args.server,
            worker_id=args.worker_id,
            namespaces=namespaces,
            all_namespaces=all_namespaces,
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            grace_s=args.grace,
            state_dir=args.state_dir,
            credentials=_credentials(parser, args),
            token=args.token or None,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )
    except ValueError as exc:
        parser.error(str(exc))
    register_builtin_kinds(worker, args.kinds or None)
    # Before the worker runs, so its own default output (for an SDK user
    # who set up no logging) stays out of the way.
    logs.configure(args.log_level, args.log_format)
    return worker


def _credentials(parser: argparse.ArgumentParser, args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials from --tls-ca/--tls-cert/--tls-key, or None for
    plaintext. Without --tls-ca, a client certificate alone uses gRPC's
    default roots to check the server."""
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_ca is None and args.tls_cert is None:
        return None

    def read(flag: str, path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            parser.error(f"{flag}: cannot read {path}: {exc.strerror or exc}")

    return grpc.ssl_channel_credentials(
        root_certificates=read("--tls-ca", args.tls_ca),
        private_key=read("--tls-key", args.tls_key),
        certificate_chain=read("--tls-cert", args.tls_cert),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the exit status (0 after a clean drain)."""
    build_worker(argv).run_forever()
    return 0
