"""Cluster bootstrap: the statements the embedded PostgreSQL needs before
migrations can run (settings for the queue tables, the database itself).

Run synchronously on a superuser connection to the cluster's admin database
by `chronosched_server.local.embedded` (and the benchmarks).
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import sql

from chronosched_server.storage.db import translate
from chronosched_server.storage.queries import q

# Server settings the embedded cluster gets. The queue tables carry their own
# aggressive autovacuum thresholds (migration 0001), but autovacuum visits a
# database at most once per naptime (default 1 min); between visits the
# claimed jobs' dead entries pile up at the head of the claim's READY index.
# External PostgreSQL: see docs/architecture.md ("Running on your own
# PostgreSQL").
QUEUE_SETTINGS = {"autovacuum_naptime": "10s"}

# Utility statements that name an identifier: PostgreSQL can neither PREPARE
# them nor take the name as a parameter, so they cannot be named queries in
# sql/bootstrap.sql (whose every query the schema test PREPAREs); they are
# composed here with the identifier quoted by psycopg.
_ALTER_SYSTEM = sql.SQL("ALTER SYSTEM SET {} = {}")
_CREATE_DATABASE = sql.SQL("CREATE DATABASE {}")


def tune_for_queues(conn: psycopg.Connection[Any]) -> None:
    """Apply QUEUE_SETTINGS cluster-wide (ALTER SYSTEM + reload; superuser)."""
    for name, value in QUEUE_SETTINGS.items():
        conn.execute(_ALTER_SYSTEM.format(sql.Identifier(name), sql.Literal(value)))
    conn.execute(q("reload_conf"))


def prepare_database(admin_url: str, database: str) -> None:
    """Tune the cluster for the queue tables and create `database` unless it
    exists. Database errors leave as domain errors (storage.db.translate)."""
    try:
        _prepare_database(admin_url, database)
    except psycopg.Error as exc:
        raise translate(exc) from exc


def _prepare_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        tune_for_queues(conn)
        exists = conn.execute(q("database_exists"), {"database": database}).fetchone()
        if exists:
            return
        # Two processes may race here on a fresh directory; the loser
        # just finds the database made by the winner.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(_CREATE_DATABASE.format(sql.Identifier(database)))
