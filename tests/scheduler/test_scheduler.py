"""The cron scheduler against a real PostgreSQL, driven by a fake clock.

Each test runs the in-process server with its own scheduler OFF (for the
RPCs and a worker's Dequeue) and drives schedulers of its own with
`run_once()` at database times it chooses: downtime, deadlines, replicas
and version changes without sleeping through minutes.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from chronosched.v1 import definition_pb2, job_pb2, schedule_pb2
from chronosched_server.cron import parse_schedule
from chronosched_server.storage import schedules as schedule_store
from chronosched_worker import Worker
from tests.scheduler.conftest import FakeClock, MakeScheduler
from tests.support.builders import definition, fails, namespace
from tests.support.server import Stubs
from tests.support.waiting import poll
from tests.support.worker import Gates, running

pytestmark = pytest.mark.timeout(60)

D = definition_pb2.JobDefinition
F = schedule_pb2.Fire
J = job_pb2.Job
MS = timedelta(milliseconds=1)
S = timedelta(seconds=1)
_worker_ids = itertools.count()


def when(ts: Any) -> datetime:
    value: datetime = ts.ToDatetime(tzinfo=UTC)
    return value


def ticks(d: D, count: int, after: datetime | None = None) -> list[datetime]:
    """The definition's next `count` ticks after its creation (or `after`)."""
    start = max(when(d.create_time), after) if after else when(d.create_time)
    return parse_schedule(d.cron_spec, d.time_zone or "UTC").next_times(start, count)


async def fires(api: Stubs, ns: str, def_id: str, page_size: int = 0) -> list[schedule_pb2.Fire]:
    """The whole ledger of the definition's name, newest first, page by page."""
    out: list[schedule_pb2.Fire] = []
    token = ""
    while True:
        page = await api.schedules.ListFires(
            schedule_pb2.ListFiresRequest(
                namespace_id=ns, def_id=def_id, page_size=page_size, page_token=token
            )
        )
        out += page.fires
        token = page.next_page_token
        if not token:
            return out


async def jobs(api: Stubs, ns: str, def_id: str = "") -> list[J]:
    page = await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, def_id=def_id, page_size=1000))
    return list(page.jobs)


def summary(fs: list[schedule_pb2.Fire]) -> list[tuple[datetime, str, str]]:
    """(scheduled time, status, reason), oldest first."""
    return [(when(f.scheduled_time), F.Status.Name(f.status), f.reason) for f in reversed(fs)]


async def finished(api: Stubs, ns: str, job_id: str) -> J:
    async def check() -> J | None:
        job = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=job_id))
        return job if job.state in (J.STATE_SUCCEEDED, J.STATE_FAILED, J.STATE_CANCELLED) else None

    return await poll(check, within=10, what=f"job {job_id} to finish", every=0.025)


# --- fires on time ------------------------------------------------------------------


