"""Snapshots of the fuzzed `up`'s database: each table's row count and a
digest of its rows, compared before and after a refused request."""

from __future__ import annotations

import psycopg
from psycopg import sql

Connection = psycopg.Connection[tuple[object, ...]]
# table -> (rows, md5 of the rows' text in order)
Snapshot = dict[str, tuple[int, str]]

# Every write of the API lands in some of these (migrations 0001 and 0003):
# a snapshot covers every table of the schema, and these must be among them.
CORE_TABLES = frozenset(
    {
        "namespaces",
        "job_definitions",
        "request_ids",
        "dags",
        "jobs",
        "dependencies",
        "cron_fires",
        "schedules",
        "dags_history",
        "jobs_history",
        "dependencies_history",
    }
)


def tables(db: Connection) -> list[str]:
    """Every table of the schema (new ones join the snapshot by themselves)."""
    rows = db.execute(
        "select table_name::text from information_schema.tables"
        " where table_schema = current_schema() and table_type = 'BASE TABLE' order by 1"
    ).fetchall()
    found = [str(name) for (name,) in rows]
    missing = CORE_TABLES - set(found)
    assert not missing, f"tables the snapshot must cover are missing: {sorted(missing)}"
    return found


def snapshot(db: Connection, names: list[str]) -> Snapshot:
    """Row count and a digest of the rows' text, per table, in one statement
    (one snapshot of the database)."""
    parts = [
        sql.SQL(
            "select {name}, count(*), md5(coalesce(string_agg(t::text, e'\\n' order by t::text), ''))"
            " from {table} as t"
        ).format(name=sql.Literal(name), table=sql.Identifier(name))
        for name in names
    ]
    rows = db.execute(sql.SQL(" union all ").join(parts)).fetchall()
    return {str(name): (int(str(count)), str(digest)) for name, count, digest in rows}


def changed(before: Snapshot, after: Snapshot) -> dict[str, str]:
    """What differs, per table: `3 -> 4 rows` or `3 -> 3 rows (contents changed)`."""
    return {
        table: f"{before[table][0]} -> {after[table][0]} rows"
        + (" (contents changed)" if before[table][0] == after[table][0] else "")
        for table in before
        if before[table] != after[table]
    }
