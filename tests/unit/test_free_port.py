"""tests.support.processes.free_port: ports for the processes tests start."""

from __future__ import annotations

import socket

from tests.support.processes import free_port


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
