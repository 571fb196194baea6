"""`chronosched up` listens on loopback only unless told otherwise: every
listening socket of `up`, its gRPC server, its Envoy, its workers and its
embedded PostgreSQL, read from /proc (socket inodes held by each process,
matched against /proc/net/{tcp,tcp6,udp,udp6}), is on 127.0.0.1; the
PostgreSQL listens on a unix socket only. With `--listen 127.0.0.2` the gRPC
server and Envoy's REST listener move there, and the admin API does not.
The banner names each address:port and what it serves."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.up import UpProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

# TCP states in /proc/net/tcp's `st` column.
_LISTEN = "0A"
_ESTABLISHED = "01"


@dataclass(frozen=True)
class Bound:
    """A socket a process holds that takes connections or datagrams."""

    protocol: str  # tcp, tcp6, udp, udp6
    address: str  # IPv4-mapped IPv6 addresses given as IPv4
    port: int
    pid: int


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc prints each 32-bit word in host (little-endian) order.
    fixed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(fixed)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(*roots: int) -> set[int]:
    """The roots and all their descendants."""
    tree = _children()
    found: set[int] = set()
    pending = list(roots)
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending += tree.get(pid, [])
    return found


def _socket_inodes(pids: set[int]) -> dict[str, int]:
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[len("socket:[") : -1]] = pid
    return inodes


def bound_sockets(pids: set[int]) -> list[Bound]:
    """Every TCP socket in LISTEN state and every bound UDP socket that one
    of `pids` holds."""
    inodes = _socket_inodes(pids)
    found: list[Bound] = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        path = Path(f"/proc/self/net/{protocol}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (protocol.startswith("tcp") and state != _LISTEN):
                continue
            hex_address, hex_port = local.split(":")
            found.append(Bound(protocol, _address(hex_address), int(hex_port, 16), inodes[inode]))
    return found


def peers(pids: set[int]) -> set[tuple[str, int]]:
    """The (address, port) at the other end of every established TCP
    connection `pids` hold."""
    inodes = _socket_inodes(pids)
    found: set[tuple[str, int]] = set()
    for protocol in ("tcp", "tcp6"):
        for line in Path(f"/proc/self/net/{protocol}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == _ESTABLISHED:
                hex_address, hex_port = fields[2].split(":")
                found.add((_address(hex_address), int(hex_port, 16)))
    return found


def unix_listeners(pids: set[int]) -> list[str]:
    """Paths of the listening unix sockets `pids` hold."""
    inodes = _socket_inodes(pids)
    paths: list[str] = []
    for line in Path("/proc/self/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Flags 00010000 is __SO_ACCEPTCON: a listening socket.
        if len(fields) >= 8 and fields[6] in inodes and fields[3] == "00010000":
            paths.append(fields[7])
    return paths


def everything_of(up: UpProcess) -> tuple[set[int], set[int]]:
    """(`up` with its children and theirs; the postmaster with its
    processes). pg_ctl daemonized the postmaster, so it is not up's child."""
    assert up.proc is not None
    postgres = up.state["postgres_pid"]
    return process_tree(up.proc.pid), process_tree(postgres)


def test_up_listens_on_loopback_only_by_default(up: UpProcess) -> None:
    ours, postgres = everything_of(up)
    pids = up.child_pids()
    assert {pids["server"], pids["envoy"]} <= ours
    bound = bound_sockets(ours | postgres)

    # Nothing anywhere but 127.0.0.1, and nothing over UDP.
    assert {(b.protocol[:3], b.address) for b in bound} == {("tcp", "127.0.0.1")}, bound
    by_port = {(b.port, b.pid) for b in bound}
    assert (up.grpc_port, pids["server"]) in by_port
    assert (up.http_port, pids["envoy"]) in by_port
    assert (up.admin_port, pids["envoy"]) in by_port
    # Those three ports and no other.
    assert {b.port for b in bound} == {up.grpc_port, up.http_port, up.admin_port}, bound

    # PostgreSQL: no TCP at all, a unix socket in the data directory.
    assert not [b for b in bound if b.pid in postgres]
    sockets = unix_listeners(postgres)
    assert sockets and all(Path(p).name.startswith(".s.PGSQL.") for p in sockets), sockets

    # The banner says the same.
    log = up.log_path.read_text(errors="replace")
    assert "\nListening on this machine only:\n" in log
    assert _line(log, f"127.0.0.1:{up.http_port}", "Envoy: REST under /api/v1")
    assert _line(log, f"127.0.0.1:{up.grpc_port}", "gRPC server")
    assert _line(log, f"127.0.0.1:{up.admin_port}", "Envoy's admin API")
    assert _line(log, "PostgreSQL", "unix socket in .* only, no TCP port")
    assert "\nTLS:  off" in log
    assert "\nauth: " in log


def _line(log: str, where: str, what: str) -> bool:
    """Whether the banner has the line `  <where>  <what...>`."""
    return re.search(rf"^  {re.escape(where)} +{what}", log, re.MULTILINE) is not None


@dataclass
class ElsewhereUp(UpProcess):
    """An `up` whose gRPC server and REST listener bind another address."""

    host: str = "127.0.0.2"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"


@pytest.fixture
def elsewhere(data_root: Path, tmp_path: Path) -> Iterator[ElsewhereUp]:
    running = ElsewhereUp(
        data_dir=data_root / "data",
        log_path=tmp_path / "up.log",
        extra_args=["--workers", "1", "--listen", "127.0.0.2"],
    )
    running.start()
    try:
        running.wait_ready()
        yield running
        running.stop_and_check()
    finally:
        running.stop()


def test_listen_moves_the_grpc_server_and_rest_but_not_the_admin_api(elsewhere: ElsewhereUp) -> None:
    ours, postgres = everything_of(elsewhere)
    pids = elsewhere.child_pids()
    bound = {(b.address, b.port, b.pid) for b in bound_sockets(ours | postgres)}
    assert ("127.0.0.2", elsewhere.grpc_port, pids["server"]) in bound
    assert ("127.0.0.2", elsewhere.http_port, pids["envoy"]) in bound
    assert ("127.0.0.1", elsewhere.admin_port, pids["envoy"]) in bound
    assert {address for address, _, _ in bound} == {"127.0.0.1", "127.0.0.2"}, bound
    assert {port for address, port, _ in bound if address == "127.0.0.1"} == {elsewhere.admin_port}

    # Reached where it listens, and only there.
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{elsewhere.base_url}/healthz").status_code == 200
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{elsewhere.http_port}/healthz")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", elsewhere.grpc_port), timeout=5).close()

    # Its local worker found the server there too.
    assert elsewhere.reload_state()["grpc_target"] == f"127.0.0.2:{elsewhere.grpc_port}"
    # Its local worker holds a connection to the server there.
    worker = {pids["worker-0"]}
    wait_until(
        lambda: ("127.0.0.2", elsewhere.grpc_port) in peers(worker),
        within=30,
        what="the local worker to connect to 127.0.0.2",
        detail=elsewhere.log_tail,
    )
    log = elsewhere.log_path.read_text(errors="replace")
    assert _line(log, f"127.0.0.2:{elsewhere.http_port}", "Envoy: REST")
    assert _line(log, f"127.0.0.2:{elsewhere.grpc_port}", "gRPC server")
    assert _line(log, f"127.0.0.1:{elsewhere.admin_port}", "Envoy's admin API")
