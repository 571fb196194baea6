"""DeleteNamespace: refused with counts while anything could still run or
fire; otherwise the namespace goes with all its history in one transaction,
and a concurrent write either lands first (and the delete is refused) or
finds the namespace gone: never a row left behind in a deleted namespace."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from chronosched.v1 import (
    admin_pb2,
    dag_pb2,
    definition_pb2,
    job_pb2,
    namespace_pb2,
    schedule_pb2,
)
from chronosched_server.scheduler import Scheduler
from chronosched_server.storage.db import Database
from tests.support.builders import dag, dag_jobs, definition, fails, namespace
from tests.support.locks import AConn, open_transaction, until_waiting
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(90)

PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND

# Every table that holds rows of a namespace, and how to count them.
_BY_NAMESPACE = [
    "namespaces",
    "job_definitions",
    "request_ids",
    "schedules",
    "cron_fires",
    "dags",
    "jobs",
    "dags_history",
    "jobs_history",
]


async def rows_of(conn: AConn, ns: str) -> dict[str, int]:
    """table -> rows of namespace `ns` (edges counted through their DAGs)."""
    out: dict[str, int] = {}
    for table in _BY_NAMESPACE:
        cur = await conn.execute(f"select count(*) from {table} where namespace_id = %s::text", (ns,))
        row = await cur.fetchone()
        assert row is not None
        out[table] = row[0]
    for table, dags in (("dependencies", "dags"), ("dependencies_history", "dags_history")):
        cur = await conn.execute(
            f"select count(*) from {table} e join {dags} d using (dag_id) where d.namespace_id = %s::text",
            (ns,),
        )
        row = await cur.fetchone()
        assert row is not None
        out[table] = row[0]
    return out


async def orphans(conn: AConn) -> dict[str, int]:
    """Rows, in any table, of a namespace that does not exist (should be none)."""
    out: dict[str, int] = {}
    for table in _BY_NAMESPACE[1:]:
        cur = await conn.execute(
            f"select count(*) from {table} t"
            " where not exists (select 1 from namespaces n where n.namespace_id = t.namespace_id)"
        )
        row = await cur.fetchone()
        assert row is not None
        if row[0]:
            out[table] = row[0]
    return out


async def delete(api: Stubs, ns: str) -> Any:
    return await api.namespaces.DeleteNamespace(namespace_pb2.DeleteNamespaceRequest(namespace_id=ns))


async def retire(api: Stubs, ns: str, def_id: str) -> definition_pb2.JobDefinition:
    return await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=def_id)
    )


async def tick(api: Stubs, ns: str, def_id: str) -> job_pb2.Job:
    return await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=def_id))


def counts(failure: Any) -> tuple[int, int, int]:
    m = failure.metadata
    return int(m["live_dags"]), int(m["unfinished_jobs"]), int(m["unretired_definitions"])


# --- the precondition ------------------------------------------------------------------------


async def test_delete_is_refused_while_work_or_live_definitions_are_left(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "work", max_attempts=1)
    chain = await dag(api, ns, d.def_id, "ab", [("a", "b")])  # a READY, b PENDING
    split = await dag(api, ns, d.def_id, "xy", [])  # two independent branches
    standalone = await tick(api, ns, d.def_id)

    refused = await fails(delete(api, ns), PRECONDITION)
    assert refused.reason == "NAMESPACE_NOT_EMPTY" and refused.metadata["namespace_id"] == ns
    assert counts(refused) == (2, 5, 1)
    assert "2 live DAGs, 5 unfinished jobs, 1 unretired definition" in refused.message

    # A DAG that FAILED while another branch still runs is still live.
    x = (await dag_jobs(api, ns, split.dag_id))["x"]
    await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=x.job_id, error="no", non_retryable=True))
    failed = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=split.dag_id))
    assert failed.state == dag_pb2.Dag.STATE_FAILED and failed.unfinished_job_count == 1
    assert counts(await fails(delete(api, ns), PRECONDITION)) == (2, 4, 1)

    await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=chain.dag_id))
    await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=split.dag_id))
    assert counts(await fails(delete(api, ns), PRECONDITION)) == (0, 1, 1)
    await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=standalone.job_id, error="no", non_retryable=True))
    assert counts(await fails(delete(api, ns), PRECONDITION)) == (0, 0, 1)
    await retire(api, ns, d.def_id)
    await delete(api, ns)

    gone = await fails(
        api.namespaces.GetNamespace(namespace_pb2.GetNamespaceRequest(namespace_id=ns)), NOT_FOUND
    )
    assert gone.reason == "NAMESPACE_NOT_FOUND"
    assert (await fails(delete(api, ns), NOT_FOUND)).reason == "NAMESPACE_NOT_FOUND"


async def test_delete_errors(api: Stubs) -> None:
    bad = await fails(delete(api, "Bad!"), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad.fields == ["namespace_id"]
    assert (await fails(delete(api, "nope"), NOT_FOUND)).reason == "NAMESPACE_NOT_FOUND"
    # An empty, new namespace goes at once.
    ns = await namespace(api, "fresh")
    await delete(api, ns)


# --- what goes with it ----------------------------------------------------------------------------


async def _fill(api: Stubs, ns: str, database_url: str) -> None:
    """Finished work of every kind in `ns` (live and in history), a fire
    ledger and idempotency keys, then every definition retired."""
    beat = await definition(api, ns, "beat", cron_spec="* * * * * *")
    manual = await definition(api, ns, "manual")
    # The fire ledger: one tick, fired by a scheduler of our own.
    db = Database(database_url, min_size=1, max_size=2)
    await db.open()
    try:
        first_tick = beat.next_fire_times[0].ToDatetime(tzinfo=UTC)
        scheduler = Scheduler(db, clock=lambda: first_tick + timedelta(milliseconds=1))
        assert (await scheduler.run_once()).fired == 1
    finally:
        await db.close()
    for job in await _jobs(api, ns):
        await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=job.job_id))
    # A finished DAG moved to history, and one left live.
    for name in ("pruned", "kept"):
        created = await api.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=ns,
                name=name,
                jobs=[
                    dag_pb2.JobSpec(key="a", def_id=manual.def_id),
                    dag_pb2.JobSpec(key="b", def_id=manual.def_id),
                ],
                dependencies=[dag_pb2.DagEdge(parent="a", child="b")],
                start=True,
                request_id=f"dag-{name}",
            )
        )
        for key in "ab":
            job = (await dag_jobs(api, ns, created.dag_id))[key]
            await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=job.job_id))
        if name == "pruned":
            await api.admin.Prune(
                admin_pb2.PruneRequest(older_than=duration_pb2.Duration(seconds=0), namespace_id=ns)
            )
    # A finished standalone job (with an idempotency key).
    job = await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=ns, def_id=manual.def_id, request_id="tick-1")
    )
    await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=job.job_id, error="done", non_retryable=True))
    await api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id=ns, name="manual"))
    await retire(api, ns, beat.def_id)
    await retire(api, ns, manual.def_id)


async def _jobs(api: Stubs, ns: str) -> list[job_pb2.Job]:
    return list((await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, page_size=1000))).jobs)


async def test_delete_takes_finished_work_history_and_retired_definitions_with_it(
    api_without_scheduler: Stubs, database_url: str, aconn: AConn
) -> None:
    # The server's own scheduler is off: the test's fires the one tick.
    api = api_without_scheduler
    ns = await namespace(api, "doomed")
    kept = await namespace(api, "kept")
    await _fill(api, ns, database_url)
    await _fill(api, kept, database_url)
    before = await rows_of(aconn, ns)
    # Everything the delete has to take is there (the test can fail)...
    assert all(before[t] > 0 for t in before if t != "schedules"), before
    assert before["schedules"] == 0  # a retire forgets a pause

    await delete(api, ns)

    assert await rows_of(aconn, ns) == dict.fromkeys(before, 0)
    # ...and the other namespace lost nothing.
    assert await rows_of(aconn, kept) == before
    assert await orphans(aconn) == {}

    # The id is free again, and the namespace starts empty.
    await namespace(api, ns)
    listed = await api.definitions.ListDefinitions(definition_pb2.ListDefinitionsRequest(namespace_id=ns))
    assert list(listed.definitions) == [] and await _jobs(api, ns) == []


# --- races -------------------------------------------------------------------------------------------


async def test_a_write_in_flight_keeps_the_delete_waiting_and_then_refused(
    api: Stubs, database_url: str, aconn: AConn
) -> None:
    ns = await namespace(api)
    async with open_transaction(database_url) as held:
        # CreateDefinition holds the namespace, then waits here for the name's lock.
        await held.execute("select pg_advisory_xact_lock(hashtextextended(%s::text, 0))", (f"{ns}/late",))
        creating = asyncio.create_task(definition(api, ns, "late"))
        await until_waiting(aconn, 1, "CreateDefinition behind the name's lock")
        deleting = asyncio.create_task(delete(api, ns))
        await until_waiting(aconn, 2, "the delete behind the write")
    created = await creating
    refused = await fails(deleting, PRECONDITION)
    assert counts(refused) == (0, 0, 1)
    got = await api.definitions.GetDefinition(
        definition_pb2.GetDefinitionRequest(namespace_id=ns, def_id=created.def_id)
    )
    assert got.name == "late"


async def test_writes_behind_a_delete_in_flight_find_no_namespace(
    api: Stubs, database_url: str, aconn: AConn
) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "old")
    finished = await dag(api, ns, d.def_id, "a", [])
    job = (await dag_jobs(api, ns, finished.dag_id))["a"]
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=job.job_id))
    await retire(api, ns, d.def_id)

    async with open_transaction(database_url) as held:
        # The delete will have locked the namespace and counted when it
        # reaches the DAG row held here.
        await held.execute("select 1 from dags where dag_id = %s::uuid for share", (finished.dag_id,))
        deleting = asyncio.create_task(delete(api, ns))
        await until_waiting(aconn, 1, "the delete behind the finished DAG")
        writes = [
            asyncio.create_task(definition(api, ns, "new")),
            asyncio.create_task(definition(api, ns, "old")),
            asyncio.ensure_future(
                api.dags.CreateDag(dag_pb2.CreateDagRequest(namespace_id=ns, name="new", request_id="r"))
            ),
            asyncio.ensure_future(
                api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id=ns, name="old"))
            ),
        ]
        await until_waiting(aconn, 1 + len(writes), "the writes behind the delete")
    await deleting
    for write in writes:
        failure = await fails(write, NOT_FOUND)
        assert failure.reason == "NAMESPACE_NOT_FOUND", failure.message
    assert set((await rows_of(aconn, ns)).values()) == {0}
    assert await orphans(aconn) == {}


async def test_concurrent_create_and_delete_exactly_one_wins(api: Stubs, aconn: AConn) -> None:
    rng = random.Random(7)
    outcomes = {"create": 0, "delete": 0}
    for i in range(30):
        ns = await namespace(api, f"race-{i}")
        old = await definition(api, ns, "old")
        await retire(api, ns, old.def_id)

        async def create(ns: str = ns) -> Any:
            if rng.random() < 0.5:
                return await definition(api, ns, "new")
            return await api.dags.CreateDag(dag_pb2.CreateDagRequest(namespace_id=ns, name="new"))

        created: Any
        deleted: Any
        if rng.random() < 0.5:
            created, deleted = await asyncio.gather(create(), delete(api, ns), return_exceptions=True)
        else:
            deleted, created = await asyncio.gather(delete(api, ns), create(), return_exceptions=True)
        created_ok = not isinstance(created, BaseException)
        deleted_ok = not isinstance(deleted, BaseException)
        assert created_ok != deleted_ok, (created, deleted)
        if created_ok:
            assert isinstance(deleted, grpc.aio.AioRpcError) and deleted.code() == PRECONDITION, deleted
            outcomes["create"] += 1
        else:
            assert isinstance(created, grpc.aio.AioRpcError) and created.code() == NOT_FOUND, created
            outcomes["delete"] += 1
        assert await orphans(aconn) == {}
    # Both orders happened (the test exercised the race both ways).
    assert outcomes["create"] > 0 and outcomes["delete"] > 0, outcomes
