"""Race tests: a transaction the test holds open, and waiting until other
sessions queue up behind its locks (the event that orders the race)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from tests.support.waiting import poll

AConn = psycopg.AsyncConnection[Any]


async def lock_waiters(conn: AConn) -> int:
    """Sessions of this database now waiting for a lock (row, advisory or other)."""
    cur = await conn.execute(
        "select count(*) from pg_stat_activity"
        " where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()"
    )
    row = await cur.fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def until_waiting(conn: AConn, count: int, what: str) -> None:
    """Wait until `count` sessions wait for a lock (`conn` in autocommit)."""

    async def check() -> bool:
        return await lock_waiters(conn) >= count

    await poll(check, within=15, what=f"{count} session(s) waiting for a lock: {what}", every=0.02)


@asynccontextmanager
async def open_transaction(database_url: str) -> AsyncIterator[AConn]:
    """A connection inside a transaction the test commits (or, on an error,
    rolls back) by leaving the block."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        yield conn
