"""The migrated schema against the code: named queries, migrations, triggers, error mapping.

Real PostgreSQL, a fresh migrated database per test (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib import resources
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, errors, sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from chronosched_server.errors import AlreadyExists, DatabaseError, FailedPrecondition, Unavailable
from chronosched_server.storage import leases
from chronosched_server.storage.db import Database, translate
from chronosched_server.storage.migrate import _LOCK_KEY, MigrationError, load_migrations, migrate
from chronosched_server.storage.queries import all_queries, q

pytestmark = pytest.mark.timeout(60)

AConn = psycopg.AsyncConnection[tuple[Any, ...]]

# A psycopg named placeholder and the cast that follows it (all our parameters carry one).
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
CAST = re.compile(r"%\((\w+)\)s::([a-z][a-z0-9_]*(?:\[\])?)")


def to_positional(query: str) -> tuple[str, list[str]]:
    """`%(name)s` -> `$n`, numbered in order of first appearance."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match[1]
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return PLACEHOLDER.sub(number, query), order


def test_to_positional_numbers_by_first_appearance() -> None:
    text, names = to_positional("select %(b)s::int, %(a)s::text, %(b)s::int where x = %(c)s::uuid")
    assert text == "select $1::int, $2::text, $1::int where x = $3::uuid"
    assert names == ["b", "a", "c"]


def migration_files() -> dict[str, bytes]:
    folder = resources.files("chronosched_server.storage").joinpath("migrations")
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.name.endswith(".sql")}


async def fetch_all(conn: AConn, query: bytes, params: Any = None) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def fetch_value(conn: AConn, query: bytes, params: Any = None) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


# --- named queries ------------------------------------------------------------


async def test_every_named_query_prepares_with_its_declared_parameter_types(aconn: AConn) -> None:
    failures: list[str] = []
    checked = 0
    utility = 0
    for name, query in all_queries().items():
        code = re.sub(r"--[^\n]*", "", query).strip().lower()
        if not re.match(r"(with|select|insert|update|delete)\b", code):
            utility += 1  # utility statements (ANALYZE) cannot be PREPAREd
            continue
        text, params = to_positional(query)
        casts: dict[str, set[str]] = {}
        for match in CAST.finditer(query):
            casts.setdefault(match[1], set()).add(match[2])
        statement = f"q_{name}"
        try:
            await aconn.execute(f"prepare {statement} as {text}".encode())
        except psycopg.Error as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        types = await fetch_value(
            aconn,
            b"select parameter_types::text[] from pg_prepared_statements where name = %s::text",
            (statement,),
        )
        await aconn.execute(f"deallocate {statement}".encode())
        checked += 1
        if len(types) != len(params):
            failures.append(f"{name}: {len(types)} parameters prepared, {len(params)} named")
            continue
        for param, prepared in zip(params, types, strict=True):
            declared = casts.get(param, set())
            if len(declared) != 1:
                failures.append(f"{name}: %({param})s is cast as {sorted(declared)}; want exactly one type")
                continue
            want = await fetch_value(aconn, b"select %s::text::regtype::text", (next(iter(declared)),))
            if prepared != want:
                failures.append(f"{name}: %({param})s prepared as {prepared}, declared {want}")
    assert failures == []
    assert checked + utility == len(all_queries()) and utility <= 1
    assert checked >= 40


async def _generic_plans(conn: psycopg.AsyncConnection[Any], names: tuple[str, ...]) -> dict[str, str]:
    """EXPLAIN of each named query's prepared plan, on a connection of any
    row factory (a test's own, or one of the server's pool)."""
    plans: dict[str, str] = {}
    for name in names:
        text, params = to_positional(all_queries()[name])
        await conn.execute(f"prepare plan_{name} as {text}".encode())
        async with conn.cursor(row_factory=tuple_row) as cur:
            nulls = f"({', '.join(['null'] * len(params))})" if params else ""
            await cur.execute(f"explain execute plan_{name}{nulls}".encode())
            plans[name] = "\n".join(str(r[0]) for r in await cur.fetchall())
        await conn.execute(f"deallocate plan_{name}".encode())
    return plans


READY_INDEXES = ("jobs_ready_idx", "jobs_ready_any_namespace_idx")


