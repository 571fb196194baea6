"""For tests that start processes: free ports, a clean environment, pid
checks and the server's command line."""

from __future__ import annotations

import os
import socket
import sys

from chronosched_server.local.embedded import pid_alive

__all__ = ["clean_env", "free_port", "pid_alive", "server_argv"]


# Every port free_port has returned in this process. The kernel often
# picks a port it picked a moment ago (about 1 bind in 10 over a few
# thousand), so two ports asked for together, say one process's gRPC and
# HTTP ports, could otherwise be the same.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago and
    that this process was not given before."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port this process was not given already ({len(_handed_out)} given)")


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