async def test_each_tick_enqueues_one_ready_standalone_job_and_a_ledger_row(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(
        api, ns, "minutely", kind="report", cron_spec="0 * * * * *", payload_template={"a": 1}, max_attempts=2
    )
    first, second = ticks(d, 2)
    clock = FakeClock(first - 10 * MS)
    scheduler = await make_scheduler(clock)

    assert (await scheduler.run_once()).recorded == []
    clock.now = first + 7 * MS
    result = await scheduler.run_once()
    assert (result.fired, result.skipped) == (1, 0)
    assert (await scheduler.run_once()).recorded == []  # a tick fires once
    clock.now = second + 40 * MS
    assert (await scheduler.run_once()).fired == 1

    ledger = await fires(api, ns, d.def_id)
    assert summary(ledger) == [(first, "STATUS_FIRED", ""), (second, "STATUS_FIRED", "")]
    newest = ledger[0]
    assert (newest.namespace_id, newest.name, newest.def_id, newest.def_version) == (
        ns,
        "minutely",
        d.def_id,
        1,
    )
    assert when(newest.fire_time) == second + 40 * MS  # the (injected) clock of the pass
    listed = await jobs(api, ns)
    assert sorted(j.job_id for j in listed) == sorted(f.job_id for f in ledger)
    job = next(j for j in listed if j.job_id == newest.job_id)
    assert job.state == J.STATE_READY and job.dag_id == "" and job.namespace_id == ns
    assert (job.def_id, job.def_version, job.kind, job.key) == (d.def_id, 1, "report", "minutely")
    assert dict(job.payload) == {"a": 1} and job.max_attempts == 2
    # Due at its scheduled time, or at once if that is (as with this fake
    # clock) still ahead of the database's.
    assert when(job.due_time) <= second


async def test_tick_rpc_still_enqueues_outside_the_ledger(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "both", cron_spec="0 * * * * *", payload_template={"a": 1})
    job = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    assert job.state == J.STATE_READY and dict(job.payload) == {"a": 1} and job.dag_id == ""
    assert await fires(api, ns, d.def_id) == []
    (tick,) = ticks(d, 1)
    scheduler = await make_scheduler(FakeClock(tick + MS))
    assert (await scheduler.run_once()).fired == 1
    assert len(await jobs(api, ns, d.def_id)) == 2


# --- downtime and misfire policies ------------------------------------------------


async def test_downtime_under_skip_records_one_skipped_row_and_runs_nothing(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "skipper", cron_spec="0 * * * * *")
    missed = ticks(d, 11)
    clock = FakeClock(missed[9] + 5 * S)  # ten ticks, the latest 5 s ago (> the 2 s grace)
    scheduler = await make_scheduler(clock)
    result = await scheduler.run_once()
    assert (result.fired, result.skipped) == (0, 1)
    assert summary(await fires(api, ns, d.def_id)) == [
        (missed[9], "STATUS_SKIPPED", "misfire: 10 ticks missed (skip policy)")
    ]
    assert await jobs(api, ns) == []

    clock.now = missed[10] + 20 * MS  # resumes at the next tick
    assert (await scheduler.run_once()).fired == 1
    assert [F.Status.Name(f.status) for f in await fires(api, ns, d.def_id)] == [
        "STATUS_FIRED",
        "STATUS_SKIPPED",
    ]
    assert len(await jobs(api, ns)) == 1


async def test_downtime_under_fire_once_runs_once_for_the_latest_tick(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(
        api,
        ns,
        "catcher",
        cron_spec="0 * * * * *",
        misfire_policy=D.MISFIRE_POLICY_FIRE_ONCE,
        starting_deadline=duration_pb2.Duration(seconds=10),
    )
    missed = ticks(d, 10)
    scheduler = await make_scheduler(FakeClock(missed[9] + 5 * S))
    result = await scheduler.run_once()
    assert (result.fired, result.skipped) == (1, 0)
    ledger = await fires(api, ns, d.def_id)
    assert summary(ledger) == [
        (missed[9], "STATUS_FIRED", "catch-up: 10 ticks missed; fired once for the latest (fire_once policy)")
    ]
    (job,) = await jobs(api, ns)
    assert job.job_id == ledger[0].job_id
    assert (await scheduler.run_once()).recorded == []  # no second catch-up


async def test_fire_once_past_the_starting_deadline_runs_nothing(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(
        api,
        ns,
        "late",
        cron_spec="0 * * * * *",
        misfire_policy=D.MISFIRE_POLICY_FIRE_ONCE,
        starting_deadline=duration_pb2.Duration(seconds=10),
    )
    missed = ticks(d, 10)
    scheduler = await make_scheduler(FakeClock(missed[9] + 30 * S))
    assert (await scheduler.run_once()).skipped == 1
    assert summary(await fires(api, ns, d.def_id)) == [
        (
            missed[9],
            "STATUS_SKIPPED",
            "misfire: 10 ticks missed; the latest missed its starting deadline of 10s (fire_once policy)",
        )
    ]
    assert await jobs(api, ns) == []


async def test_a_restarted_scheduler_resumes_from_the_ledger(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "steady", cron_spec="*/10 * * * * *")
    t = ticks(d, 4)
    clock = FakeClock(t[0] + MS)
    assert (await (await make_scheduler(clock)).run_once()).fired == 1
    # A fresh scheduler (a restart) finds its anchor in the ledger: nothing
    # twice, nothing lost, nothing counted as missed.
    clock.now = t[1] + 500 * MS
    assert (await (await make_scheduler(clock)).run_once()).fired == 1
    clock.now = t[2] + 1500 * MS
    assert (await (await make_scheduler(clock)).run_once()).fired == 1
    assert summary(await fires(api, ns, d.def_id)) == [(x, "STATUS_FIRED", "") for x in t[:3]]


# --- overlap ---------------------------------------------------------------------------


async def test_overlap_forbid_skips_while_the_previous_run_is_unfinished(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(
        api, ns, "exclusive", kind="gate", cron_spec="0 * * * * *", overlap_policy=D.OVERLAP_POLICY_FORBID
    )
    t = ticks(d, 5)
    clock = FakeClock(t[0] + MS)
    scheduler = await make_scheduler(clock)
    assert (await scheduler.run_once()).fired == 1
    (first,) = await jobs(api, ns)

    clock.now = t[1] + MS
    assert (await scheduler.run_once()).skipped == 1  # the first run is still READY

    gates = Gates()
    worker = Worker(f"127.0.0.1:{api.server.port}", namespaces=[ns], worker_id=f"cron-{next(_worker_ids)}")
    worker.add_handler("gate", gates)
    async with running(worker):
        await gates.wait_started(first.job_id)
        clock.now = t[2] + MS
        assert (await scheduler.run_once()).skipped == 1  # RUNNING now
        gates.open(first.job_id)
        assert (await finished(api, ns, first.job_id)).state == J.STATE_SUCCEEDED
        clock.now = t[3] + MS
        assert (await scheduler.run_once()).fired == 1  # done: fires again

    assert summary(await fires(api, ns, d.def_id)) == [
        (t[0], "STATUS_FIRED", ""),
        (t[1], "STATUS_SKIPPED", f"overlap: previous run {first.job_id} is still READY (forbid policy)"),
        (t[2], "STATUS_SKIPPED", f"overlap: previous run {first.job_id} is still RUNNING (forbid policy)"),
        (t[3], "STATUS_FIRED", ""),
    ]
    assert len(await jobs(api, ns)) == 2


async def test_overlap_allow_fires_regardless(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "piles-up", cron_spec="0 * * * * *")
    clock = FakeClock(datetime.now(UTC))
    scheduler = await make_scheduler(clock)
    for tick in ticks(d, 3):
        clock.now = tick + MS
        assert (await scheduler.run_once()).fired == 1
    assert [j.state for j in await jobs(api, ns)] == [J.STATE_READY] * 3


# --- versions ------------------------------------------------------------------------


async def test_a_new_version_changes_the_schedule_and_one_without_a_spec_stops_it(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    v1 = await definition(api, ns, "moving", cron_spec="0 * * * * *")
    (v1_tick,) = ticks(v1, 1)
    clock = FakeClock(v1_tick + MS)
    scheduler = await make_scheduler(clock)
    assert (await scheduler.run_once()).fired == 1

    # Version 2 fires at second 30 instead; version 1's spec no longer fires.
    v2 = await definition(api, ns, "moving", cron_spec="30 * * * * *")
    v2_ticks = ticks(v2, 2, after=v1_tick)
    clock.now = v2_ticks[0] + MS
    assert (await scheduler.run_once()).fired == 1
    clock.now = v2_ticks[0] + 30 * S + MS  # version 1's next minute: nothing
    assert (await scheduler.run_once()).recorded == []
    assert scheduler.active == {(ns, "moving"): "30 * * * * *"}

    # Version 3 has no spec: the schedule stops, however long we wait.
    await definition(api, ns, "moving")
    for later in (v2_ticks[1] + MS, v2_ticks[1] + timedelta(hours=1)):
        clock.now = later
        assert (await scheduler.run_once()).recorded == []
    assert scheduler.active == {}

    ledger = await fires(api, ns, v1.def_id)  # any version lists the whole name
    assert [(f.def_version, F.Status.Name(f.status)) for f in ledger] == [
        (2, "STATUS_FIRED"),
        (1, "STATUS_FIRED"),
    ]
    assert [when(f.scheduled_time) for f in ledger] == [v2_ticks[0], v1_tick]
    assert {j.def_version for j in await jobs(api, ns)} == {1, 2}


async def test_a_version_replaced_before_its_tick_never_fires_it(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    # The scheduler loaded version 1, then version 2 (no spec) appeared: the
    # fire is checked against the versions in the database, not the loaded set.
    api = api_without_scheduler
    ns = await namespace(api)
    v1 = await definition(api, ns, "replaced", cron_spec="0 * * * * *")
    (tick,) = ticks(v1, 1)
    clock = FakeClock(tick - S)
    scheduler = await make_scheduler(clock)
    await scheduler.reload()
    await definition(api, ns, "replaced")
    clock.now = tick + MS
    assert (await scheduler.fire_due(clock.now)).recorded == []
    assert await fires(api, ns, v1.def_id) == [] and await jobs(api, ns) == []


# --- pause / resume --------------------------------------------------------------------


async def test_paused_ticks_never_fire_not_even_as_catch_up(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(
        api,
        ns,
        "pausable",
        cron_spec="0 * * * * *",
        misfire_policy=D.MISFIRE_POLICY_FIRE_ONCE,
        starting_deadline=duration_pb2.Duration(seconds=3600),
    )
    t = ticks(d, 5)
    clock = FakeClock(t[0] + MS)
    scheduler = await make_scheduler(clock)
    assert (await scheduler.run_once()).fired == 1

    paused = await api.schedules.PauseSchedule(
        schedule_pb2.PauseScheduleRequest(namespace_id=ns, name="pausable")
    )
    assert paused.paused and list(paused.next_fire_times) == []
    for tick in t[1:3]:
        clock.now = tick + MS
        assert (await scheduler.run_once()).recorded == []
    assert scheduler.active == {}

    # Resumed (at the fake database time) between tick 3 and tick 4: ticks 2
    # and 3 fell while paused and are not caught up, even under fire_once
    # with an hour's deadline; tick 4 fires as usual.
    resumed = await schedule_store.resume(scheduler.db, ns, "pausable", now=t[2] + 10 * S)
    assert resumed.paused is False
    clock.now = t[2] + 11 * S
    assert (await scheduler.run_once()).recorded == []
    clock.now = t[3] + MS
    assert (await scheduler.run_once()).fired == 1
    assert summary(await fires(api, ns, d.def_id)) == [(t[0], "STATUS_FIRED", ""), (t[3], "STATUS_FIRED", "")]


async def test_a_pause_stops_a_scheduler_that_loaded_the_schedule_before(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "stale", cron_spec="0 * * * * *")
    (tick,) = ticks(d, 1)
    clock = FakeClock(tick - S)
    scheduler = await make_scheduler(clock)
    await scheduler.reload()
    await api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id=ns, name="stale"))
    clock.now = tick + MS
    assert (await scheduler.fire_due(clock.now)).recorded == []
    assert await jobs(api, ns) == []


# --- replicas ---------------------------------------------------------------------------


async def test_two_schedulers_on_one_database_record_each_tick_once(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    defs = [await definition(api, ns, f"replicated-{i}", cron_spec="*/10 * * * * *") for i in range(20)]
    latest_create = max(when(d.create_time) for d in defs)
    t = parse_schedule("*/10 * * * * *").next_times(latest_create, 6)
    clock = FakeClock(t[0])
    a, b = await make_scheduler(clock), await make_scheduler(clock)
    total_fired = total_skipped = 0
    # Four ticks on time, then downtime over one tick (missed: one SKIPPED
    # row per schedule, not two).
    for now in (t[0] + MS, t[1] + 5 * MS, t[2], t[3] + 900 * MS, t[5] + 3 * S):
        clock.now = now
        results = await asyncio.gather(a.run_once(), b.run_once())
        total_fired += sum(r.fired for r in results)
        total_skipped += sum(r.skipped for r in results)
    # A definition created before a tick that came ahead of t[0] (creating
    # twenty took long enough to span one) also has that tick, missed by
    # the first pass and recorded once as superseded by t[0].
    early = {d.def_id: [x for x in ticks(d, 6) if x < t[0]] for d in defs}
    superseded = sum(1 for missed in early.values() if missed)
    assert (total_fired, total_skipped) == (4 * 20, 20 + superseded)
    on_time = t[0].isoformat().replace("+00:00", "Z")
    for d in defs:
        missed = early[d.def_id]
        count = "1 tick" if len(missed) == 1 else f"{len(missed)} ticks"
        reason = f"misfire: {count} missed; superseded by the on-time tick at {on_time} (skip policy)"
        assert summary(await fires(api, ns, d.def_id)) == [
            *([(missed[-1], "STATUS_SKIPPED", reason)] if missed else []),
            *[(x, "STATUS_FIRED", "") for x in t[:4]],
            (t[5], "STATUS_SKIPPED", "misfire: 2 ticks missed (skip policy)"),
        ]
    assert len(await jobs(api, ns)) == 4 * 20


# --- the operator surface against the ledger ------------------------------------------


async def test_list_fires_pages_newest_first(
    api_without_scheduler: Stubs, make_scheduler: MakeScheduler
) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "paged", cron_spec="* * * * * *")
    t = ticks(d, 7)
    clock = FakeClock(t[0])
    scheduler = await make_scheduler(clock)
    for tick in t:
        clock.now = tick + MS
        await scheduler.run_once()

    first = await api.schedules.ListFires(
        schedule_pb2.ListFiresRequest(namespace_id=ns, def_id=d.def_id, page_size=3)
    )
    assert [when(f.scheduled_time) for f in first.fires] == [t[6], t[5], t[4]] and first.next_page_token
    second = await api.schedules.ListFires(
        schedule_pb2.ListFiresRequest(
            namespace_id=ns, def_id=d.def_id, page_size=3, page_token=first.next_page_token
        )
    )
    assert [when(f.scheduled_time) for f in second.fires] == [t[3], t[2], t[1]] and second.next_page_token
    third = await api.schedules.ListFires(
        schedule_pb2.ListFiresRequest(
            namespace_id=ns, def_id=d.def_id, page_size=3, page_token=second.next_page_token
        )
    )
    assert [when(f.scheduled_time) for f in third.fires] == [t[0]] and third.next_page_token == ""
    everything = await fires(api, ns, d.def_id)
    assert [when(f.scheduled_time) for f in everything] == t[::-1]
    assert [f.job_id for f in everything] == [f.job_id for f in [*first.fires, *second.fires, *third.fires]]

    other = await namespace(api, "team-b")
    failure = await fails(
        api.schedules.ListFires(schedule_pb2.ListFiresRequest(namespace_id=other, def_id=d.def_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert failure.reason == "DEFINITION_NOT_FOUND"
    failure = await fails(
        api.schedules.ListFires(
            schedule_pb2.ListFiresRequest(namespace_id=ns, def_id=d.def_id, page_token="bm90IGEgdGltZQ")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert failure.fields == ["page_token"]