async def test_each_statement_of_ready_jobs_can_read_only_its_own_ready_index(aconn: AConn) -> None:
    """Migration 0017: the per-pair claim, Tick's check for a waiting job and
    the metrics' count read jobs_ready_idx; the any-namespace walk reads
    jobs_ready_any_namespace_idx. With its own index dropped (rolled back) a
    statement falls back to an index of all jobs, never to the other READY
    index: on statistics that make both look empty, the planner cannot tell
    them apart, so only one may be on offer."""
    per_pair = ("claim_jobs_in", "tick_one", "frontier_counts")
    async with aconn.transaction(force_rollback=True):
        await aconn.execute(b"drop index jobs_ready_idx")
        await aconn.execute(b"set local enable_seqscan = off")
        await aconn.execute(b"set local plan_cache_mode = force_generic_plan")
        without_own = await _generic_plans(aconn, per_pair)
    for name, plan in without_own.items():
        assert "jobs_ready_any_namespace_idx" not in plan, (name, plan)
    async with aconn.transaction(force_rollback=True):
        await aconn.execute(b"drop index jobs_ready_any_namespace_idx")
        await aconn.execute(b"set local enable_seqscan = off")
        await aconn.execute(b"set local plan_cache_mode = force_generic_plan")
        walk_without_own = await _generic_plans(aconn, ("claim_jobs_any",))
    assert "jobs_ready_idx" not in walk_without_own["claim_jobs_any"], walk_without_own
    async with aconn.transaction(force_rollback=True):
        await aconn.execute(b"set local plan_cache_mode = force_generic_plan")
        plans = await _generic_plans(aconn, (*per_pair, "claim_jobs_any"))
    for name in per_pair:
        assert "jobs_ready_idx" in plans[name] and "any_namespace" not in plans[name], (name, plans[name])
    # The walk takes its order from its index (0014): no sort of READY jobs.
    assert "jobs_ready_any_namespace_idx" in plans["claim_jobs_any"], plans["claim_jobs_any"]
    assert "Sort Key: (- r.priority)" not in plans["claim_jobs_any"], plans["claim_jobs_any"]


async def _ready_index_rows(
    conn: AConn, name: str, params: dict[str, Any], *, cycle: bool = True
) -> dict[str, int]:
    """Run a named query's generic plan under EXPLAIN ANALYZE (in a
    transaction rolled back) and count the rows each READY index handed up,
    with those its node then filtered out. Planned with the settings of the
    server's connections (configure_session) and, for a statement of the
    dispatcher's cycle, of the cycle (use_generic_plans); otherwise on the
    generic plan that an autocommit statement such as Tick's settles on
    after its first few runs."""
    text, names = to_positional(all_queries()[name])
    values = sql.SQL(", ").join(sql.Literal(params[n]) for n in names)
    rows: dict[str, int] = dict.fromkeys(READY_INDEXES, 0)

    def walk(node: dict[str, Any]) -> None:
        if node.get("Index Name") in rows:
            read = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            rows[node["Index Name"]] += read * node["Actual Loops"]
        for child in node.get("Plans", []):
            walk(child)

    async with conn.transaction(force_rollback=True):
        await conn.execute(q("configure_session"))
        if cycle:
            await conn.execute(q("use_generic_plans"))
        else:
            await conn.execute(b"set local plan_cache_mode = force_generic_plan")
        await conn.execute(f"prepare run_{name} as {text}".encode())
        explain = sql.SQL("explain (analyze, format json) execute {}({})").format(
            sql.Identifier(f"run_{name}"), values
        )
        [[plan]] = await fetch_all(conn, explain.as_bytes(conn))
        await conn.execute(f"deallocate run_{name}".encode())
    walk(plan[0]["Plan"])
    return rows


async def _insert_ready_jobs(conn: AConn, namespace_id: str, def_id: uuid.UUID, n: int) -> None:
    """n standalone jobs of a `report` definition, READY and due."""
    await conn.execute(
        b"insert into jobs (job_id, namespace_id, def_id, kind, key, state, max_attempts, due_time)"
        b" select gen_random_uuid(), %s, %s, 'report', 'n', 'READY', 3, now() - interval '1 second'"
        b" from generate_series(1, %s)",
        (namespace_id, def_id, n),
    )


