"""The cron scheduler and RetireDefinition: a retired name never fires again,
whatever a scheduler had loaded or planned, and a name created again fires
from its new version (fake clock, real PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chronosched.v1 import definition_pb2, job_pb2, schedule_pb2
from chronosched_server.cron import parse_schedule
from tests.scheduler.conftest import FakeClock, MakeScheduler
from tests.support.builders import definition, namespace
from tests.support.locks import AConn, open_transaction, until_waiting
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)

D = definition_pb2.JobDefinition
MS = timedelta(milliseconds=1)
S = timedelta(seconds=1)


def when(ts: Any) -> datetime:
    value: datetime = ts.ToDatetime(tzinfo=UTC)
    return value


def ticks(d: D, count: int, after: datetime | None = None) -> list[datetime]:
    start = max(when(d.create_time), after) if after else when(d.create_time)
    return parse_schedule(d.cron_spec, d.time_zone or "UTC").next_times(start, count)


async def retire(api: Stubs, ns: str, def_id: str) -> D:
    return await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=def_id)
    )


async def fires(api: Stubs, ns: str, def_id: str) -> list[schedule_pb2.Fire]:
    page = await api.schedules.ListFires(
        schedule_pb2.ListFiresRequest(namespace_id=ns, def_id=def_id, page_size=1000)
    )
    return list(page.fires)


async def jobs(api: Stubs, ns: str) -> list[job_pb2.Job]:
    return list((await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, page_size=1000))).jobs)


async def test_a_retired_name_never_fires_not_even_for_a_scheduler_that_planned_it(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "beat", cron_spec="0 * * * * *")
    first, second, third = ticks(d, 3)
    clock = FakeClock(first + MS)
    a, b = await make_scheduler(clock), await make_scheduler(clock)
    assert (await a.run_once()).fired == 1
    # Both replicas have the schedule loaded when the retire commits.
    clock.now = second - S
    await a.reload()
    await b.reload()
    assert a.active == b.active == {(ns, "beat"): "0 * * * * *"}
    await retire(api, ns, d.def_id)

    clock.now = second + MS
    assert (await a.fire_due(clock.now)).recorded == []
    assert (await b.fire_due(clock.now)).recorded == []
    # Their next reload drops it.
    clock.now = third + MS
    for scheduler in (a, b):
        assert (await scheduler.run_once()).recorded == []
        assert scheduler.active == {}
    assert [when(f.scheduled_time) for f in await fires(api, ns, d.def_id)] == [first]
    assert len(await jobs(api, ns)) == 1


async def test_a_fire_waiting_on_a_retire_in_flight_records_nothing(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler, database_url: str, aconn: AConn
) -> None:
    # The fire's statement starts while the retire holds the version
    # (marked, not committed): it must wait and then see the retire, not
    # fire from the snapshot it started with.
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "beat", cron_spec="0 * * * * *")
    (tick,) = ticks(d, 1)
    clock = FakeClock(tick - S)
    scheduler = await make_scheduler(clock)
    await scheduler.reload()
    async with open_transaction(database_url) as retiring:
        await retiring.execute(
            "update job_definitions set retire_time = clock_timestamp() where def_id = %s::uuid", (d.def_id,)
        )
        firing = asyncio.create_task(scheduler.fire_due(tick + MS))
        await until_waiting(aconn, 1, "the fire behind the retire")
    assert (await firing).recorded == []
    assert await fires(api, ns, d.def_id) == [] and await jobs(api, ns) == []


async def test_a_retire_waits_for_a_fire_in_flight_which_then_predates_it(
    api_without_scheduler: Stubs, database_url: str, aconn: AConn
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "beat", cron_spec="0 * * * * *")
    (tick,) = ticks(d, 1)
    async with open_transaction(database_url) as firing:
        # What a scheduler's fire holds until it commits: the owning version.
        await firing.execute(
            "insert into cron_fires (namespace_id, name, scheduled_time, def_id, def_version, status)"
            " select namespace_id, name, %s::timestamptz, def_id, version, 'SKIPPED'"
            " from job_definitions where def_id = %s::uuid for share",
            (tick, d.def_id),
        )
        retiring = asyncio.create_task(retire(api, ns, d.def_id))
        await until_waiting(aconn, 1, "the retire behind the fire")
        assert not retiring.done()
    retired = await retiring
    (fire,) = await fires(api, ns, d.def_id)
    assert when(fire.fire_time) < when(retired.retire_time)


async def test_a_name_paused_retired_and_created_again_fires_from_its_new_version(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    v1 = await definition(api, ns, "beat", cron_spec="0 * * * * *")
    (v1_tick,) = ticks(v1, 1)
    clock = FakeClock(v1_tick + MS)
    scheduler = await make_scheduler(clock)
    assert (await scheduler.run_once()).fired == 1
    await api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id=ns, name="beat"))
    retired = await retire(api, ns, v1.def_id)

    v2 = await definition(api, ns, "beat", cron_spec="30 * * * * *")
    assert v2.version == 2
    # Not paused: the retire forgot the pause along with the old line.
    later = max(v1_tick, when(retired.retire_time))
    t = ticks(v2, 2, after=later)
    clock.now = t[0] + MS
    assert (await scheduler.run_once()).fired == 1
    clock.now = t[1] + MS
    assert (await scheduler.run_once()).fired == 1
    assert scheduler.active == {(ns, "beat"): "30 * * * * *"}
    ledger = await fires(api, ns, v1.def_id)  # the whole name, old line included
    assert [(f.def_version, when(f.scheduled_time)) for f in ledger] == [(2, t[1]), (2, t[0]), (1, v1_tick)]
