"""Why a job is not running: a pure decision over facts read with the job.

The storage layer reads the facts for a whole page at once (the page's
PENDING jobs' DAG state and first unfinished parents; the capacity of the
workers serving each kind on the page; the database's clock) in at most two
statements; `explain` then decides each job's reason with no I/O. Nothing
here runs on the dispatch path: it is read-time only (docs/operations.md,
"Why is this job not running?").
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

# Unfinished parents named per waiting job; the count says how many in all.
PARENTS_SHOWN = 3
# CreateDefinition warns when no worker has served the kind in the namespace
# within this long: long enough that a nightly worker counts, short enough
# that a kind nobody has run since it was renamed does not.
SERVED_WINDOW = timedelta(hours=24)


class Reason(enum.Enum):
    # The order is the order of precedence: the first that holds is given.
    DAG_NOT_STARTED = "DAG_NOT_STARTED"
    PARENTS = "PARENTS"
    NOT_DUE = "NOT_DUE"
    NO_WORKER = "NO_WORKER"
    WORKERS_FULL = "WORKERS_FULL"
    DISPATCHING = "DISPATCHING"


class WaitingJob(Protocol):
    """The job fields the decision reads (storage's Job record has them)."""

    @property
    def job_id(self) -> uuid.UUID: ...
    @property
    def dag_id(self) -> uuid.UUID | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def due_time(self) -> datetime | None: ...


@dataclass(frozen=True)
class Parent:
    key: str
    job_id: uuid.UUID
    state: str


@dataclass(frozen=True)
class Pending:
    """What holds a PENDING job: its DAG's state and unfinished parents."""

    dag_state: str | None
    unfinished: int
    # The first PARENTS_SHOWN unfinished parents in key order.
    parents: Sequence[Parent] = ()


@dataclass(frozen=True)
class Capacity:
    """The live worker streams serving one kind in the page's namespace."""

    workers: int
    slots: int
    in_flight: int


@dataclass(frozen=True)
class Facts:
    # Database time when the facts were read (due times are database time).
    now: datetime | None = None
    pending: Mapping[uuid.UUID, Pending] = field(default_factory=dict)
    capacity: Mapping[str, Capacity] = field(default_factory=dict)


@dataclass(frozen=True)
class Explanation:
    reason: Reason
    message: str
    unfinished_parents: int = 0
    parents: Sequence[Parent] = ()
    due_time: datetime | None = None
    retry_after_attempt: int = 0
    kind: str = ""
    slots_in_use: int = 0
    slots_total: int = 0


def needs_facts(job: WaitingJob) -> bool:
    return job.state in ("PENDING", "READY")


def explain(job: WaitingJob, facts: Facts) -> Explanation | None:
    """Why `job` waits, or None when it is not waiting (RUNNING, finished)."""
    if job.state == "PENDING":
        pending = facts.pending.get(job.job_id)
        if pending is not None and pending.dag_state == "PENDING":
            return Explanation(
                Reason.DAG_NOT_STARTED, "its DAG has not been started (created with start=false)"
            )
        if pending is not None and pending.unfinished > 0:
            return _parents(pending)
        # A PENDING job with nothing pending is promoted in the transaction
        # that finished its last parent, so it is about to be READY.
        return _ready(job, facts)
    if job.state == "READY":
        return _ready(job, facts)
    return None


def _parents(pending: Pending) -> Explanation:
    named = ", ".join(f"{p.key} ({p.state})" for p in pending.parents)
    more = pending.unfinished - len(pending.parents)
    if more > 0:
        named += f" and {more} more"
    noun = "parent" if pending.unfinished == 1 else "parents"
    return Explanation(
        Reason.PARENTS,
        f"waiting on {pending.unfinished} unfinished {noun}: {named}",
        unfinished_parents=pending.unfinished,
        parents=pending.parents,
    )


def _ready(job: WaitingJob, facts: Facts) -> Explanation:
    if job.due_time is not None and facts.now is not None and job.due_time > facts.now:
        after = job.attempt - 1
        why = f"backing off after attempt {after} failed" if after > 0 else "a delay after its parents"
        return Explanation(
            Reason.NOT_DUE,
            f"not due before {_utc(job.due_time)} ({why})",
            due_time=job.due_time,
            retry_after_attempt=after,
        )
    cap = facts.capacity.get(job.kind, Capacity(0, 0, 0))
    if cap.workers == 0:
        return Explanation(
            Reason.NO_WORKER,
            f"no connected worker serves kind {job.kind} in this namespace",
            kind=job.kind,
        )
    if cap.in_flight >= cap.slots:
        return Explanation(
            Reason.WORKERS_FULL,
            f"every worker serving kind {job.kind} is full ({cap.in_flight} of {cap.slots} slots in use)",
            kind=job.kind,
            slots_in_use=cap.in_flight,
            slots_total=cap.slots,
        )
    return Explanation(
        Reason.DISPATCHING,
        f"ready: a worker serving kind {job.kind} has a free slot "
        f"({cap.in_flight} of {cap.slots} in use); the next dispatch hands it out",
        kind=job.kind,
        slots_in_use=cap.in_flight,
        slots_total=cap.slots,
    )


def _utc(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unserved_warning(namespace_id: str, kind: str) -> str:
    """CreateDefinition's warning for a kind no worker has served lately."""
    hours = int(SERVED_WINDOW.total_seconds() // 3600)
    return (
        f"no worker has served kind {kind} in namespace {namespace_id} in the last {hours} hours: "
        f"its jobs will wait (READY) until a worker with a {kind} handler connects"
    )
