"""Job definitions: immutable, versioned per (namespace, name)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from chronosched_server.ids import uuid7
from chronosched_server.storage import namespaces
from chronosched_server.storage.db import Conn, Database, execute, fetch_one, fetch_record, fetch_records
from chronosched_server.storage.records import Definition


@dataclass(frozen=True)
class NewDefinition:
    """A validated CreateDefinition request with defaults applied."""

    namespace_id: str
    name: str
    kind: str
    payload_template: str  # JSON text of an object
    cron_spec: str
    time_zone: str
    misfire_policy: str
    overlap_policy: str
    starting_deadline: timedelta
    max_attempts: int
    backoff_initial: timedelta
    backoff_max: timedelta
    backoff_multiplier: float
    execution_timeout: timedelta
    default_priority: int
    delay_after_parents: timedelta


async def find(conn: Conn, namespace_id: str, def_id: uuid.UUID) -> Definition:
    """The definition, or NOT_FOUND (naming the namespace if that is what is missing)."""
    key = {"namespace_id": namespace_id, "def_id": def_id}
    found = await fetch_record(conn, Definition, "get_definition", key)
    return await namespaces.found_or_404(conn, found, namespace_id, "definition", str(def_id))


async def create(db: Database, new: NewDefinition, request_id: str) -> Definition:
    async with db.transaction() as conn:
        await namespaces.require(conn, new.namespace_id)
        idem = namespaces.RequestIds(conn, new.namespace_id, "CreateDefinition", request_id)
        earlier = await idem.claim()
        if earlier is not None:
            return await find(conn, new.namespace_id, earlier[0])
        key = {"namespace_id": new.namespace_id, "name": new.name}
        await execute(conn, "lock_definition_name", key)
        version_row = await fetch_one(conn, "next_definition_version", key)
        assert version_row is not None
        params: dict[str, Any] = {**asdict(new), "def_id": uuid7(), "version": version_row["version"]}
        created = await fetch_record(conn, Definition, "insert_definition", params)
        assert created is not None
        await idem.record([created.def_id])
        return created


async def get(db: Database, namespace_id: str, def_id: uuid.UUID) -> Definition:
    async with db.transaction() as conn:
        return await find(conn, namespace_id, def_id)


async def list_page(
    db: Database, namespace_id: str, name: str | None, after: uuid.UUID | None, limit: int
) -> list[Definition]:
    async with db.transaction() as conn:
        await namespaces.require(conn, namespace_id)
        return await fetch_records(
            conn,
            Definition,
            "list_definitions",
            {"namespace_id": namespace_id, "name": name, "after": after, "limit": limit},
        )
