"""What the storage layer hands up: typed records (frozen, but for Job: see
there), never cursor rows.

Nothing above storage/ sees a column name or a psycopg type; mypy checks every
field a caller reads. Each record names the columns of the queries that make
it; `from_row` picks those from a row and ignores the rest (queries may carry
columns other users need), and fails loudly when one is missing.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, TypeVar

R = TypeVar("R")


_COLUMNS: dict[type[Any], tuple[tuple[str, bool], ...]] = {}


def _columns(cls: type[Any]) -> tuple[tuple[str, bool], ...]:
    """(field name, required) of a record class, worked out once per class."""
    found = _COLUMNS.get(cls)
    if found is None:
        found = _COLUMNS[cls] = tuple(
            (f.name, f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls)
        )
    return found


def from_row(cls: type[R], row: Mapping[str, Any]) -> R:
    """The record of `cls` in `row`; a missing required column is a bug."""
    values: dict[str, Any] = {}
    for name, required in _columns(cls):
        if name in row:
            values[name] = row[name]
        elif required:
            raise KeyError(f"{cls.__name__} needs column {name!r}, the query gave {sorted(row)}")
    return cls(**values)


def _build(cls: type[R], keys: Mapping[str, Any], rows: Sequence[Any]) -> list[R]:
    """Records of `cls` from `rows`, which all hold a field's value under
    `keys[field]` (a column name or index); a missing required one is a bug.
    A record whose fields are all there is built positionally: about half
    the cost per row, which the dispatcher pays for every job it claims."""
    fields = _columns(cls)
    missing = [name for name, required in fields if required and name not in keys]
    if missing:
        raise KeyError(f"{cls.__name__} needs columns {missing}, the query gave {sorted(keys)}")
    present = [name for name, _ in fields if name in keys]
    if len(present) == len(fields) > 1:
        pick = itemgetter(*(keys[name] for name in present))
        return [cls(*pick(row)) for row in rows]
    return [cls(**{name: row[keys[name]] for name in present}) for row in rows]


def from_rows(cls: type[R], rows: Sequence[Mapping[str, Any]]) -> list[R]:
    """`from_row` over the rows of one statement. They share their columns,
    so which fields they fill is worked out once."""
    if not rows:
        return []
    return _build(cls, {name: name for name in rows[0]}, rows)


def from_tuples(cls: type[R], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[R]:
    """`from_rows` for rows read as tuples, the statement's `columns` named
    apart: psycopg builds a tuple row in C and a dict row in Python, which
    cost the dispatcher's cycle a few percent for the 23 columns of each job
    it claims."""
    if not rows:
        return []
    return _build(cls, {name: i for i, name in enumerate(columns)}, rows)


@dataclass(frozen=True, slots=True)
class Namespace:
    namespace_id: str
    description: str
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Definition:
    def_id: uuid.UUID
    namespace_id: str
    name: str
    version: int
    kind: str
    payload_template: dict[str, Any]
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
    create_time: datetime
    # When the version (with its whole line) was retired; None while live.
    retire_time: datetime | None
    # The database's clock when it was read: next fire times count from it.
    as_of: datetime


@dataclass(frozen=True, slots=True)
class Dag:
    dag_id: uuid.UUID
    namespace_id: str
    name: str
    state: str
    job_count: int
    unfinished_job_count: int
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime


# Not frozen, unlike the other records: a frozen dataclass's __init__ sets
# each field through object.__setattr__, 4.0 us for a Job's 23 against 0.36
# us, and the dispatcher builds one for every job it claims. Nothing assigns
# to a Job's fields.
@dataclass(slots=True)
class Job:
    job_id: uuid.UUID
    namespace_id: str
    dag_id: uuid.UUID | None
    def_id: uuid.UUID
    def_version: int
    kind: str
    key: str
    state: str
    attempt: int
    max_attempts: int
    priority: int
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str
    due_time: datetime | None
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime
    lease_expire_time: datetime | None
    worker_id: str
    # Only on jobs just claimed for a worker (the definition's limit).
    execution_timeout: timedelta | None = None
    # Only on claimed first attempts of DAG children: when the last parent
    # succeeded (database time), for the metrics.
    parents_done_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Dependency:
    parent_job_id: uuid.UUID
    child_job_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Fire:
    """One decided tick in the cron ledger."""

    namespace_id: str
    name: str
    def_id: uuid.UUID
    def_version: int
    scheduled_time: datetime
    fire_time: datetime
    status: str
    reason: str
    job_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Schedule:
    """The schedule of a definition name: its owning (latest) version and pause state."""

    namespace_id: str
    name: str
    paused: bool
    def_id: uuid.UUID
    version: int
    cron_spec: str
    time_zone: str
    paused_at: datetime | None
    resumed_at: datetime | None
    # Set when the owning (latest) version is retired: the name has no
    # schedule until it is created again.
    retire_time: datetime | None
    as_of: datetime


@dataclass(frozen=True, slots=True)
class ActiveSchedule:
    """A scheduled, unpaused name as the cron scheduler loads it: the latest
    version's definition and the parts of its anchor."""

    def_id: uuid.UUID
    namespace_id: str
    name: str
    version: int
    kind: str
    payload_template: dict[str, Any]
    cron_spec: str
    time_zone: str
    misfire_policy: str
    overlap_policy: str
    starting_deadline: timedelta
    max_attempts: int
    default_priority: int
    create_time: datetime
    resumed_at: datetime | None
    last_scheduled_time: datetime | None


@dataclass(frozen=True, slots=True)
class LeaseExtension:
    job_id: uuid.UUID
    attempt: int
    lease_expire_time: datetime


@dataclass(frozen=True, slots=True)
class Token:
    """A stored bearer token without its hash; `namespace_id` None: every namespace."""

    token_id: str
    scope: str
    namespace_id: str | None
    description: str
    create_time: datetime
    expire_time: datetime | None
    revoke_time: datetime | None
    last_used_time: datetime | None


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """What a call's token check reads, the time comparisons made in SQL."""

    token_id: str
    token_hash: bytes
    scope: str
    namespace_id: str | None
    expired: bool
    revoked: bool
    # last_used_time is older than a minute (or unset): worth an update.
    use_stale: bool


@dataclass(frozen=True, slots=True)
class FrontierCount:
    """READY jobs of one namespace and kind (the metrics' frontier gauge)."""

    namespace_id: str
    kind: str
    jobs: int
    # No live worker stream serves this namespace and kind.
    unserved: bool


@dataclass(frozen=True, slots=True)
class WorkerPresence:
    """One open Dequeue stream as its replica last recorded it (migration 0008)."""

    stream_id: uuid.UUID
    worker_id: str
    replica_id: str
    namespaces: list[str]
    all_namespaces: bool
    kinds: list[str]
    slots: int
    jobs_in_flight: int
    connect_time: datetime
    heartbeat_time: datetime
