"""The values the client hands back: frozen dataclasses and readable enums.

Every time is a UTC-aware `datetime` (None where the server left it unset),
every duration a `timedelta`, and every payload or result a plain `dict`. A
JSON number comes back as an `int` when it is whole: the wire format
(`google.protobuf.Struct`) stores every number as a double, so `{"rows": 3}`
would otherwise read back as `{"rows": 3.0}`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _WireEnum(enum.Enum):
    """An enum whose values are the protobuf numbers. A number this client
    does not know (a newer server) reads as UNSPECIFIED instead of failing
    the whole call."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        return cls(0)


class JobState(_WireEnum):
    """Where a job is in its life cycle."""

    #: The protobuf zero value; also what a state unknown to this client reads as.
    UNSPECIFIED = 0
    #: Its parents have not all succeeded yet, or its DAG is not started.
    PENDING = 1
    #: Runnable once its due time has come.
    READY = 2
    #: Leased to a worker.
    RUNNING = 3
    #: Finished successfully.
    SUCCEEDED = 4
    #: Failed with no attempts left, or failed as non-retryable.
    FAILED = 5
    #: Cancelled with its DAG.
    CANCELLED = 6
    #: Never ran because an ancestor failed or was cancelled.
    SKIPPED = 7

    @property
    def is_finished(self) -> bool:
        """True for the terminal states: nothing changes the job any more."""
        return self in _FINISHED_JOB_STATES


_FINISHED_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.SKIPPED})


class DagState(_WireEnum):
    """Where a DAG is in its life cycle."""

    #: The protobuf zero value; also what a state unknown to this client reads as.
    UNSPECIFIED = 0
    #: Being built: jobs and dependencies may be added; nothing runs.
    PENDING = 1
    #: Started: the topology is sealed and jobs run.
    RUNNING = 2
    #: Every job succeeded.
    SUCCEEDED = 3
    #: A job failed for good; its descendants are SKIPPED. Jobs on other
    #: branches may still be running (see `Dag.is_settled`).
    FAILED = 4
    #: Cancelled.
    CANCELLED = 5

    @property
    def is_finished(self) -> bool:
        """True for the terminal states (the DAG's state changes no more)."""
        return self in _FINISHED_DAG_STATES


_FINISHED_DAG_STATES = frozenset({DagState.SUCCEEDED, DagState.FAILED, DagState.CANCELLED})


class WaitingReason(_WireEnum):
    """What a PENDING or READY job waits for (`Waiting.reason`); the server
    gives the first that holds, in this order."""

    #: The protobuf zero value; also what a reason unknown to this client reads as.
    UNSPECIFIED = 0
    #: Its DAG was created without starting it and has not been started.
    DAG_NOT_STARTED = 1
    #: Some parents have not succeeded yet (`unfinished_parents`, `parents`).
    PARENTS = 2
    #: Not due before `due_time`: a delay after its parents, or the backoff
    #: before a retry (`retry_after_attempt`).
    NOT_DUE = 3
    #: No connected worker serves its kind in its namespace.
    NO_WORKER = 4
    #: Every connected worker serving its kind has all its slots in use.
    WORKERS_FULL = 5
    #: Ready, due, and a worker with a free slot serves its kind: the next
    #: dispatch cycle hands it out (higher-priority jobs first).
    DISPATCHING = 6


class MisfirePolicy(_WireEnum):
    """What happens to cron ticks missed while no scheduler ran."""

    UNSPECIFIED = 0
    #: Drop missed ticks and resume at the next one (the default).
    SKIP = 1
    #: Run once for the latest missed tick, within the starting deadline.
    FIRE_ONCE = 2


class OverlapPolicy(_WireEnum):
    """Whether a cron fire may start while the schedule's previous run is unfinished."""

    UNSPECIFIED = 0
    #: Fire regardless of earlier runs (the default).
    ALLOW = 1
    #: Skip the fire while the previous run is unfinished.
    FORBID = 2


class FireStatus(_WireEnum):
    """What happened at one cron tick."""

    UNSPECIFIED = 0
    #: A standalone job was enqueued.
    FIRED = 1
    #: No job was enqueued; the fire's `reason` says why.
    SKIPPED = 2


@dataclass(frozen=True)
class Namespace:
    """The isolation boundary every other resource lives in."""

    namespace_id: str
    description: str
    create_time: datetime