async def _jobs_analyzed(conn: AConn) -> bool:
    """Whether jobs has had an ANALYZE (by hand or by autovacuum)."""
    analyzed = await fetch_value(
        conn,
        b"select last_analyze is not null or last_autoanalyze is not null"
        b" from pg_stat_user_tables where relname = 'jobs'",
    )
    assert isinstance(analyzed, bool)
    return analyzed


async def _claims_read_only_their_own_ready_index(conn: AConn, namespace_id: str) -> None:
    """A claim of 16 `report` jobs, by the walk of all namespaces and by
    namespace_id's pair, each reads a claim's worth of its own READY index
    and nothing of the other."""
    claim = {"kinds": ["report"], "n": 16, "lease": "30s", "worker_id": "w"}
    walk = await _ready_index_rows(
        conn, "claim_jobs_any", {**claim, "all_namespaces": True, "namespaces": []}
    )
    assert walk["jobs_ready_idx"] == 0 and 16 <= walk["jobs_ready_any_namespace_idx"] <= 64, walk
    per_pair = await _ready_index_rows(conn, "claim_jobs_in", {**claim, "namespaces": [namespace_id]})
    assert per_pair["jobs_ready_any_namespace_idx"] == 0 and 16 <= per_pair["jobs_ready_idx"] <= 64, per_pair


async def test_ready_jobs_are_read_through_their_own_index_after_an_analyze_found_none(
    aconn: AConn,
) -> None:
    """After a drain, an ANALYZE that finds no READY job records both READY
    indexes as empty however many pages the drain left them, and PostgreSQL
    keeps estimating them from that empty density as jobs arrive, until the
    next ANALYZE: every plan reading them whole looks free. On such
    statistics an all-namespaces claim of 16 read and sorted all 20,000
    READY jobs (25 ms against 1.5 ms), and a handed-off Tick read every
    READY job of every namespace. Each now reads a claim's worth."""
    await aconn.execute(b"alter table jobs set (autovacuum_enabled = off)")  # no ANALYZE but ours
    defs = {}
    for namespace_id in ("drained", "busy", "idle"):
        await _insert_namespace(aconn, namespace_id)
        defs[namespace_id] = await _insert_definition(aconn, namespace_id)

    await _insert_ready_jobs(aconn, "drained", defs["drained"], 20000)
    await aconn.execute(
        b"update jobs set state = 'SUCCEEDED', end_time = now() where namespace_id = 'drained'"
    )
    await aconn.execute(b"analyze jobs")
    stats = await fetch_all(
        aconn,
        b"select relname, relpages, reltuples from pg_class where relname = any(%s::text[]) order by relname",
        (list(READY_INDEXES),),
    )
    # The statistics this test is about: no READY tuples on many pages.
    assert [(r[0], r[2]) for r in stats] == [("jobs_ready_any_namespace_idx", 0), ("jobs_ready_idx", 0)]
    assert all(r[1] > 50 for r in stats), stats
    await _insert_ready_jobs(aconn, "busy", defs["busy"], 20000)

    await _claims_read_only_their_own_ready_index(aconn, "busy")
    tick = {
        "namespace_id": "idle",
        "def_id": defs["idle"],
        "kind": "report",
        "job_id": uuid.uuid4(),
        "payload": "{}",
        "worker_id": "w",
        "lease": "30s",
        "method": "Tick",
        "request_id": None,
    }
    handed_off = await _ready_index_rows(aconn, "tick_one", tick, cycle=False)
    assert handed_off == dict.fromkeys(READY_INDEXES, 0), handed_off


async def test_a_claim_reads_ready_jobs_in_index_order_before_jobs_has_statistics(aconn: AConn) -> None:
    """Before jobs' first ANALYZE the planner guesses a READY job or two,
    and the walk's plan took a bitmap scan of its index (rows out of index
    order) and sorted them: every claim of 16 read all 20,000 READY jobs,
    24 to 29 ms. The cycle plans with bitmap scans off (use_generic_plans),
    so each claim reads its index in order and stops at 16."""
    await aconn.execute(b"alter table jobs set (autovacuum_enabled = off)")  # no ANALYZE at all
    for namespace_id in ("one", "two"):
        await _insert_namespace(aconn, namespace_id)
        await _insert_ready_jobs(aconn, namespace_id, await _insert_definition(aconn, namespace_id), 10000)
    assert await _jobs_analyzed(aconn) is False
    await _claims_read_only_their_own_ready_index(aconn, "two")


