"""`chronosched server` on an address it cannot have: it says which and exits 1
at once, instead of running on listening nowhere (gRPC only logs a failed bind)
or hanging at exit (a psycopg pool left open retries its connections through
the event loop's shutdown)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from chronosched.v1 import namespace_pb2
from tests.support.processes import clean_env, free_port, server_argv
from tests.support.server import serving

# Far above a start's second or two: the old code never exited at all.
EXIT_TIMEOUT_S = 30


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 another process's socket listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _server(database_url: str, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        server_argv(database_url, port, *extra),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )


def test_a_taken_grpc_port_stops_the_start(database_url: str, held_port: int) -> None:
    done = _server(database_url, held_port)
    assert done.returncode == 1, done.stderr
    assert (
        f"chronosched server: error: cannot listen on 127.0.0.1:{held_port}: the port is taken" in done.stderr
    )
    assert "listening on" not in done.stderr


def test_a_taken_metrics_port_stops_the_start_and_closes_what_it_opened(
    database_url: str, held_port: int
) -> None:
    # The metrics port is bound after the pool has opened and the gRPC server
    # has started: the process must close both and exit.
    done = _server(database_url, free_port(), "--metrics-port", str(held_port))
    assert done.returncode == 1, done.stderr
    assert f"chronosched server: error: cannot serve metrics on 127.0.0.1:{held_port}: " in done.stderr


async def test_a_second_server_on_a_servers_port_is_refused_and_the_first_keeps_it(
    database_url: str,
) -> None:
    async with serving(database_url) as first:
        port = first.server.port
        done = _server(database_url, port)
        assert done.returncode == 1, done.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
        reply = await first.namespaces.ListNamespaces(namespace_pb2.ListNamespacesRequest(), timeout=10)
        assert list(reply.namespaces) == []