@dataclass(frozen=True)
class Definition:
    """One immutable version of a job definition."""

    def_id: str
    namespace_id: str
    name: str
    version: int
    kind: str
    payload_template: dict[str, Any]
    #: The cron spec, None without a schedule.
    cron_spec: str | None
    time_zone: str
    misfire_policy: MisfirePolicy
    overlap_policy: OverlapPolicy
    starting_deadline: timedelta
    max_attempts: int
    backoff_initial: timedelta
    backoff_max: timedelta
    backoff_multiplier: float
    execution_timeout: timedelta
    default_priority: int
    delay_after_parents: timedelta
    create_time: datetime
    #: The next cron fire times (up to 5) when the server answered.
    next_fire_times: tuple[datetime, ...]
    #: When this version was retired; None while it is live.
    retire_time: datetime | None
    #: Things worth knowing that did not stop the create (e.g. no worker has
    #: served the kind in the namespace lately); only in what
    #: `create_definition` returns, empty everywhere else. Not part of the
    #: definition, so equality ignores it.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_retired(self) -> bool:
        """True once the version's line was retired (no new jobs of it)."""
        return self.retire_time is not None

    @property
    def ref(self) -> str:
        """`name@version`, the form `DagBuilder.job` accepts."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Job:
    """One execution unit, made from one pinned definition version."""

    job_id: str
    namespace_id: str
    #: The DAG the job belongs to; None for standalone jobs (Tick, cron).
    dag_id: str | None
    def_id: str
    def_version: int
    kind: str
    key: str
    state: JobState
    #: The current attempt, from 1; the fencing token for results.
    attempt: int
    max_attempts: int
    priority: int
    #: The definition's payload template merged with the job's own payload.
    payload: dict[str, Any]
    #: The successful attempt's result; None until the job succeeded.
    result: dict[str, Any] | None
    #: The last failed attempt's error; None if no attempt failed.
    error: str | None
    due_time: datetime | None
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime | None
    lease_expire_time: datetime | None
    worker_id: str | None
    #: Why the job has not started, while PENDING or READY and read with
    #: get_job, list_jobs or list_dag_jobs; None otherwise (and in what
    #: tick and add_jobs return).
    waiting: Waiting | None = None


@dataclass(frozen=True)
class WaitingParent:
    """A parent a waiting job still waits on."""

    key: str
    job_id: str
    #: PENDING, READY or RUNNING.
    state: JobState


@dataclass(frozen=True)
class Waiting:
    """Why a PENDING or READY job is not running yet (docs/operations.md,
    "Why is this job not running?"). The details that do not belong to the
    reason are 0, empty or None."""

    reason: WaitingReason
    #: The same in one English sentence, naming the parents, time or kind.
    message: str
    #: PARENTS: how many parents have not succeeded.
    unfinished_parents: int = 0
    #: PARENTS: the first few unfinished parents, in key order.
    parents: tuple[WaitingParent, ...] = ()
    #: NOT_DUE: the earliest time the job may start.
    due_time: datetime | None = None
    #: NOT_DUE: the attempt whose failure the job backs off from; 0 when it
    #: waits out a delay after its parents.
    retry_after_attempt: int = 0
    #: NO_WORKER, WORKERS_FULL, DISPATCHING: the job's kind.
    kind: str | None = None
    #: WORKERS_FULL, DISPATCHING: jobs in flight on the workers serving the
    #: kind, as their servers last recorded it.
    slots_in_use: int = 0
    #: WORKERS_FULL, DISPATCHING: the slots of those workers.
    slots_total: int = 0


@dataclass(frozen=True)
class ConnectedWorker:
    """One open worker stream (`list_workers`), as its server last recorded
    it: counts and `heartbeat_time` lag by up to one heartbeat interval."""

    #: The id the worker gave when it subscribed.
    worker_id: str
    #: New for every stream: a reconnect gets another.
    stream_id: str
    #: The server process holding the stream.
    replica_id: str
    #: The namespaces it takes jobs from (empty with `all_namespaces`); for a
    #: token limited to one namespace, only that one.
    namespaces: tuple[str, ...]
    #: It takes jobs from every namespace.
    all_namespaces: bool
    #: The job kinds it has handlers for.
    kinds: tuple[str, ...]
    #: How many jobs it runs at once.
    slots: int
    #: Attempts leased to it on this stream and not reported back yet.
    jobs_in_flight: int
    #: When the stream subscribed (database time).
    connect_time: datetime
    #: When the server last heard from the worker (database time).
    heartbeat_time: datetime


@dataclass(frozen=True)
class Dag:
    """A run of jobs with parent->child dependencies."""

    dag_id: str
    namespace_id: str
    name: str
    state: DagState
    job_count: int
    unfinished_job_count: int
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime | None

    @property
    def is_settled(self) -> bool:
        """True when nothing in the DAG can change any more: its state is
        terminal and none of its jobs is unfinished. (A FAILED DAG may still
        have jobs running on branches that do not descend from the failure.)"""
        return self.state.is_finished and self.unfinished_job_count == 0


@dataclass(frozen=True)
class Dependency:
    """A parent->child edge between two jobs of one DAG, by job id."""

    parent_job_id: str
    child_job_id: str


@dataclass(frozen=True)
class JobSpec:
    """One job to create in a DAG (`Client.create_dag`, `Client.add_jobs`)."""

    #: Unique within the DAG.
    key: str
    #: The definition version (UUID) the job is made from.
    def_id: str
    #: Merged over the definition's payload template.
    payload: Mapping[str, Any] | None = None
    #: None means the definition's default priority.
    priority: int | None = None


@dataclass(frozen=True)
class JobRun:
    """One standalone run to enqueue (`Client.enqueue_jobs`)."""

    #: The definition version (UUID) the job is made from.
    def_id: str
    #: Merged over the definition's payload template.
    payload: Mapping[str, Any] | None = None
    #: None means the definition's default priority.
    priority: int | None = None


@dataclass(frozen=True)
class Schedule:
    """The cron schedule of a definition name (owned by its latest version)."""

    namespace_id: str
    name: str
    paused: bool
    def_id: str
    def_version: int
    #: The owning version's cron spec; None when the name has no schedule.
    cron_spec: str | None
    time_zone: str
    next_fire_times: tuple[datetime, ...]
    pause_time: datetime | None
    resume_time: datetime | None
    #: Set when the owning version is retired.
    retire_time: datetime | None


@dataclass(frozen=True)
class Fire:
    """One tick of a schedule, as the scheduler decided it."""

    namespace_id: str
    name: str
    def_id: str
    def_version: int
    scheduled_time: datetime
    fire_time: datetime
    status: FireStatus
    #: Why the tick was skipped, or that a fire was a catch-up; None for a fire on time.
    reason: str | None
    #: The enqueued job; None when SKIPPED.
    job_id: str | None


@dataclass(frozen=True)
class PruneResult:
    """What one Prune moved to the history tables."""

    dags_pruned: int
    jobs_pruned: int
    dependencies_pruned: int


@dataclass(frozen=True)
class Health:
    """A healthy server's answer to Healthz."""

    status: str
    version: str