async def test_a_claim_leases_its_picked_jobs_by_the_primary_key_before_jobs_has_statistics(
    aconn: AConn,
) -> None:
    """A claim's update finds the jobs it picked by their ids. It once also
    asked for state = 'READY' there, which let a generic plan made before
    jobs' first ANALYZE walk a whole READY index for those ids: 6 ms a claim
    on a fresh backlog of 20,000, ten times the claim itself."""
    async with aconn.transaction(force_rollback=True):
        await _insert_namespace(aconn, "fresh")
        await _insert_ready_jobs(aconn, "fresh", await _insert_definition(aconn, "fresh"), 20000)
        assert await _jobs_analyzed(aconn) is False
        await aconn.execute(b"set local plan_cache_mode = force_generic_plan")
        plans = await _generic_plans(aconn, ("claim_jobs_in", "claim_jobs_any"))
    for name, plan in plans.items():
        # The READY indexes serve the pick (the CTE, planned first) only; the
        # update, planned after it, finds its rows by the primary key.
        pick, _, update = plan.partition("\n  InitPlan ")
        assert update, (name, plan)
        assert "jobs_ready" in pick and "jobs_ready" not in update, (name, plan)
        assert "jobs_pkey" in update, (name, plan)


async def test_the_servers_connections_plan_the_hot_statements_by_index_on_a_jobs_table_analyzed_empty(
    database_url: str,
) -> None:
    """A generic plan is kept until jobs' statistics change. Made while jobs
    was empty, the Tick's plan scanned the whole table, and after a
    20,000-job drain each Tick took 21 ms instead of 4 until autovacuum came
    round. The server's connections run with sequential scans off
    (configure_session), so such plans take the indexes."""
    db = Database(database_url, min_size=1, max_size=1)
    await db.open()
    try:
        names = ("tick_one", "claim_jobs_in", "claim_jobs_any", "succeed_jobs", "create_dag_one")
        async with db.transaction() as conn:
            await conn.execute(b"analyze jobs")
            await conn.execute(b"set local plan_cache_mode = force_generic_plan")
            plans = await _generic_plans(conn, names)
            raise psycopg.Rollback()  # the ANALYZE's statistics go with it
        for name, plan in plans.items():
            assert "Seq Scan on jobs" not in plan, (name, plan)
            assert "Index" in plan, (name, plan)
        # Set for the session, not the transaction: still off after a rollback.
        async with db.transaction() as conn:
            row = await (await conn.execute(b"show enable_seqscan")).fetchone()
            assert row == {"enable_seqscan": "off"}
    finally:
        await db.close()


async def test_the_dag_key_index_leaves_standalone_jobs_out_and_still_serves_every_dag_lookup(
    aconn: AConn,
) -> None:
    """Migration 0015: jobs_dag_key_key holds DAG jobs only. The lookups by
    DAG still take it on a generic plan (dag_id = $1 implies not null);
    standalone jobs (keyed by their definition's name) are not in it.
    JOB_KEY_EXISTS on a duplicate key in a DAG: tests/api/test_dags.py."""
    async with aconn.transaction(force_rollback=True):
        await aconn.execute(b"set local enable_seqscan = off")
        await aconn.execute(b"set local enable_bitmapscan = off")
        await aconn.execute(b"set local plan_cache_mode = force_generic_plan")
        plans = await _generic_plans(aconn, ("dag_job_keys", "list_dag_jobs", "delete_dag"))
    for name, plan in plans.items():
        assert "jobs_dag_key_key" in plan, (name, plan)
    definition = await fetch_value(aconn, b"select pg_get_indexdef('jobs_dag_key_key'::regclass)")
    assert definition.startswith(
        "CREATE UNIQUE INDEX jobs_dag_key_key ON public.jobs USING btree (dag_id, key)"
    )
    assert definition.endswith("WHERE (dag_id IS NOT NULL)"), definition


