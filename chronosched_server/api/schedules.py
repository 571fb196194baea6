"""ScheduleService: the fire ledger and pause/resume of cron schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from chronosched.v1 import schedule_pb2, schedule_pb2_grpc
from chronosched_server import ids, render, validation
from chronosched_server.api.common import paginate, uuid_field
from chronosched_server.errors import InvalidArgument, Why
from chronosched_server.storage import schedules
from chronosched_server.storage.db import Database
from chronosched_server.validation import Violations

Ctx = grpc.aio.ServicerContext[Any, Any]


def _time_token(v: Violations, token: str) -> datetime | None:
    """A fires page token: the scheduled time of the previous page's last fire."""
    try:
        raw = ids.decode_page_token(token)
        if raw is None:
            return None
        value: datetime | None = datetime.fromisoformat(raw)
    except (InvalidArgument, ValueError):
        value = None
    if value is None or value.tzinfo is None:
        v.add("page_token", "malformed page token", Why.INVALID_FORMAT)
        return None
    return value


def _read_name(namespace_id: str, name: str) -> None:
    v = Violations()
    validation.check_slug(v, "namespace_id", namespace_id)
    validation.check_pattern(v, "name", name, validation.NAME_RE, required=True)
    v.raise_if_any()


class ScheduleServicer(schedule_pb2_grpc.ScheduleServiceServicer):
    def __init__(self, db: Database):
        self.db = db

    async def ListFires(
        self, request: schedule_pb2.ListFiresRequest, context: Ctx
    ) -> schedule_pb2.ListFiresResponse:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        def_id = uuid_field(v, "def_id", request.def_id)
        limit = validation.page_size(v, request.page_size)
        before = _time_token(v, request.page_token)
        v.raise_if_any()
        assert def_id is not None
        rows = await schedules.list_fires(self.db, request.namespace_id, def_id, before, limit + 1)
        page, token = paginate(rows, limit, lambda r: r.scheduled_time.isoformat())
        return schedule_pb2.ListFiresResponse(fires=[render.fire(r) for r in page], next_page_token=token)

    async def GetSchedule(
        self, request: schedule_pb2.GetScheduleRequest, context: Ctx
    ) -> schedule_pb2.Schedule:
        _read_name(request.namespace_id, request.name)
        return render.schedule(await schedules.get(self.db, request.namespace_id, request.name))

    async def PauseSchedule(
        self, request: schedule_pb2.PauseScheduleRequest, context: Ctx
    ) -> schedule_pb2.Schedule:
        _read_name(request.namespace_id, request.name)
        return render.schedule(await schedules.pause(self.db, request.namespace_id, request.name))

    async def ResumeSchedule(
        self, request: schedule_pb2.ResumeScheduleRequest, context: Ctx
    ) -> schedule_pb2.Schedule:
        _read_name(request.namespace_id, request.name)
        return render.schedule(await schedules.resume(self.db, request.namespace_id, request.name))
