"""The operator commands of `chronosched`: ns, def, dag, jobs, workers,
tick, schedules, prune and token, over the Python client (docs/cli.md).

`chronosched_server.cli` adds them to its parser (`add_commands`) and hands
what they parsed to `run`; `python -m chronosched.cli` runs them without the
server package. This module and `_parser` import only argparse and pure
code, so building the parser stays cheap; grpc, rich and PyYAML are loaded
by `run`. This is the only module of the package that reads the environment
(CHRONOSCHED_SERVER, CHRONOSCHED_TOKEN, CHRONOSCHED_TLS_CA,
CHRONOSCHED_TLS_CLIENT_CERT, CHRONOSCHED_TLS_CLIENT_KEY).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from chronosched.cli._parser import COMMANDS, DEFAULT_SERVER, HelpFormatter, add_commands

__all__ = ["COMMANDS", "DEFAULT_SERVER", "HelpFormatter", "add_commands", "handles", "main", "run"]


def handles(args: argparse.Namespace) -> bool:
    """True when `args` were parsed by one of the operator commands."""
    return isinstance(getattr(args, "operator", None), str)


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Run a parsed operator command; returns the exit status (0 done, 1 the
    server refused, 2 the server could not be reached or the input is bad)."""
    from chronosched.cli._commands import run as run_command

    environ = os.environ if env is None else env
    return run_command(
        args,
        server=args.server or environ.get("CHRONOSCHED_SERVER") or DEFAULT_SERVER,
        token=args.token or environ.get("CHRONOSCHED_TOKEN") or None,
        ca=args.tls_ca or environ.get("CHRONOSCHED_TLS_CA") or None,
        cert=args.tls_cert or environ.get("CHRONOSCHED_TLS_CLIENT_CERT") or None,
        key=args.tls_key or environ.get("CHRONOSCHED_TLS_CLIENT_KEY") or None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m chronosched.cli`: the operator commands alone."""
    parser = argparse.ArgumentParser(
        prog="chronosched",
        description="chronosched's operator commands, talking gRPC to a server.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_commands(sub)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    return run(args)
