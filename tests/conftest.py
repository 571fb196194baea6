"""Shared fixtures: one embedded PostgreSQL per test session, a fresh
database per test cloned from a migrated template (cloning is ~50x faster
than migrating each time)."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from chronosched_server.storage.migrate import migrate

TEMPLATE_DB = "chronosched_template"
_counter = itertools.count()


def _with_db(url: str, name: str) -> str:
    # pgserver URLs look like postgresql://postgres:@/postgres?host=/sock
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Admin URL of a session-wide PostgreSQL: CHRONOSCHED_TEST_DATABASE_URL or embedded pgserver."""
    external = os.environ.get("CHRONOSCHED_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from pgserver.postgres_server import get_server

    tmp = Path(tempfile.mkdtemp(prefix="chronosched-test-pg-"))
    server = get_server(tmp / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def template_db(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(TEMPLATE_DB)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(TEMPLATE_DB)))
    asyncio.run(migrate(_with_db(pg_url, TEMPLATE_DB)))
    return TEMPLATE_DB


@pytest.fixture
def database_url(pg_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield _with_db(pg_url, name)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
async def aconn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        yield conn
