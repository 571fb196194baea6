"""Benchmark scaffolding: a throwaway embedded PostgreSQL, a server (its own
process or in this one), and CPU accounting of processes from /proc."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import psycopg

from chronosched_server.app import Server
from chronosched_server.config import Config
from chronosched_server.storage.bootstrap import tune_for_queues
from chronosched_server.storage.migrate import migrate


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    """A migrated database on a fresh embedded PostgreSQL, deleted afterwards."""
    from pgserver.postgres_server import get_server

    tmp = Path(tempfile.mkdtemp(prefix="chronosched-bench-"))
    pg = await asyncio.to_thread(get_server, tmp / "pg", cleanup_mode="delete")
    try:
        admin = pg.get_uri()
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute("create database bench")
        # The same server settings `chronosched up` gives its embedded cluster.
        with psycopg.connect(admin, autocommit=True) as sync_conn:
            tune_for_queues(sync_conn)
        url = pg.get_uri("bench")
        await migrate(url)
        yield url
    finally:
        await asyncio.to_thread(pg.cleanup)


@asynccontextmanager
async def server_process(url: str, *extra_args: str) -> AsyncIterator[tuple[int, grpc.aio.Channel]]:
    """`chronosched server` as its own process (as in production), with more
    flags if given, and a channel to it."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chronosched_server",
        "server",
        "--database-url",
        url,
        "--grpc-port",
        str(port),
        "--log-level",
        "WARNING",
        # The benches measure the queue, not bearer tokens.
        "--insecure-no-auth",
        *extra_args,
    )
    opts = [("grpc.max_send_message_length", 512 << 20), ("grpc.max_receive_message_length", 512 << 20)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            yield port, channel
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def server(url: str) -> AsyncIterator[tuple[Server, grpc.aio.Channel]]:
    srv = Server(Config(database_url=url, grpc_port=0))
    port = await srv.start()
    opts = [("grpc.max_send_message_length", 512 << 20), ("grpc.max_receive_message_length", 512 << 20)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as channel:
            yield srv, channel
    finally:
        await srv.stop(grace=0)


# --- CPU, from /proc ------------------------------------------------------------


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU ticks of the process and its reaped children)."""
    out: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after it.
        fields = raw[raw.rindex(")") + 2 :].split()
        # After the name: state ppid ... utime(14) stime cutime cstime(17).
        out[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return out


def tree_cpu(roots: Sequence[int]) -> float:
    """CPU seconds of these processes and all their descendants, alive or
    reaped (a reaped child's time is in its parent's cutime/cstime)."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    ticks, todo, seen = 0, list(roots), set[int]()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in procs:
            continue
        seen.add(pid)
        ticks += procs[pid][1]
        todo += children.get(pid, [])
    return ticks / TICK


def server_pid(port: int) -> int:
    """The `chronosched server` child of this process listening on port."""
    for pid, (ppid, _) in _processes().items():
        if ppid != os.getpid():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"chronosched_server" in argv and str(port).encode() in argv:
            return pid
    raise RuntimeError(f"no chronosched server process on port {port}")


async def postmaster_pid(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute("select pg_backend_pid()")).fetchone()
        assert row is not None
        # While the backend (a child of the postmaster) is still alive.
        return _processes()[int(row[0])][0]
