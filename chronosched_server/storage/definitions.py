"""Job definitions: immutable, versioned per (namespace, name)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chronosched_server import waiting
from chronosched_server.errors import DefinitionRetired
from chronosched_server.ids import uuid7
from chronosched_server.storage import namespaces, presence
from chronosched_server.storage.db import (
    Conn,
    Database,
    execute,
    fetch_one,
    fetch_record,
    fetch_records,
    with_retries,
)
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


@dataclass(frozen=True)
class KnownVersion:
    """What a one-statement write (a Tick, a small CreateDag) needs of a
    definition version before it sends its statement: immutable once
    written (a trigger refuses updates but the retire time, which those
    statements check themselves)."""

    kind: str
    payload_template: dict[str, Any]


# Versions this process has read, by (namespace, def_id). Bounded: emptied
# when full, as refilling costs one two-trip write per version.
_VERSIONS: dict[tuple[str, uuid.UUID], KnownVersion] = {}
_VERSIONS_MAX = 10_000


def remember(namespace_id: str, def_id: uuid.UUID, kind: str, payload_template: dict[str, Any]) -> None:
    """Keep a version read for new work, for the one-statement paths next time."""
    if len(_VERSIONS) >= _VERSIONS_MAX:
        _VERSIONS.clear()
    _VERSIONS[namespace_id, def_id] = KnownVersion(kind, payload_template)


def known(namespace_id: str, def_id: uuid.UUID) -> KnownVersion | None:
    """The version if this process has read it already (no I/O). Whether it
    is still live, or its namespace still there, only the database says."""
    return _VERSIONS.get((namespace_id, def_id))


async def find(conn: Conn, namespace_id: str, def_id: uuid.UUID) -> Definition:
    """The definition, or NOT_FOUND (naming the namespace if that is what is missing)."""
    key = {"namespace_id": namespace_id, "def_id": def_id}
    found = await fetch_record(conn, Definition, "get_definition", key)
    return await namespaces.found_or_404(conn, found, namespace_id, "definition", str(def_id))


def retired(
    namespace_id: str,
    name: str,
    def_id: uuid.UUID,
    version: int,
    retire_time: datetime,
    where: str = "",
) -> DefinitionRetired:
    """The error for new work that names a retired version."""
    when = retire_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return DefinitionRetired(namespace_id, name, str(def_id), version, when, where=where)


def raise_if_retired(definition: Definition) -> Definition:
    if definition.retire_time is not None:
        raise retired(
            definition.namespace_id,
            definition.name,
            definition.def_id,
            definition.version,
            definition.retire_time,
        )
    return definition


async def find_live(conn: Conn, namespace_id: str, def_id: uuid.UUID) -> Definition:
    """The definition for new jobs: held (FOR SHARE) until the caller's
    transaction ends, NOT_FOUND as `find`, DEFINITION_RETIRED if retired."""
    key = {"namespace_id": namespace_id, "def_id": def_id}
    found = await fetch_record(conn, Definition, "hold_definition", key)
    found = await namespaces.found_or_404(conn, found, namespace_id, "definition", str(def_id))
    return raise_if_retired(found)


async def create(db: Database, new: NewDefinition, request_id: str) -> tuple[Definition, bool]:
    """The new version (or the one a retried request made), and whether a
    worker serves its kind in the namespace now or did within
    waiting.SERVED_WINDOW."""
    async with db.transaction() as conn:
        created = await _create(conn, new, request_id)
        served = await presence.kind_served_since(
            conn, new.namespace_id, new.kind, waiting.SERVED_WINDOW.total_seconds()
        )
        return created, served


async def _create(conn: Conn, new: NewDefinition, request_id: str) -> Definition:
    await namespaces.hold(conn, new.namespace_id)
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
    async with db.reads() as conn:
        return await find(conn, namespace_id, def_id)


async def list_page(
    db: Database, namespace_id: str, name: str | None, after: uuid.UUID | None, limit: int
) -> list[Definition]:
    async with db.reads() as conn:
        await namespaces.require(conn, namespace_id)
        return await fetch_records(
            conn,
            Definition,
            "list_definitions",
            {"namespace_id": namespace_id, "name": name, "after": after, "limit": limit},
        )


async def retire(db: Database, namespace_id: str, def_id: uuid.UUID) -> Definition:
    """Retire the line of versions `def_id` belongs to; returns `def_id`'s version.

    A live `def_id` retires every live version of its name (they are one
    line: each retire ends a line, and the next CreateDefinition of the name
    starts a new one) and forgets the name's pause state. A retired `def_id`
    changes nothing, whatever happened to the name since: a repeated retire
    returns the same result and never ends a newer line."""
    return await with_retries(lambda: _retire(db, namespace_id, def_id))


async def _retire(db: Database, namespace_id: str, def_id: uuid.UUID) -> Definition:
    async with db.transaction() as conn:
        await namespaces.hold(conn, namespace_id)
        found = await find(conn, namespace_id, def_id)
        if found.retire_time is not None:
            return found
        key = {"namespace_id": namespace_id, "name": found.name}
        # The name's lock, as CreateDefinition's: no version is added to the
        # line while it is retired, and concurrent retires go one at a time.
        await execute(conn, "lock_definition_name", key)
        # Read again under the lock: a retire that committed meanwhile ended
        # this version's line, and any live version now is of a newer line.
        again = await find(conn, namespace_id, def_id)
        if again.retire_time is not None:
            return again
        await execute(conn, "lock_live_versions", key)
        await execute(conn, "retire_live_versions", key)
        await execute(conn, "clear_pause_state", key)
        return await find(conn, namespace_id, def_id)
