"""For tests that start processes: free ports, a clean environment, pid
checks and the server's command line."""

from __future__ import annotations

import os
import socket
import sys

from chronosched_server.local.embedded import pid_alive

__all__ = ["clean_env", "free_port", "pid_alive", "server_argv"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any CHRONOSCHED_* setting (nothing
    from the developer's shell, a database URL above all, may configure a
    process under test), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCHED_")}
    env.update(extra or {})
    return env


def server_argv(database_url: str, port: int, *extra: str) -> list[str]:
    """`python -m chronosched_server server` on `port` against `database_url`,
    without bearer tokens (the tests of tokens start servers of their own)."""
    return [
        sys.executable,
        "-m",
        "chronosched_server",
        "server",
        "--database-url",
        database_url,
        "--grpc-port",
        str(port),
        "--insecure-no-auth",
        *extra,
    ]
