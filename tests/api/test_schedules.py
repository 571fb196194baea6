"""ScheduleService over gRPC: the Schedule resource, pause/resume, and bad input.

(What the scheduler does with a paused schedule, and the fire ledger's
content, are in tests/scheduler/.)"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import grpc

from chronosched.v1 import schedule_pb2
from tests.support.builders import definition, fails, namespace
from tests.support.server import Stubs


def times(schedule: schedule_pb2.Schedule) -> list[datetime]:
    return [t.ToDatetime(tzinfo=UTC) for t in schedule.next_fire_times]


async def test_schedule_belongs_to_the_latest_version(api_without_scheduler: Stubs) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    await definition(api, ns, "nightly", cron_spec="0 2 * * *", time_zone="Europe/Paris")
    v2 = await definition(api, ns, "nightly", cron_spec="*/5 * * * * *")

    got = await api.schedules.GetSchedule(schedule_pb2.GetScheduleRequest(namespace_id=ns, name="nightly"))
    assert (got.namespace_id, got.name, got.paused) == (ns, "nightly", False)
    assert (got.def_id, got.def_version, got.cron_spec, got.time_zone) == (
        v2.def_id,
        2,
        "*/5 * * * * *",
        "UTC",
    )
    fires = times(got)
    assert len(fires) == 5 and all(f.second % 5 == 0 for f in fires)
    assert all(b - a == timedelta(seconds=5) for a, b in itertools.pairwise(fires))
    assert not got.HasField("pause_time") and not got.HasField("resume_time")

    # A version without a spec: the name still has a (stopped) schedule.
    v3 = await definition(api, ns, "nightly")
    got = await api.schedules.GetSchedule(schedule_pb2.GetScheduleRequest(namespace_id=ns, name="nightly"))
    assert (got.def_id, got.def_version, got.cron_spec, list(got.next_fire_times)) == (v3.def_id, 3, "", [])


async def test_pause_and_resume(api_without_scheduler: Stubs) -> None:
    api = api_without_scheduler
    ns = await namespace(api)
    d = await definition(api, ns, "hourly", cron_spec="@hourly")
    ref = {"namespace_id": ns, "name": "hourly"}

    paused = await api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(**ref))
    assert (paused.paused, paused.def_id, paused.cron_spec) == (True, d.def_id, "@hourly")
    assert list(paused.next_fire_times) == [] and paused.HasField("pause_time")
    # Pausing again changes nothing (the pause time stays).
    again = await api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(**ref))
    assert again.paused and again.pause_time == paused.pause_time
    got = await api.schedules.GetSchedule(schedule_pb2.GetScheduleRequest(**ref))
    assert got.paused and got.pause_time == paused.pause_time

    resumed = await api.schedules.ResumeSchedule(schedule_pb2.ResumeScheduleRequest(**ref))
    assert not resumed.paused and resumed.HasField("resume_time")
    assert resumed.resume_time.ToDatetime() >= paused.pause_time.ToDatetime()
    hourly = times(resumed)
    assert len(hourly) == 5 and all(t.minute == 0 and t.second == 0 for t in hourly)
    # Resuming an active schedule changes nothing (its resume time stays).
    again = await api.schedules.ResumeSchedule(schedule_pb2.ResumeScheduleRequest(**ref))
    assert not again.paused and again.resume_time == resumed.resume_time

    # A pause outlives new versions: it belongs to the name.
    await api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(**ref))
    v2 = await definition(api, ns, "hourly", cron_spec="@daily")
    got = await api.schedules.GetSchedule(schedule_pb2.GetScheduleRequest(**ref))
    assert (got.paused, got.def_id, got.cron_spec) == (True, v2.def_id, "@daily")


async def test_unknown_names_and_namespaces_are_not_found(api: Stubs) -> None:
    ns = await namespace(api)
    await definition(api, ns, "exists")
    other = await namespace(api, "team-b")
    for call in (
        api.schedules.GetSchedule(schedule_pb2.GetScheduleRequest(namespace_id=ns, name="missing")),
        api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id=ns, name="missing")),
        api.schedules.ResumeSchedule(schedule_pb2.ResumeScheduleRequest(namespace_id=ns, name="missing")),
        # Another namespace's name is not visible.
        api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id=other, name="exists")),
    ):
        failure = await fails(call, grpc.StatusCode.NOT_FOUND)
        assert failure.reason == "SCHEDULE_NOT_FOUND"
    failure = await fails(
        api.schedules.PauseSchedule(schedule_pb2.PauseScheduleRequest(namespace_id="nowhere", name="exists")),
        grpc.StatusCode.NOT_FOUND,
    )
    assert failure.reason == "NAMESPACE_NOT_FOUND"
    failure = await fails(
        api.schedules.ListFires(
            schedule_pb2.ListFiresRequest(namespace_id=ns, def_id="0190d5a8-0000-7000-8000-000000000000")
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert failure.reason == "DEFINITION_NOT_FOUND"
    # Nothing was paused by the failed calls.
    got = await api.schedules.GetSchedule(schedule_pb2.GetScheduleRequest(namespace_id=ns, name="exists"))
    assert not got.paused


async def test_bad_input_names_the_fields(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "fine", cron_spec="@daily")
    failure = await fails(
        api.schedules.PauseSchedule(
            schedule_pb2.PauseScheduleRequest(namespace_id="Bad NS", name="bad name")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert failure.fields == ["namespace_id", "name"]
    failure = await fails(
        api.schedules.ResumeSchedule(schedule_pb2.ResumeScheduleRequest(namespace_id=ns)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert failure.fields == ["name"]
    failure = await fails(
        api.schedules.ListFires(
            schedule_pb2.ListFiresRequest(
                namespace_id=ns, def_id="not-a-uuid", page_size=1001, page_token="%%"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert failure.fields == ["def_id", "page_size", "page_token"]
    page = await api.schedules.ListFires(schedule_pb2.ListFiresRequest(namespace_id=ns, def_id=d.def_id))
    assert list(page.fires) == [] and page.next_page_token == ""