class TokenScope(_WireEnum):
    """What a bearer token may do (docs/security.md)."""

    #: The protobuf zero value; also what a scope unknown to this client reads as.
    UNSPECIFIED = 0
    #: Get and List calls in its namespace.
    READ = 1
    #: Everything in its namespace (read, change, record job results).
    WRITE = 2
    #: A worker's calls in its namespace: the Dequeue stream and job results.
    WORKER = 3
    #: Everything in every namespace, namespaces, prune and tokens included.
    ADMIN = 4


@dataclass(frozen=True)
class Token:
    """A bearer token as the server stores it: everything but the secret."""

    token_id: str
    scope: TokenScope
    #: The namespace it is limited to, or "*" for every namespace.
    namespace_id: str
    description: str
    create_time: datetime
    #: None: it never expires.
    expire_time: datetime | None = None
    revoke_time: datetime | None = None
    #: When a call last used it, to the minute.
    last_used_time: datetime | None = None


@dataclass(frozen=True)
class NewToken:
    """A token just created, and its secret: shown this once, never again."""

    token: Token
    #: What to send as `authorization: Bearer <secret>` (the client's `token=`).
    secret: str = field(repr=False)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items and the token of the next page (None on
    the last page)."""

    items: tuple[T, ...]
    next_page_token: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class DagResult:
    """A DAG that has settled, with each of its jobs by key."""

    dag: Dag
    jobs: Mapping[str, Job] = field(default_factory=dict)

    @property
    def states(self) -> dict[str, JobState]:
        """Each job's final state, by key."""
        return {key: job.state for key, job in self.jobs.items()}

    @property
    def succeeded(self) -> bool:
        """True when the DAG ended SUCCEEDED."""
        return self.dag.state is DagState.SUCCEEDED


@dataclass(frozen=True)
class JobEvent:
    """A job of a watched DAG was seen in a new state or a new attempt."""

    job: Job
    #: The job as seen at the previous poll; None the first time it is seen.
    previous: Job | None

    @property
    def key(self) -> str:
        """The job's key in its DAG."""
        return self.job.key

    @property
    def state(self) -> JobState:
        """The state the job was seen in."""
        return self.job.state

    @property
    def previous_state(self) -> JobState | None:
        """The state at the previous poll; None the first time."""
        return None if self.previous is None else self.previous.state

    def __str__(self) -> str:
        before = "new" if self.previous is None else self.previous.state.name
        return f"job {self.job.key}: {before} -> {self.job.state.name} (attempt {self.job.attempt})"


@dataclass(frozen=True)
class DagEvent:
    """The watched DAG was seen in a new state."""

    dag: Dag
    #: The DAG as seen at the previous poll; None the first time.
    previous: Dag | None

    @property
    def state(self) -> DagState:
        """The state the DAG was seen in."""
        return self.dag.state

    @property
    def previous_state(self) -> DagState | None:
        """The state before; None the first time."""
        return None if self.previous is None else self.previous.state

    def __str__(self) -> str:
        before = "new" if self.previous is None else self.previous.state.name
        return f"dag {self.dag.dag_id}: {before} -> {self.dag.state.name}"


#: What `DagRun.watch` yields.
WatchEvent = JobEvent | DagEvent
