"""For tests that start processes: free ports, a clean environment, pid
checks and the server's command line."""

from __future__ import annotations

import os
import socket
import sys

from chronosched_server.local.embedded import pid_alive

__all__ = ["clean_env", "free_port", "pid_alive", "server_argv"]


# Ports come from a block of this process's own, below the kernel's
# ephemeral range (32768 and up by default): bind(0) and outgoing
# connections draw from that range, and the kernel often re-picks a port it
# just freed, so a port asked for there could be handed to a second caller
# (another pytest-xdist worker, or the same test asking for its gRPC and HTTP
# ports) before the first process listens on it. Each xdist worker (gw0,
# gw1, ...) takes its own block; ports go out in turn and each is checked by
# a bind.
_FIRST_PORT = 20000
_BLOCK = 2000
_BLOCKS = 6  # 20000-31999


def _worker_index() -> int:
    number = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return int(number) if number.isdigit() else 0


_block_start = _FIRST_PORT + (_worker_index() % _BLOCKS) * _BLOCK
_next = 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago, from
    this process's block, not handed out before by this process (until the
    block's 2,000 ports have all gone out once)."""
    global _next
    for _ in range(_BLOCK):
        port = _block_start + _next % _BLOCK
        _next += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {_block_start}-{_block_start + _BLOCK - 1}")


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
