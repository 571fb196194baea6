"""RetireDefinition: a name's line of versions retired at once, new work of it
refused, work already made left to finish, the name free to start again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
import psycopg
import pytest

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2, schedule_pb2, worker_pb2_grpc
from tests.support import grpc_helpers
from tests.support.builders import dag, definition, fails, namespace
from tests.support.locks import AConn, open_transaction, until_waiting
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)

D = definition_pb2.JobDefinition
J = job_pb2.Job
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def retire(api: Stubs, ns: str, def_id: str) -> D:
    return await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=def_id)
    )


async def get(api: Stubs, ns: str, def_id: str) -> D:
    return await api.definitions.GetDefinition(
        definition_pb2.GetDefinitionRequest(namespace_id=ns, def_id=def_id)
    )


async def versions(api: Stubs, ns: str, name: str) -> list[D]:
    page = await api.definitions.ListDefinitions(
        definition_pb2.ListDefinitionsRequest(namespace_id=ns, name=name, page_size=100)
    )
    return list(page.definitions)


async def all_jobs(api: Stubs, ns: str) -> list[J]:
    return list((await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, page_size=1000))).jobs)


def when(ts: Any) -> datetime:
    value: datetime = ts.ToDatetime(tzinfo=UTC)
    return value


# --- what a retire marks -------------------------------------------------------------


async def test_retire_marks_every_version_of_the_line_and_is_idempotent(api: Stubs) -> None:
    ns = await namespace(api)
    v1 = await definition(api, ns, "nightly", cron_spec="0 0 * * *")
    v2 = await definition(api, ns, "nightly", cron_spec="0 1 * * *")
    other = await definition(api, ns, "other", cron_spec="0 2 * * *")
    assert not v1.HasField("retire_time") and len(v2.next_fire_times) == 5

    # Any version of the name retires the whole line, and returns itself.
    retired = await retire(api, ns, v1.def_id)
    assert (retired.def_id, retired.version, retired.name) == (v1.def_id, 1, "nightly")
    assert retired.HasField("retire_time") and list(retired.next_fire_times) == []
    # Every version reads as before, marked with the one retire time.
    listed = await versions(api, ns, "nightly")
    assert [(d.version, d.retire_time) for d in listed] == [
        (1, retired.retire_time),
        (2, retired.retire_time),
    ]
    assert all(list(d.next_fire_times) == [] for d in listed)
    assert (await get(api, ns, v2.def_id)).retire_time == retired.retire_time
    assert (await get(api, ns, v2.def_id)).cron_spec == "0 1 * * *"
    # Other names are untouched.
    assert not (await get(api, ns, other.def_id)).HasField("retire_time")

    # Again, through either version: the same result, nothing changes.
    assert await retire(api, ns, v1.def_id) == retired
    again = await retire(api, ns, v2.def_id)
    assert again.retire_time == retired.retire_time and again.version == 2


async def test_retire_errors(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "n")
    other = await namespace(api, "other")
    bad = await fails(retire(api, ns, "nope"), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad.fields == ["def_id"]
    bad = await fails(retire(api, "Bad!", d.def_id), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad.fields == ["namespace_id"]
    missing = await fails(retire(api, ns, "00000000-0000-7000-8000-000000000000"), grpc.StatusCode.NOT_FOUND)
    assert missing.reason == "DEFINITION_NOT_FOUND"
    # Another namespace's definition is not found there (and is not retired).
    elsewhere = await fails(retire(api, other, d.def_id), grpc.StatusCode.NOT_FOUND)
    assert elsewhere.reason == "DEFINITION_NOT_FOUND"
    gone = await fails(retire(api, "gone", d.def_id), grpc.StatusCode.NOT_FOUND)
    assert gone.reason == "NAMESPACE_NOT_FOUND"
    assert not (await get(api, ns, d.def_id)).HasField("retire_time")


# --- no new work of a retired version ----------------------------------------------------


async def test_new_work_of_a_retired_version_is_refused_by_name(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "gone")
    keep = await definition(api, ns, "keep")
    ticked = await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id, request_id="t-1")
    )
    building = await dag(api, ns, keep.def_id, "a", [], start=False)
    retired = await retire(api, ns, d.def_id)
    before = {j.job_id for j in await all_jobs(api, ns)}

    tick = await fails(
        api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id)), PRECONDITION
    )
    assert tick.reason == "DEFINITION_RETIRED"
    assert tick.metadata["name"] == "gone" and tick.metadata["def_id"] == d.def_id
    assert tick.metadata["version"] == "1" and tick.metadata["namespace_id"] == ns
    assert datetime.fromisoformat(tick.metadata["retire_time"]) == when(retired.retire_time)
    assert "'gone'" in tick.message and "retired" in tick.message

    # A retry of a Tick that ran before the retire still returns its job.
    again = await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id, request_id="t-1")
    )
    assert again.job_id == ticked.job_id

    created = await fails(
        api.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=ns,
                name="mixed",
                jobs=[
                    dag_pb2.JobSpec(key="ok", def_id=keep.def_id),
                    dag_pb2.JobSpec(key="no", def_id=d.def_id),
                ],
                start=True,
            )
        ),
        PRECONDITION,
    )
    assert created.reason == "DEFINITION_RETIRED" and created.metadata["field"] == "jobs[1].def_id"
    assert created.message.startswith("jobs[1].def_id: definition 'gone' version 1")

    added = await fails(
        api.dags.CreateJobs(
            dag_pb2.CreateJobsRequest(
                namespace_id=ns, dag_id=building.dag_id, jobs=[dag_pb2.JobSpec(key="b", def_id=d.def_id)]
            )
        ),
        PRECONDITION,
    )
    assert added.reason == "DEFINITION_RETIRED" and added.metadata["field"] == "jobs[0].def_id"

    # Nothing was written by the refused calls.
    assert {j.job_id for j in await all_jobs(api, ns)} == before
    dags = await api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns))
    assert [x.dag_id for x in dags.dags] == [building.dag_id]
    assert (
        await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=building.dag_id))
    ).job_count == 1


async def test_jobs_made_before_the_retire_run_to_their_end(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "old", max_attempts=1)
    running = await dag(api, ns, d.def_id, "ab", [("a", "b")])
    standalone = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    operator = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    await retire(api, ns, d.def_id)

    # An operator still records outcomes of jobs made before the retire.
    failed = await api.jobs.FailJob(
        job_pb2.FailJobRequest(job_id=operator.job_id, error="stop", non_retryable=True)
    )
    assert failed.state == J.STATE_FAILED

    # A worker is still handed the rest, and its results are applied.
    worker = grpc_helpers.RawWorker(
        worker_pb2_grpc.WorkerServiceStub(api.channel), worker_id="w1", kinds=["noop"], namespaces=[ns]
    )
    await worker.start()
    try:
        done: list[str] = []
        for _ in range(3):  # a and the standalone job are READY; b follows a
            assignment = await worker.next("assignment")
            await worker.send_result(assignment.job.job_id, assignment.job.attempt, {"ok": True})
            assert (await worker.next("ack")).accepted
            done.append(assignment.job.key)
    finally:
        await worker.close()
    assert sorted(done) == ["a", "b", "old"]
    final = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=running.dag_id))
    assert final.state == dag_pb2.Dag.STATE_SUCCEEDED
    job = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=standalone.job_id))
    assert job.state == J.STATE_SUCCEEDED


# --- the name after a retire ---------------------------------------------------------------


async def test_creating_the_name_again_starts_a_new_live_line(api: Stubs) -> None:
    ns = await namespace(api)
    v1 = await definition(api, ns, "n", cron_spec="0 * * * *")
    v2 = await definition(api, ns, "n")
    first = await retire(api, ns, v2.def_id)

    v3 = await definition(api, ns, "n", cron_spec="30 * * * *")
    assert v3.version == 3 and not v3.HasField("retire_time") and len(v3.next_fire_times) == 5
    job = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=v3.def_id))
    assert job.def_version == 3
    refused = await fails(
        api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=v1.def_id)), PRECONDITION
    )
    assert refused.reason == "DEFINITION_RETIRED"

    # A retire repeated through an old version (a client's retry, say)
    # ends nothing: the new line stays live.
    assert await retire(api, ns, v1.def_id) == await get(api, ns, v1.def_id)
    assert not (await get(api, ns, v3.def_id)).HasField("retire_time")

    # Retiring the new line leaves the old one's time as it was.
    second = await retire(api, ns, v3.def_id)
    assert when(second.retire_time) > when(first.retire_time)
    assert [(d.version, d.retire_time) for d in await versions(api, ns, "n")] == [
        (1, first.retire_time),
        (2, first.retire_time),
        (3, second.retire_time),
    ]


async def test_the_schedule_of_a_retired_name_says_so_and_keeps_no_pause(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "beat", cron_spec="0 * * * *")
    await api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id=ns, name="beat"))
    retired = await retire(api, ns, d.def_id)

    schedule = await api.schedules.GetSchedule(schedule_pb2.GetScheduleRequest(namespace_id=ns, name="beat"))
    assert schedule.retire_time == retired.retire_time and schedule.def_id == d.def_id
    assert list(schedule.next_fire_times) == [] and schedule.cron_spec == "0 * * * *"
    # The retire cleared the pause state.
    assert not schedule.paused and not schedule.HasField("pause_time")
    for call in (
        api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id=ns, name="beat")),
        api.schedules.ResumeSchedule(schedule_pb2.ResumeScheduleRequest(namespace_id=ns, name="beat")),
    ):
        refused = await fails(call, PRECONDITION)
        assert refused.reason == "DEFINITION_RETIRED" and refused.metadata["name"] == "beat"
    fires = await api.schedules.ListFires(schedule_pb2.ListFiresRequest(namespace_id=ns, def_id=d.def_id))
    assert list(fires.fires) == []

    # Paused, then retired, then created again: a fresh, active schedule.
    v2 = await definition(api, ns, "beat", cron_spec="*/5 * * * *")
    fresh = await api.schedules.GetSchedule(schedule_pb2.GetScheduleRequest(namespace_id=ns, name="beat"))
    assert (fresh.def_id, fresh.def_version, fresh.paused) == (v2.def_id, 2, False)
    assert not fresh.HasField("retire_time") and len(fresh.next_fire_times) == 5


# --- races and the database rule ----------------------------------------------------------------


async def test_work_waiting_on_a_retire_in_flight_is_refused(
    api: Stubs, database_url: str, aconn: AConn
) -> None:
    # A retire has locked and marked the version but not committed: a
    # CreateDag and a Tick reading the version now must wait for it, then
    # see it retired, instead of making jobs from the snapshot before it.
    ns = await namespace(api)
    d = await definition(api, ns, "racing")
    async with open_transaction(database_url) as retiring:
        await retiring.execute(
            "update job_definitions set retire_time = clock_timestamp() where def_id = %s::uuid", (d.def_id,)
        )
        create = asyncio.create_task(dag(api, ns, d.def_id, "a", []))
        tick = asyncio.ensure_future(
            api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
        )
        await until_waiting(aconn, 2, "CreateDag and Tick behind the retire")
    for task in (create, tick):
        failure = await fails(task, PRECONDITION)
        assert failure.reason == "DEFINITION_RETIRED"
    assert await all_jobs(api, ns) == []


async def test_a_retire_waits_for_work_in_flight_which_then_predates_it(
    api: Stubs, database_url: str, aconn: AConn
) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "racing")
    async with open_transaction(database_url) as creating:
        # What CreateDag holds while it writes the jobs.
        await creating.execute("select 1 from job_definitions where def_id = %s::uuid for share", (d.def_id,))
        retiring = asyncio.ensure_future(retire(api, ns, d.def_id))
        await until_waiting(aconn, 1, "the retire behind the jobs being made")
        assert not retiring.done()
        last = await (await creating.execute("select clock_timestamp()")).fetchone()
    retired = await retiring
    # Its time was read after the work in flight was done.
    assert last is not None and when(retired.retire_time) > last[0]


async def test_the_database_lets_retire_time_be_set_once_and_nothing_else(api: Stubs, aconn: AConn) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "n")
    update = "update job_definitions set {} where def_id = %s::uuid"
    await aconn.execute(update.format("retire_time = now()"), (d.def_id,))
    for change in ("retire_time = now() + interval '1 day'", "retire_time = null", "kind = 'other'"):
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation) as info:
            await aconn.execute(update.format(change), (d.def_id,))
        assert info.value.diag.constraint_name == "job_definitions_immutable"
    fresh = await definition(api, ns, "m")
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
        await aconn.execute(update.format("retire_time = now(), kind = 'other'"), (fresh.def_id,))
    assert (await get(api, ns, d.def_id)).kind == "noop"
    assert not (await get(api, ns, fresh.def_id)).HasField("retire_time")
