"""Retention on the real PostgreSQL: Prune's default cutoff, the retention
loop (old finished work moves to history in bounded batches, recent and
unfinished work stays), one loop holding the lock at a time, `retention 0`,
and a loop that outlives database errors.

Finished work is made old by moving its end times back with SQL; the loops
are driven with `run_once()` or started with a short interval and waited on
through their pass counters and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2

from chronosched.v1 import admin_pb2, dag_pb2, definition_pb2, job_pb2
from chronosched_server.scheduler.retention import Retention, RetentionConfig
from chronosched_server.storage import admin
from chronosched_server.storage.admin import Pruned
from chronosched_server.storage.db import Database
from tests.support.builders import dag, dag_jobs, definition, fails, namespace
from tests.support.server import Stubs, serving
from tests.support.waiting import eventually, poll, stays

pytestmark = pytest.mark.timeout(60)

WEEK = timedelta(days=7)
# No loop in the servers these tests talk to, unless a test starts one.
NO_RETENTION: dict[str, Any] = {"retention": timedelta(0), "scheduler_enabled": False}


async def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query.encode(), params)
        return await cur.fetchall() if cur.description else []


async def age(url: str, days: float, *, dag_id: str | None = None, job_id: str | None = None) -> None:
    """Move a finished DAG's end time (and its jobs'), or a job's, `days` back."""
    back = timedelta(days=days)
    if dag_id is not None:
        await sql(url, "update dags set end_time = end_time - %s where dag_id = %s", (back, dag_id))
        await sql(url, "update jobs set end_time = end_time - %s where dag_id = %s", (back, dag_id))
    if job_id is not None:
        await sql(url, "update jobs set end_time = end_time - %s where job_id = %s", (back, job_id))


@dataclass
class Work:
    """What a test made: ids by what should become of them."""

    api: Stubs
    url: str
    ns: str
    def_id: str

    async def finished_dag(self, days_old: float) -> str:
        """A SUCCEEDED two-job DAG (a -> b) that ended `days_old` days ago."""
        created = await dag(self.api, self.ns, self.def_id, "ab", [("a", "b")])
        jobs = await dag_jobs(self.api, self.ns, created.dag_id)
        for key in "ab":
            await self.api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs[key].job_id))
        await age(self.url, days_old, dag_id=created.dag_id)
        return created.dag_id

    async def finished_job(self, days_old: float) -> str:
        """A SUCCEEDED standalone job that ended `days_old` days ago."""
        tick = await self.api.definitions.Tick(
            definition_pb2.TickRequest(namespace_id=self.ns, def_id=self.def_id)
        )
        await self.api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=tick.job_id))
        await age(self.url, days_old, job_id=tick.job_id)
        return tick.job_id

    async def failed_dag_still_running(self, days_old: float) -> str:
        """A FAILED DAG (a failed for good) whose other branch (x) has not run:
        over, but not finished, whatever its end time says."""
        created = await dag(self.api, self.ns, self.def_id, "ax", [])
        jobs = await dag_jobs(self.api, self.ns, created.dag_id)
        await self.api.jobs.FailJob(
            job_pb2.FailJobRequest(job_id=jobs["a"].job_id, error="boom", non_retryable=True)
        )
        await age(self.url, days_old, dag_id=created.dag_id)
        return created.dag_id

    async def running_dag(self) -> str:
        return (await dag(self.api, self.ns, self.def_id, "ab", [("a", "b")])).dag_id


@contextlib.asynccontextmanager
async def work_on(url: str, **config: Any) -> AsyncIterator[Work]:
    async with serving(url, **{**NO_RETENTION, **config}) as api:
        ns = await namespace(api, f"ret-{uuid.uuid4().hex[:8]}")
        d = await definition(api, ns)
        yield Work(api, url, ns, d.def_id)


async def live_dags(url: str) -> set[str]:
    return {str(row[0]) for row in await sql(url, "select dag_id from dags")}


async def live_jobs(url: str) -> set[str]:
    return {str(row[0]) for row in await sql(url, "select job_id from jobs where dag_id is null")}


async def history_counts(url: str) -> tuple[int, int, int]:
    [row] = await sql(
        url,
        "select (select count(*) from dags_history), (select count(*) from jobs_history),"
        " (select count(*) from dependencies_history)",
    )
    return int(row[0]), int(row[1]), int(row[2])


@contextlib.asynccontextmanager
async def loop_on(url: str, **config: Any) -> AsyncIterator[Retention]:
    """A retention loop with its own pool, not started; stopped afterwards."""
    db = Database(url, min_size=1, max_size=2)
    await db.open()
    loop = Retention(db, url, RetentionConfig(**{"retention": WEEK, **config}))
    try:
        yield loop
    finally:
        await loop.stop()
        await db.close()


