"""tests.support.processes.free_port: ports for the processes tests start."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]


def test_ports_asked_for_in_one_process_are_all_different() -> None:
    # The kernel hands the same free port out again now and then (a process
    # that asked for its gRPC and HTTP ports once got the same port twice);
    # a thousand asks would see that about twenty times.
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)


def test_a_port_given_is_free_to_listen_on() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


@pytest.mark.parametrize(("worker", "block"), [("gw0", 0), ("gw1", 1), ("gw3", 3)])
def test_each_xdist_worker_takes_ports_from_its_own_block(worker: str, block: int) -> None:
    # Asked in a process of its own, as an xdist worker would be: its first
    # ports lie in its block, clear of other workers' and of the kernel's
    # ephemeral range.
    script = "from tests.support.processes import free_port; print(*(free_port() for _ in range(3)))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=clean_env({"PYTEST_XDIST_WORKER": worker}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    ports = [int(p) for p in out.split()]
    first = 20000 + 2000 * block
    assert len(set(ports)) == 3
    assert all(first <= p < first + 2000 for p in ports), ports
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert max(ports) < low, (ports, low)
