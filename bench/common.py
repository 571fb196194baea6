"""Benchmark scaffolding: a throwaway embedded PostgreSQL and an in-process server."""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
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
