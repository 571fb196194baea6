"""Cron schedules: the active set, the fire ledger, pause state."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from chronosched_server.storage import definitions, namespaces
from chronosched_server.storage.db import (
    Conn,
    Database,
    execute,
    fetch_all,
    fetch_one,
    fetch_record,
    fetch_records,
)
from chronosched_server.storage.records import ActiveSchedule, Fire, Schedule


@dataclass(frozen=True)
class FireRow:
    """One decided tick to record in the ledger."""

    namespace_id: str
    name: str
    scheduled_time: datetime
    def_id: uuid.UUID
    def_version: int
    status: str  # FIRED | SKIPPED
    reason: str
    job_id: uuid.UUID | None


@dataclass(frozen=True)
class Recorded:
    """A ledger row that went in (another replica had not recorded the tick first)."""

    namespace_id: str
    name: str
    scheduled_time: datetime
    status: str
    job_id: uuid.UUID | None


async def load_active(db: Database) -> list[ActiveSchedule]:
    """The latest version of every scheduled, unpaused name, with its anchor parts."""
    async with db.reads() as conn:
        return await fetch_records(conn, ActiveSchedule, "load_schedules", {})


async def sample_clock(db: Database, local: Callable[[], float]) -> tuple[float, datetime, float]:
    """(local time before, database time, local time after) of one round trip."""
    async with db.transaction() as conn:
        sent = local()
        row = await fetch_one(conn, "database_clock", {})
        received = local()
    assert row is not None
    db_time: datetime = row["db_time"]
    return sent, db_time, received


async def previous_fired_runs(
    conn: Conn, keys: Sequence[tuple[str, str, datetime]]
) -> dict[tuple[str, str], tuple[uuid.UUID, str | None]]:
    """(namespace, name) -> (job id, job state or None when gone) of the latest
    FIRED tick before the given time, for each (namespace, name, before)."""
    if not keys:
        return {}
    rows = await fetch_all(
        conn,
        "previous_fired_runs",
        {
            "namespace_ids": [k[0] for k in keys],
            "names": [k[1] for k in keys],
            "befores": [k[2] for k in keys],
        },
    )
    return {(r["namespace_id"], r["name"]): (r["job_id"], r["state"]) for r in rows}


async def insert_fires(conn: Conn, rows: Sequence[FireRow], now: datetime | None) -> list[Recorded]:
    """Record ticks in the caller's transaction; returns the rows that went in.

    `now` is the fire time to record; None means the database's now()."""
    if not rows:
        return []
    out = await fetch_all(
        conn,
        "insert_fires",
        {
            "namespace_ids": [r.namespace_id for r in rows],
            "names": [r.name for r in rows],
            "scheduled_times": [r.scheduled_time for r in rows],
            "def_ids": [r.def_id for r in rows],
            "def_versions": [r.def_version for r in rows],
            "statuses": [r.status for r in rows],
            "reasons": [r.reason for r in rows],
            "job_ids": [r.job_id for r in rows],
            "now": now,
        },
    )
    return [
        Recorded(r["namespace_id"], r["name"], r["scheduled_time"], r["status"], r["job_id"]) for r in out
    ]


async def list_fires(
    db: Database, namespace_id: str, def_id: uuid.UUID, before: datetime | None, limit: int
) -> list[Fire]:
    """One page of the ledger of the definition's NAME, newest tick first."""
    async with db.reads() as conn:
        definition = await definitions.find(conn, namespace_id, def_id)
        return await fetch_records(
            conn,
            Fire,
            "list_fires",
            {"namespace_id": namespace_id, "name": definition.name, "before": before, "limit": limit},
        )


async def _require_schedule(conn: Conn, namespace_id: str, name: str) -> Schedule:
    found = await fetch_record(conn, Schedule, "get_schedule", {"namespace_id": namespace_id, "name": name})
    return await namespaces.found_or_404(conn, found, namespace_id, "schedule", name)


async def get(db: Database, namespace_id: str, name: str) -> Schedule:
    """The schedule of a definition name (NOT_FOUND when no version has that
    name); a retired name's says so (`retire_time`)."""
    async with db.reads() as conn:
        return await _require_schedule(conn, namespace_id, name)


async def _require_live_schedule(conn: Conn, namespace_id: str, name: str) -> None:
    """A schedule pause or resume may change: NOT_FOUND as `get`, and
    DEFINITION_RETIRED for a retired name (a retire clears the pause state,
    so that a name created again starts active; nothing may set it again).
    Holds the namespace and the name's lock (a retire's) until the caller
    commits."""
    await namespaces.hold(conn, namespace_id)
    await execute(conn, "lock_definition_name", {"namespace_id": namespace_id, "name": name})
    found = await _require_schedule(conn, namespace_id, name)
    if found.retire_time is not None:
        raise definitions.retired(namespace_id, name, found.def_id, found.version, found.retire_time)


async def pause(db: Database, namespace_id: str, name: str, now: datetime | None = None) -> Schedule:
    """Pause a name's schedule (idempotent). `now` is for tests; None means the database's now()."""
    async with db.transaction() as conn:
        await _require_live_schedule(conn, namespace_id, name)
        await execute(conn, "pause_schedule", {"namespace_id": namespace_id, "name": name, "now": now})
        return await _require_schedule(conn, namespace_id, name)


async def resume(db: Database, namespace_id: str, name: str, now: datetime | None = None) -> Schedule:
    """Resume a paused schedule from its next tick after `now` (idempotent)."""
    async with db.transaction() as conn:
        await _require_live_schedule(conn, namespace_id, name)
        await execute(conn, "resume_schedule", {"namespace_id": namespace_id, "name": name, "now": now})
        return await _require_schedule(conn, namespace_id, name)