# --- Prune's default ---------------------------------------------------------


async def test_an_empty_prune_moves_only_what_finished_more_than_7_days_ago(database_url: str) -> None:
    async with work_on(database_url) as w:
        old_dag, old_job = await w.finished_dag(8), await w.finished_job(8)
        recent_dag, recent_job = await w.finished_dag(6), await w.finished_job(6)
        running = await w.running_dag()

        pruned = await w.api.admin.Prune(admin_pb2.PruneRequest())

        assert (pruned.dags_pruned, pruned.jobs_pruned, pruned.dependencies_pruned) == (1, 3, 1)
        assert await live_dags(database_url) == {recent_dag, running}
        assert await live_jobs(database_url) == {recent_job}
        # Pruned work is still found one by one.
        got = await w.api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=w.ns, dag_id=old_dag))
        assert got.state == dag_pb2.Dag.STATE_SUCCEEDED
        job = await w.api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=w.ns, job_id=old_job))
        assert job.state == job_pb2.Job.STATE_SUCCEEDED
        # An explicit older_than still wins over the default, and is still checked.
        shorter = await w.api.admin.Prune(
            admin_pb2.PruneRequest(older_than=duration_pb2.Duration(seconds=5 * 86400))
        )
        assert (shorter.dags_pruned, shorter.jobs_pruned) == (1, 3)
        bad = await fails(
            w.api.admin.Prune(admin_pb2.PruneRequest(older_than=duration_pb2.Duration(seconds=-5))),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad.fields == ["older_than"] and bad.why == {"older_than": "OUT_OF_RANGE"}


async def test_a_manual_prune_runs_batches_until_none_is_full(database_url: str) -> None:
    async with work_on(database_url) as w:
        for _ in range(3):
            await w.finished_dag(8)
        for _ in range(5):
            await w.finished_job(8)
        # Batches of 2: the totals add up over every batch.
        total = await admin.prune(w.api.server.db, WEEK, w.ns, batch=2)
        assert total == Pruned(dags=3, jobs=11, dependencies=3)
        assert await history_counts(database_url) == (3, 11, 3)
        assert await admin.prune(w.api.server.db, WEEK, w.ns, batch=2) == Pruned()


# --- the retention loop --------------------------------------------------------


async def test_the_loop_prunes_old_finished_work_in_bounded_batches(database_url: str) -> None:
    async with work_on(database_url) as w:
        old_dags = {await w.finished_dag(8) for _ in range(3)}
        old_jobs = {await w.finished_job(8) for _ in range(5)}
        keep_dags = {
            await w.finished_dag(6),
            await w.failed_dag_still_running(30),
            await w.running_dag(),
        }
        keep_jobs = {await w.finished_job(6)}
        assert await live_dags(database_url) == old_dags | keep_dags

        async with loop_on(database_url, batch=2) as loop:
            result = await loop.run_once()

        assert result.leader
        # At most 2 standalone jobs a batch, and DAGs until their jobs reach 2
        # (here one two-job DAG a batch); the third batch is not full, so the
        # pass ends there.
        assert result.batches == [
            Pruned(dags=1, jobs=4, dependencies=1),
            Pruned(dags=1, jobs=4, dependencies=1),
            Pruned(dags=1, jobs=3, dependencies=1),
        ]
        assert await live_dags(database_url) == keep_dags
        assert await live_jobs(database_url) == keep_jobs
        assert await history_counts(database_url) == (3, 11, 3)
        moved = {str(r[0]) for r in await sql(database_url, "select dag_id from dags_history")}
        assert moved == old_dags
        in_history = "select job_id from jobs_history where dag_id is null"
        assert {str(r[0]) for r in await sql(database_url, in_history)} == old_jobs


async def test_a_batch_skips_rows_others_hold_instead_of_waiting(database_url: str) -> None:
    async with work_on(database_url) as w:
        held_dag, free_dag = await w.finished_dag(8), await w.finished_dag(8)
        held_job, free_job = await w.finished_job(8), await w.finished_job(8)
        # Another transaction (a result being applied, a manual prune) holds
        # one old DAG and one old job.
        async with await psycopg.AsyncConnection.connect(database_url) as holder, holder.transaction():
            await holder.execute(b"select 1 from dags where dag_id = %s for update", (held_dag,))
            await holder.execute(b"select 1 from jobs where job_id = %s for update", (held_job,))
            async with loop_on(database_url) as loop:
                # Waiting on the held rows would run into the timeout.
                result = await asyncio.wait_for(loop.run_once(), 10)
            assert result.pruned == Pruned(dags=1, jobs=3, dependencies=1)
            assert await live_dags(database_url) == {held_dag}
            assert await live_jobs(database_url) == {held_job}
        assert free_dag not in await live_dags(database_url) and free_job not in await live_jobs(database_url)
        # Released: the next prune takes them.
        assert await admin.prune(w.api.server.db, WEEK, None) == Pruned(dags=1, jobs=3, dependencies=1)


async def test_a_started_loop_prunes_by_itself(database_url: str) -> None:
    async with work_on(database_url) as w:
        keep = await w.finished_dag(1)
        # The server's own loop, as `chronosched server` runs it.
        async with serving(
            database_url, retention=WEEK, retention_interval_s=0.05, retention_batch=2
        ) as other:
            loop = other.server.retention
            await poll(lambda: _passes(loop, 1), within=10, what="a first pass")
            old = await w.finished_dag(8), await w.finished_job(8)

            async def gone() -> bool:
                return old[0] not in await live_dags(database_url) and not await live_jobs(database_url)

            await poll(gone, within=10, what="the old DAG and job in history")
            assert await live_dags(database_url) == {keep}
            assert loop.pruned == Pruned(dags=1, jobs=3, dependencies=1)


async def _passes(loop: Retention, n: int) -> bool:
    return loop.passes >= n


async def test_only_one_loop_holds_the_lock_at_a_time(database_url: str) -> None:
    async with work_on(database_url) as w:
        old = {await w.finished_dag(8) for _ in range(2)}
        async with (
            serving(database_url, retention=WEEK, retention_interval_s=0.05) as a,
            serving(database_url, retention=WEEK, retention_interval_s=0.05) as b,
        ):
            loops = [a.server.retention, b.server.retention]
            await poll(lambda: _all_passed(loops, 3), within=10, what="three passes of both servers' loops")
            leaders = [loop for loop in loops if loop.leader]
            assert len(leaders) == 1
            [leader] = leaders
            [follower] = [loop for loop in loops if loop is not leader]
            assert follower.pruned == Pruned()
            assert not old & await live_dags(database_url)
            assert leader.pruned == Pruned(dags=2, jobs=4, dependencies=2)

            # The leader's replica stops: the other takes the lock over at its next pass.
            await leader.stop()
            await eventually(lambda: follower.leader, within=10, what="the other loop to take the lock")
            late = await w.finished_job(8)

            async def late_gone() -> bool:
                return late not in await live_jobs(database_url)

            await poll(late_gone, within=10, what="the new leader to prune")
            assert follower.pruned.jobs == 1


async def _all_passed(loops: list[Retention], n: int) -> bool:
    return all(loop.passes >= n for loop in loops)


async def test_a_loop_without_the_lock_prunes_nothing(database_url: str) -> None:
    async with work_on(database_url) as w:
        old = await w.finished_job(8)
        async with loop_on(database_url) as first, loop_on(database_url) as second:
            # The lock is taken before anything is pruned.
            assert (await first.run_once()).leader
            another = await w.finished_job(8)
            result = await second.run_once()
            assert not result.leader and result.batches == []
            assert another in await live_jobs(database_url)
            await first.stop()
            taken = await second.run_once()
            assert taken.leader and taken.pruned.jobs == 1
        assert not {old, another} & await live_jobs(database_url)


async def test_retention_0_never_prunes(database_url: str) -> None:
    async with work_on(database_url) as w:
        old_dag, old_job = await w.finished_dag(365), await w.finished_job(365)
        async with serving(database_url, retention=timedelta(0), retention_interval_s=0.01) as off:
            loop = off.server.retention
            assert not loop.enabled
            result = await loop.run_once()
            assert not result.leader and result.batches == []
            # Not started at all: no pass, and the lock stays free for others.
            await stays(lambda: loop.passes == 0, for_s=0.3, what="no retention pass")
            assert not loop.leader
            async with loop_on(database_url) as other:
                assert (await other.lock.acquire()) is True
            assert old_dag in await live_dags(database_url)
            assert old_job in await live_jobs(database_url)


async def test_the_loop_outlives_database_errors(database_url: str) -> None:
    async with work_on(database_url) as w:
        old = await w.finished_job(8)
        # Every batch fails while the history table is away.
        await sql(database_url, "alter table jobs_history rename to jobs_history_away")
        async with loop_on(database_url, interval_s=0.05, retry_s=0.01) as loop:
            await loop.start()
            await eventually(lambda: loop.failures >= 3, within=10, what="three failed passes")
            assert old in await live_jobs(database_url)
            await sql(database_url, "alter table jobs_history_away rename to jobs_history")

            async def moved() -> bool:
                return old not in await live_jobs(database_url)

            await poll(moved, within=10, what="the loop to prune once the table is back")
            assert loop.pruned.jobs == 1