async def test_the_state_index_leaves_ready_jobs_to_the_claim_indexes(aconn: AConn) -> None:
    """Migration 0016: jobs_namespace_state_idx holds every state but READY
    (enqueues write READY jobs into the claim's indexes only); a list of
    one other state still reads it."""
    definition = await fetch_value(aconn, b"select pg_get_indexdef('jobs_namespace_state_idx'::regclass)")
    assert definition.startswith("CREATE INDEX jobs_namespace_state_idx ON public.jobs USING btree")
    assert definition.endswith("WHERE (state <> 'READY'::text)"), definition
    async with aconn.transaction(force_rollback=True):
        await aconn.execute(b"set local enable_seqscan = off")
        rows = await fetch_all(
            aconn,
            b"explain select job_id from jobs where namespace_id = 'ns' and state = 'FAILED'"
            b" order by job_id limit 10",
        )
    plan = "\n".join(str(r[0]) for r in rows)
    assert "jobs_namespace_state_idx" in plan, plan


async def test_the_claims_namespace_literal_reads_back_as_the_same_list(aconn: AConn) -> None:
    """leases._text_array renders a claim's namespaces once per list; what
    PostgreSQL parses from it must be the list itself, whatever the text."""
    items = ("team-a", "b", 'a "quoted" one', "back\\slash", "comma, brace } { and space", "", "NULL")
    got = await fetch_value(aconn, b"select %s::text[]", (leases._text_array(items),))
    assert got == list(items)
    assert await fetch_value(aconn, b"select %s::text[]", (leases._text_array(()),)) == []


# --- migrations ---------------------------------------------------------------


async def test_migrate_again_applies_nothing(database_url: str) -> None:
    assert await migrate(database_url) == []
    assert await migrate(database_url) == []


async def test_schema_migrations_records_each_file_with_its_sha256(aconn: AConn) -> None:
    files = migration_files()
    assert "0001_init.sql" in files
    expected = [
        (int(name[:4]), name, hashlib.sha256(content).hexdigest()) for name, content in sorted(files.items())
    ]
    rows = await fetch_all(aconn, b"select version, name, checksum from schema_migrations order by version")
    assert rows == expected
    assert [(m.version, m.name, m.checksum) for m in load_migrations()] == expected


async def test_changed_checksum_stops_migrate_and_releases_the_lock(database_url: str, aconn: AConn) -> None:
    await aconn.execute(b"update schema_migrations set checksum = 'edited' where version = 1")

    with pytest.raises(MigrationError, match=r"^migration 0001_init\.sql changed after it was applied$"):
        await migrate(database_url)

    assert await fetch_value(aconn, b"select checksum from schema_migrations where version = 1") == "edited"
    # The advisory lock is released even though migrate failed.
    assert await fetch_value(aconn, b"select pg_try_advisory_lock(%s::bigint)", (_LOCK_KEY,)) is True
    assert await fetch_value(aconn, b"select pg_advisory_unlock(%s::bigint)", (_LOCK_KEY,)) is True


async def _advisory_waiters(admin: AConn, dbname: str) -> int:
    count = await fetch_value(
        admin,
        b"select count(*) from pg_locks l join pg_database d on d.oid = l.database"
        b" where l.locktype = 'advisory' and not l.granted and d.datname = %s::text"
        b" and l.classid = %s::bigint and l.objid = %s::bigint",
        (dbname, _LOCK_KEY >> 32, _LOCK_KEY & 0xFFFF_FFFF),
    )
    assert isinstance(count, int)
    return count


@contextlib.asynccontextmanager
async def empty_database(pg_url: str, prefix: str) -> AsyncIterator[tuple[str, str, AConn]]:
    """A new database with nothing in it, not even migrations, dropped
    afterwards: its URL, its name and an admin connection to the cluster."""
    dbname = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
        try:
            yield conninfo.make_conninfo(pg_url, dbname=dbname), dbname, admin
        finally:
            await admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
            )


async def test_concurrent_migrations_on_a_new_database_apply_each_file_once(pg_url: str) -> None:
    async with (
        empty_database(pg_url, "t_concurrent_migrate") as (url, dbname, admin),
        await psycopg.AsyncConnection.connect(url, autocommit=True) as holder,
    ):
        # Hold the migration lock so both migrate() calls queue up on it.
        await holder.execute(b"select pg_advisory_lock(%s::bigint)", (_LOCK_KEY,))
        tasks = [asyncio.create_task(migrate(url)) for _ in range(2)]
        deadline = time.monotonic() + 30
        while await _advisory_waiters(admin, dbname) < 2:
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            assert time.monotonic() < deadline, "both migrate() calls never waited on the lock"
        assert await fetch_value(holder, b"select to_regclass('schema_migrations') is null") is True
        await holder.execute(b"select pg_advisory_unlock(%s::bigint)", (_LOCK_KEY,))
        results = await asyncio.gather(*tasks)

        names = sorted(migration_files())
        assert sorted(results, key=len) == [[], names]
        rows = await fetch_all(holder, b"select name from schema_migrations order by version")
        assert [r[0] for r in rows] == names
        assert await fetch_value(holder, b"select to_regclass('jobs_ready_idx') is not null") is True


