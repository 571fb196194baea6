"""Round trips, read off libpq's own trace of the connection: a round trip
is a run of messages the client sends before it reads the server's answers.

- A pipelined transaction whose answers are read after its block (every
  dispatcher cycle of plain successes) is one: BEGIN, the statements and
  COMMIT together. It commits only when its block ends well.
- A unary CompleteJob success is one (its statement and read-back in one
  implicit transaction); a result that statement passes over (a repeat)
  takes the lock-and-decide path after it, two more.
- Unary completions, like the dispatcher's cycles, run their statements on
  generic plans rather than planning them for each call.
- A small CreateDag is one once this process knows its versions, and two
  (its steps) before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TextIO

import psycopg
import pytest
from psycopg import pq

from chronosched.v1 import job_pb2
from chronosched_server.errors import DomainError
from chronosched_server.storage import dags as storage_dags
from chronosched_server.storage import definitions as storage_definitions
from chronosched_server.storage import jobs as storage_jobs
from chronosched_server.storage.db import Conn, Database
from tests.support.builders import definition, namespace
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)


class Traced:
    """A one-connection Database whose connection libpq traces into a file."""

    def __init__(self, db: Database, out: TextIO) -> None:
        self.db = db
        self.out = out
        self.read = 0

    async def start(self) -> None:
        async with self.db.pool.connection() as conn:
            conn.pgconn.trace(self.out.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    async def stop(self) -> None:
        # libpq buffers its trace; untrace flushes it.
        async with self.db.pool.connection() as conn:
            conn.pgconn.untrace()

    def _new_lines(self) -> str:
        with open(self.out.name) as trace:
            trace.seek(self.read)
            text = trace.read()
            self.read = trace.tell()
        return text

    async def trips(self) -> int:
        """Round trips made since the last call: runs of frontend ("F")
        messages that the backend ("B") answered."""
        await self.stop()
        text = self._new_lines()
        await self.start()
        trips, sending = 0, False
        for line in text.splitlines():
            sender = line.split("\t", 1)[0]
            if sender == "F":
                sending = True
            elif sender == "B" and sending:
                trips, sending = trips + 1, False
        return trips


@pytest.fixture
async def traced(database_url: str, tmp_path: Path) -> AsyncIterator[Traced]:
    db = Database(database_url, min_size=1, max_size=1)
    await db.open()
    with (tmp_path / "libpq.trace").open("w") as out:
        tracing = Traced(db, out)
        await tracing.start()
        try:
            yield tracing
        finally:
            await tracing.stop()
            await db.close()


@pytest.fixture
async def scratch(aconn: psycopg.AsyncConnection[tuple[object, ...]]) -> Callable[[], Awaitable[list[int]]]:
    """A table of numbers; returns what another connection sees in it."""
    await aconn.execute("create table scratch (n int not null)")

    async def seen() -> list[int]:
        cur = await aconn.execute("select n from scratch order by n")
        return [int(str(row[0])) for row in await cur.fetchall()]

    return seen


async def test_a_pipelined_transaction_read_after_its_block_is_one_round_trip(
    traced: Traced, scratch: Callable[[], Awaitable[list[int]]]
) -> None:
    async with traced.db.pipelined_transaction() as conn:
        await conn.execute("insert into scratch values (1), (2)")
        counted = await conn.execute("select count(*) as n from scratch")
    assert (await counted.fetchall()) == [{"n": 2}]
    assert await traced.trips() == 1
    assert await scratch() == [1, 2]


async def test_an_answer_read_inside_the_block_costs_one_more(
    traced: Traced, scratch: Callable[[], Awaitable[list[int]]]
) -> None:
    async with traced.db.pipelined_transaction() as conn:
        await conn.execute("insert into scratch values (1)")
        rows = await (await conn.execute("select count(*) as n from scratch")).fetchall()
        await conn.execute("insert into scratch values (%s)", (rows[0]["n"] + 1,))
    assert await traced.trips() == 2
    assert await scratch() == [1, 2]


async def _raise_midway(conn: Conn) -> None:
    raise RuntimeError("the caller changed its mind")


async def _bad_row(conn: Conn) -> None:
    await conn.execute("insert into scratch values (null)")
    await conn.execute("insert into scratch values (3)")


@pytest.mark.parametrize(
    ("trouble", "error"),
    [(_raise_midway, RuntimeError), (_bad_row, DomainError)],
    ids=["the block raises", "a statement fails"],
)
async def test_a_transaction_that_goes_wrong_commits_nothing(
    traced: Traced,
    scratch: Callable[[], Awaitable[list[int]]],
    trouble: Callable[[Conn], Awaitable[None]],
    error: type[Exception],
) -> None:
    async def attempt() -> None:
        async with traced.db.pipelined_transaction() as conn:
            await conn.execute("insert into scratch values (1)")
            await trouble(conn)

    with pytest.raises(error):
        await attempt()
    assert await scratch() == []
    # The connection went back to the pool idle and serves the next one.
    async with traced.db.pipelined_transaction() as conn:
        await conn.execute("insert into scratch values (2)")
    assert await scratch() == [2]


async def ready_job(api: Stubs) -> tuple[str, uuid.UUID]:
    ns = await namespace(api)
    d = await definition(api, ns)
    made = await api.jobs.EnqueueJobs(
        job_pb2.EnqueueJobsRequest(namespace_id=ns, jobs=[job_pb2.JobRun(def_id=d.def_id)])
    )
    return ns, uuid.UUID(made.job_ids[0])


async def test_a_success_is_one_round_trip_and_reads_its_own_write(api: Stubs, traced: Traced) -> None:
    ns, job_id = await ready_job(api)
    job = await storage_jobs.complete(traced.db, job_id, None, {"rows": 3}, namespace_id=ns)
    # The read-back rides in the success's implicit transaction and sees it.
    assert (job.job_id, job.state, job.result) == (job_id, "SUCCEEDED", {"rows": 3})
    assert job.end_time is not None
    assert await traced.trips() == 1


async def test_a_repeat_takes_the_full_path_and_changes_nothing(api: Stubs, traced: Traced) -> None:
    ns, job_id = await ready_job(api)
    first = await storage_jobs.complete(traced.db, job_id, None, {"n": 1}, namespace_id=ns)
    assert await traced.trips() == 1
    # The job is SUCCEEDED now: the one-statement path passes over the
    # repeat (one round trip), and the lock-and-decide path (two more)
    # answers it as a duplicate, leaving the first result and end time.
    again = await storage_jobs.complete(traced.db, job_id, None, {"n": 2}, namespace_id=ns)
    assert (again.state, again.result, again.end_time) == ("SUCCEEDED", {"n": 1}, first.end_time)
    assert await traced.trips() == 3


async def test_unary_completions_run_on_generic_plans(api: Stubs, traced: Traced) -> None:
    """CompleteJob and FailJob run the dispatcher's statements as its cycles
    do, on generic plans: left to choose, PostgreSQL planned `succeed_jobs`
    anew for each call. Read off the one connection's prepared statements
    once psycopg has prepared them (after its fifth run of each)."""
    ns = await namespace(api)
    d = await definition(api, ns)
    made = await api.jobs.EnqueueJobs(
        job_pb2.EnqueueJobsRequest(namespace_id=ns, jobs=[job_pb2.JobRun(def_id=d.def_id)] * 24)
    )
    ids = [uuid.UUID(job_id) for job_id in made.job_ids]
    for job_id in ids[:12]:
        done = await storage_jobs.complete(traced.db, job_id, None, {}, namespace_id=ns)
        assert done.state == "SUCCEEDED"
    for job_id in ids[12:]:
        failed = await storage_jobs.fail(traced.db, job_id, None, "no", non_retryable=True, namespace_id=ns)
        assert failed.state == "FAILED"
    async with traced.db.pool.connection() as conn:
        cur = await conn.execute(
            "select statement, generic_plans, custom_plans from pg_prepared_statements"
            " where statement like '%set state = ''SUCCEEDED'', result = h.result%'"
            " or statement like '%where j.job_id = any($1::uuid[])%order by array_position%'"
        )
        plans = await cur.fetchall()
    # The success's statement and the read-back both paths share.
    assert len(plans) == 2, plans
    assert [(row["generic_plans"] > 0, row["custom_plans"]) for row in plans] == [(True, 0)] * len(plans)


async def test_a_small_create_dag_is_one_round_trip_once_its_versions_are_known(
    api: Stubs, traced: Traced, aconn: psycopg.AsyncConnection[tuple[object, ...]]
) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    def_id = uuid.UUID(d.def_id)
    jobs = [storage_dags.NewJob(key, def_id, None, None) for key in ("a", "b")]
    storage_definitions._VERSIONS.clear()
    made = []
    for trips in (2, 1):
        dag = await storage_dags.create(traced.db, ns, "t", jobs, [(0, 1)], True, "")
        assert await traced.trips() == trips
        made.append(dag.dag_id)
    cur = await aconn.execute(
        "select dag_id, key, state, pending_parents, due_time is not null from jobs"
        " where dag_id = any(%s) order by dag_id, key",
        (made,),
    )
    assert await cur.fetchall() == [
        (dag_id, key, state, parents, due)
        for dag_id in made
        for key, state, parents, due in (("a", "READY", 0, True), ("b", "PENDING", 1, False))
    ]
