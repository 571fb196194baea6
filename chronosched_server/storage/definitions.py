"""Job definitions: immutable, versioned per (namespace, name)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from psycopg.rows import DictRow

from chronosched_server.errors import NotFound
from chronosched_server.ids import uuid7
from chronosched_server.storage import namespaces
from chronosched_server.storage.db import Database, execute, fetch_all, fetch_one


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


async def create(db: Database, new: NewDefinition, request_id: str) -> DictRow:
    async with db.transaction() as conn:
        await namespaces.require(conn, new.namespace_id)
        idem = namespaces.RequestIds(conn, new.namespace_id, "CreateDefinition", request_id)
        earlier = await idem.claim()
        if earlier is not None:
            row = await fetch_one(
                conn, "get_definition", {"namespace_id": new.namespace_id, "def_id": earlier[0]}
            )
            assert row is not None
            return row
        key = {"namespace_id": new.namespace_id, "name": new.name}
        await execute(conn, "lock_definition_name", key)
        version_row = await fetch_one(conn, "next_definition_version", key)
        assert version_row is not None
        params: dict[str, Any] = {**asdict(new), "def_id": uuid7(), "version": version_row["version"]}
        row = await fetch_one(conn, "insert_definition", params)
        assert row is not None
        await idem.record([row["def_id"]])
        return row


async def get(db: Database, namespace_id: str, def_id: uuid.UUID) -> DictRow:
    async with db.transaction() as conn:
        row = await fetch_one(conn, "get_definition", {"namespace_id": namespace_id, "def_id": def_id})
        if row is None:
            await namespaces.require(conn, namespace_id)
            raise NotFound("definition", str(def_id), namespace_id=namespace_id)
    return row


async def list_page(
    db: Database, namespace_id: str, name: str | None, after: uuid.UUID | None, limit: int
) -> list[DictRow]:
    async with db.transaction() as conn:
        await namespaces.require(conn, namespace_id)
        return await fetch_all(
            conn,
            "list_definitions",
            {"namespace_id": namespace_id, "name": name, "after": after, "limit": limit},
        )