# --- schema rules -------------------------------------------------------------


async def _insert_namespace(conn: AConn, namespace_id: str) -> None:
    await conn.execute(q("insert_namespace"), {"namespace_id": namespace_id, "description": ""})


async def _insert_definition(conn: AConn, namespace_id: str) -> uuid.UUID:
    def_id = uuid.uuid4()
    await conn.execute(
        q("insert_definition"),
        {
            "def_id": def_id,
            "namespace_id": namespace_id,
            "name": "nightly",
            "version": 1,
            "kind": "report",
            "payload_template": Jsonb({}),
            "cron_spec": "",
            "time_zone": "UTC",
            "misfire_policy": "skip",
            "overlap_policy": "allow",
            "starting_deadline": timedelta(minutes=1),
            "max_attempts": 3,
            "backoff_initial": timedelta(seconds=1),
            "backoff_max": timedelta(minutes=5),
            "backoff_multiplier": 2.0,
            "execution_timeout": timedelta(minutes=10),
            "default_priority": 0,
            "delay_after_parents": timedelta(0),
        },
    )
    return def_id


async def test_0013_gives_existing_jobs_their_kind_and_keeps_ready_ones_claimable(pg_url: str) -> None:
    """An upgrade, not a fresh install: jobs written under 0012 (a READY one
    with its frontier row, a finished one already in history) come through
    0013 with their definition's kind, and the READY one is claimed."""
    async with empty_database(pg_url, "t_upgrade_0013") as (url, _, _):
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                b"create table schema_migrations (version integer primary key, name text not null,"
                b" checksum text not null, applied_at timestamptz not null default now())"
            )
            for m in load_migrations():
                if m.version >= 13:
                    break
                async with conn.transaction():
                    await conn.execute(m.sql.encode())
                    await conn.execute(
                        b"insert into schema_migrations (version, name, checksum) values (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
            d = uuid.uuid4()
            ready, done = uuid.uuid4(), uuid.uuid4()
            await conn.execute(b"insert into namespaces (namespace_id) values ('up')")
            await conn.execute(
                b"insert into job_definitions (def_id, namespace_id, name, version, kind, misfire_policy,"
                b" overlap_policy, starting_deadline, max_attempts, backoff_initial, backoff_max,"
                b" backoff_multiplier, execution_timeout, default_priority, delay_after_parents)"
                b" values (%s, 'up', 'n', 1, 'emails', 'skip', 'allow',"
                b" '0', 3, '1s', '1m', 2, '1h', 0, '0')",
                (d,),
            )
            await conn.execute(
                b"insert into jobs (job_id, namespace_id, def_id, key, state, max_attempts, due_time)"
                b" values (%s, 'up', %s, 'n', 'READY', 3, now())",
                (ready, d),
            )
            await conn.execute(
                b"insert into frontier (job_id, namespace_id, kind, priority, due_time)"
                b" values (%s, 'up', 'emails', 0, now())",
                (ready,),
            )
            await conn.execute(
                b"insert into jobs_history (job_id, namespace_id, def_id, key, state, max_attempts)"
                b" values (%s, 'up', %s, 'n', 'SUCCEEDED', 3)",
                (done, d),
            )

        assert (await migrate(url))[0] == "0013_ready_jobs_claimed_from_jobs.sql"

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            kinds = await fetch_all(
                conn, b"select job_id, kind from jobs union all select job_id, kind from jobs_history"
            )
            assert sorted(kinds) == sorted([(ready, "emails"), (done, "emails")])
            assert await fetch_value(conn, b"select to_regclass('frontier') is null") is True
            claimed = await fetch_all(
                conn,
                q("claim_jobs_in"),
                {
                    "namespaces": ["up"],
                    "kinds": ["emails"],
                    "n": 16,
                    "lease": timedelta(seconds=30),
                    "worker_id": "w",
                },
            )
            assert len(claimed) == 1
            state = await fetch_value(
                conn, b"select state || ' ' || worker_id from jobs where job_id = %s", (ready,)
            )
            assert state == "RUNNING w"


async def test_job_definitions_reject_update(aconn: AConn) -> None:
    await _insert_namespace(aconn, "team-a")
    def_id = await _insert_definition(aconn, "team-a")

    with pytest.raises(errors.IntegrityConstraintViolation) as caught:
        await aconn.execute(b"update job_definitions set kind = 'other' where def_id = %s::uuid", (def_id,))
    exc = caught.value
    assert exc.sqlstate == "23000"
    assert exc.diag.constraint_name == "job_definitions_immutable"
    assert exc.diag.message_primary == "rows of job_definitions are immutable"
    kind = await fetch_value(aconn, b"select kind from job_definitions where def_id = %s::uuid", (def_id,))
    assert kind == "report"

    domain = translate(exc)
    assert isinstance(domain, FailedPrecondition)
    assert domain.reason == "DEFINITION_IMMUTABLE"
    assert domain.message == "job definitions are immutable; create a new version instead"
    # No table or constraint names reach a client.
    assert domain.metadata == {}


async def test_job_definitions_allow_delete(aconn: AConn) -> None:
    await _insert_namespace(aconn, "team-a")
    def_id = await _insert_definition(aconn, "team-a")
    cur = await aconn.execute(b"delete from job_definitions where def_id = %s::uuid", (def_id,))
    assert cur.rowcount == 1


async def _reloptions(conn: AConn, table: str) -> set[str]:
    options = await fetch_value(
        conn,
        b"select reloptions from pg_class where relname = %s::text and relnamespace = 'public'::regnamespace",
        (table,),
    )
    assert isinstance(options, list)
    return set(options)


async def test_queue_tables_have_aggressive_autovacuum(aconn: AConn) -> None:
    assert await _reloptions(aconn, "jobs") == {
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_vacuum_cost_delay=0",
        "autovacuum_analyze_scale_factor=0.02",
    }


# --- database errors -> domain errors -------------------------------------------


async def test_translate_duplicate_namespace(aconn: AConn) -> None:
    await aconn.execute(b"insert into namespaces (namespace_id) values ('team-a')")
    with pytest.raises(errors.UniqueViolation) as caught:
        await aconn.execute(b"insert into namespaces (namespace_id) values ('team-a')")
    assert caught.value.diag.constraint_name == "namespaces_pkey"

    domain = translate(caught.value)
    assert isinstance(domain, AlreadyExists)
    assert domain.reason == "NAMESPACE_EXISTS"
    assert domain.message == "namespace already exists"
    assert domain.metadata == {}


async def test_translate_duplicate_dependency(aconn: AConn) -> None:
    dag_id, parent, child = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    insert = b"insert into dependencies values (%s::uuid, %s::uuid, %s::uuid)"
    await aconn.execute(insert, (dag_id, parent, child))
    with pytest.raises(errors.UniqueViolation) as caught:
        await aconn.execute(insert, (dag_id, parent, child))

    domain = translate(caught.value)
    assert isinstance(domain, AlreadyExists)
    assert domain.reason == "DEPENDENCY_EXISTS"


async def test_translate_makes_unmapped_errors_one_internal_database_error(aconn: AConn) -> None:
    node = uuid.uuid4()
    with pytest.raises(errors.CheckViolation) as caught:
        await aconn.execute(
            b"insert into dependencies values (%s::uuid, %s::uuid, %s::uuid)", (uuid.uuid4(), node, node)
        )
    assert caught.value.diag.constraint_name == "dependencies_no_self_edge"
    domain = translate(caught.value)
    # Nothing above storage/ sees psycopg; clients see INTERNAL, no detail.
    assert isinstance(domain, DatabaseError)
    assert (domain.reason, domain.message) == ("DATABASE_ERROR", "internal error")


def test_translate_connection_failure_is_unavailable() -> None:
    domain = translate(psycopg.OperationalError("connection refused"))
    assert isinstance(domain, Unavailable)
    assert domain.reason == "DATABASE_UNAVAILABLE"
    assert domain.message == "database unavailable: OperationalError"
