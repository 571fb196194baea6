"""Jobs: reads, results (complete/fail) and standalone enqueue (Tick and cron fires)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chronosched_server.errors import NotFound
from chronosched_server.ids import uuid7
from chronosched_server.storage import dags, definitions, namespaces, waiting
from chronosched_server.storage.db import (
    Conn,
    Database,
    Pending,
    execute,
    fetch_record,
    fetch_records,
    pending_records,
)
from chronosched_server.storage.metrics import Tally
from chronosched_server.storage.records import ActiveSchedule, Definition, Job
from chronosched_server.storage.results import ResultIn, apply_results, succeed, undecided
from chronosched_server.transitions import Outcome
from chronosched_server.validation import Violations, check_kind_payload
from chronosched_server.waiting import Facts


async def get(db: Database, namespace_id: str, job_id: uuid.UUID) -> tuple[Job, Facts]:
    """The job, with the facts that explain why it waits (if it does)."""
    async with db.reads() as conn:
        row = await fetch_record(conn, Job, "get_job", {"namespace_id": namespace_id, "job_id": job_id})
        job = await namespaces.found_or_404(conn, row, namespace_id, "job", str(job_id))
        return job, await waiting.facts(conn, namespace_id, [job])


async def list_page(
    db: Database,
    namespace_id: str,
    *,
    state: str | None,
    dag_id: uuid.UUID | None,
    def_id: uuid.UUID | None,
    after: uuid.UUID | None,
    limit: int,
) -> tuple[list[Job], Facts]:
    async with db.reads() as conn:
        await namespaces.require(conn, namespace_id)
        rows = await fetch_records(
            conn,
            Job,
            "list_jobs",
            {
                "namespace_id": namespace_id,
                "state": state,
                "dag_id": dag_id,
                "def_id": def_id,
                "after": after,
                "limit": limit,
            },
        )
        return rows, await waiting.facts(conn, namespace_id, rows)


async def list_dag_page(
    db: Database, namespace_id: str, dag_id: uuid.UUID, state: str | None, after: str | None, limit: int
) -> tuple[list[Job], Facts]:
    async with db.reads() as conn:
        await dags.require_in_namespace(conn, namespace_id, dag_id)
        rows = await fetch_records(
            conn, Job, "list_dag_jobs", {"dag_id": dag_id, "state": state, "after": after, "limit": limit}
        )
        return rows, await waiting.facts(conn, namespace_id, rows)


async def _reload(conn: Conn, job_id: uuid.UUID) -> Job:
    rows = await fetch_records(conn, Job, "get_jobs_by_ids", {"job_ids": [job_id]})
    return rows[0]


async def _send_reload(conn: Conn, job_id: uuid.UUID) -> Pending[Job]:
    """`_reload` without waiting for the row (pipeline mode)."""
    return await pending_records(conn, "get_jobs_by_ids", {"job_ids": [job_id]}, Job)


async def _apply_one(db: Database, item: ResultIn, tally: Tally | None) -> Job:
    """One result, as a dispatcher cycle applies them: a success first
    through `succeed_jobs`, which checks the rule book itself, with the
    read-back behind it in one pipeline of an autocommit connection. Both
    run before the one Sync, so in one implicit transaction: one round trip
    and one commit with no BEGIN or COMMIT to send, and the read sees the
    write. Anything the success passed over (a repeat, a refusal; its
    read-back is then dropped), and every failure, goes by `apply_results`
    in two round trips (BEGIN with the lock, then the writes, the read-back
    and COMMIT together). Both run the dispatcher's statements on their
    generic plans, as its cycles do: left to choose, PostgreSQL may plan
    `succeed_jobs` anew on every call, up to about 1 ms of a call's 2."""
    if item.success:
        async with db.statement() as conn:
            async with conn.pipeline():
                await execute(conn, "use_generic_plans", {})
                sent = await succeed(conn, [undecided(item)])
                reloaded = await _send_reload(conn, item.job_id)
            applied = await sent.fetch() == [item.job_id]
            job = (await reloaded.fetch())[0] if applied else None
        if job is not None:
            if tally is not None:
                tally.finished[job.namespace_id, job.kind, Outcome.SUCCEED] += 1
            return job
    skipped: Counter[tuple[str, str]] = Counter()
    async with db.pipelined_transaction(generic_plans=True) as conn:
        (out,) = await apply_results(conn, [item], skipped)
        if out.rejected is not None:
            raise out.rejected
        reloaded = await _send_reload(conn, item.job_id)
    (job,) = await reloaded.fetch()
    if tally is not None:
        tally.skipped.update(skipped)
        if out.outcome is not None:
            tally.finished[job.namespace_id, job.kind, out.outcome] += 1
    return job


async def complete(
    db: Database,
    job_id: uuid.UUID,
    attempt: int | None,
    result: dict[str, Any],
    *,
    namespace_id: str | None = None,
    tally: Tally | None = None,
) -> Job:
    """Record a success (a batch of one through the shared transition path);
    with `namespace_id`, a job of another namespace is NOT_FOUND."""
    return await _apply_one(db, ResultIn(job_id, attempt, True, result, namespace_id=namespace_id), tally)


async def fail(
    db: Database,
    job_id: uuid.UUID,
    attempt: int | None,
    error: str,
    *,
    non_retryable: bool,
    namespace_id: str | None = None,
    tally: Tally | None = None,
) -> Job:
    """Record a failure: retry after backoff, or fail for good and skip
    descendants; `namespace_id` as in `complete`."""
    item = ResultIn(job_id, attempt, False, {}, error, non_retryable, namespace_id=namespace_id)
    return await _apply_one(db, item, tally)


@dataclass(frozen=True)
class StandaloneJob:
    """One standalone run (no DAG) of a definition version, enqueued READY."""

    job_id: uuid.UUID
    namespace_id: str
    def_id: uuid.UUID
    key: str
    kind: str
    max_attempts: int
    priority: int
    payload: dict[str, Any]
    # None: due now (Tick); a cron fire is due at its scheduled time.
    due_time: datetime | None = None

    @classmethod
    def of(
        cls,
        definition: Definition | ActiveSchedule,
        job_id: uuid.UUID,
        *,
        payload: dict[str, Any] | None = None,
        due_time: datetime | None = None,
    ) -> StandaloneJob:
        """A run of `definition`: its template merged with `payload`."""
        return cls(
            job_id=job_id,
            namespace_id=definition.namespace_id,
            def_id=definition.def_id,
            key=definition.name,
            kind=definition.kind,
            max_attempts=definition.max_attempts,
            priority=definition.default_priority,
            payload=cls.merged(definition.payload_template, payload),
            due_time=due_time,
        )

    @staticmethod
    def merged(template: dict[str, Any], payload: dict[str, Any] | None) -> dict[str, Any]:
        """A run's payload: the definition's template with the run's keys over it."""
        return {**template, **(payload or {})}


def _payload_problems(kind: str, payload: dict[str, Any]) -> Violations:
    """What a built-in kind refuses in a run's merged payload (empty: none)."""
    v = Violations()
    check_kind_payload(v, "payload", kind, payload)
    return v


async def insert_standalone(conn: Conn, items: Sequence[StandaloneJob]) -> None:
    """Enqueue standalone jobs READY (claimable at once), in the caller's
    transaction: the one path shared by Tick and the cron scheduler."""
    if not items:
        return
    await execute(
        conn,
        "insert_standalone_jobs",
        {
            "job_ids": [i.job_id for i in items],
            "namespace_ids": [i.namespace_id for i in items],
            "def_ids": [i.def_id for i in items],
            "keys": [i.key for i in items],
            "max_attempts": [i.max_attempts for i in items],
            "priorities": [i.priority for i in items],
            "payloads": [json.dumps(i.payload) for i in items],
            "kinds": [i.kind for i in items],
            "due_times": [i.due_time for i in items],
        },
    )


@dataclass(frozen=True, slots=True)
class LeaseTo:
    """A connected worker with a slot held for the run: Tick may start the
    job for it at once, leased as a claim would lease it."""

    worker_id: str
    lease: timedelta


def known_kind(namespace_id: str, def_id: uuid.UUID) -> str | None:
    """The kind of a version this process has read already (no I/O); None
    when it has not, and then Tick cannot hand the run off to a worker."""
    version = definitions.known(namespace_id, def_id)
    return None if version is None else version.kind


async def tick(
    db: Database,
    namespace_id: str,
    def_id: uuid.UUID,
    payload: dict[str, Any] | None,
    request_id: str,
    tally: Tally | None = None,
    lease_to: LeaseTo | None = None,
) -> Job:
    """Enqueue one standalone run of a definition version now (READY,
    claimable at once); a new one (not a replay) goes into `tally.created`. With
    `lease_to` (and no `request_id`: a replay must never be sent to a worker
    again), the one-statement path may instead start it RUNNING for that
    worker (tick_one says when); the other paths ignore it."""
    assert not (request_id and lease_to), "a Tick with a request_id is never handed off"
    job = await _tick_one_statement(db, namespace_id, def_id, payload, lease_to, request_id)
    if job is None:
        if request_id:
            return await _tick_idempotent(db, namespace_id, def_id, payload, request_id, tally)
        job = await _tick_pipelined(db, namespace_id, def_id, payload)
    if tally is not None:
        tally.created[job.namespace_id, job.kind] += 1
    return job


async def _tick_idempotent(
    db: Database,
    namespace_id: str,
    def_id: uuid.UUID,
    payload: dict[str, Any] | None,
    request_id: str,
    tally: Tally | None,
) -> Job:
    """Tick with a request_id the one statement did not take: a replay (the
    first call's job), a version not read here yet, or something to refuse
    (which this path names)."""
    async with db.transaction() as conn:
        await namespaces.hold(conn, namespace_id)
        definition = await definitions.find(conn, namespace_id, def_id)
        idem = namespaces.RequestIds(conn, namespace_id, TICK, request_id)
        earlier = await idem.claim()
        if earlier is not None:
            return await _reload(conn, earlier[0])
        definition = await definitions.find_live(conn, namespace_id, def_id)
        job_id = uuid7()
        run = StandaloneJob.of(definition, job_id, payload=payload)
        _payload_problems(definition.kind, run.payload).raise_if_any()
        await insert_standalone(conn, [run])
        await idem.record([job_id])
        job = await _reload(conn, job_id)
    _remember(namespace_id, def_id, definition)
    if tally is not None:
        tally.created[job.namespace_id, job.kind] += 1
    return job


# Tick's method name in request_ids (idempotency keys are per method).
TICK = "Tick"


def _remember(namespace_id: str, def_id: uuid.UUID, definition: Definition) -> None:
    definitions.remember(namespace_id, def_id, definition.kind, definition.payload_template)


async def enqueue(
    db: Database, namespace_id: str, runs: Sequence[dags.NewJob], request_id: str, tally: Tally | None = None
) -> list[str]:
    """Enqueue standalone runs READY and due now, all in one transaction,
    and return their ids in the order of `runs` (a replay of `request_id`:
    the original call's ids, and nothing is made); the new ones go into
    `tally.created`. In steps, as dags.create takes them."""
    async with db.steps() as conn:
        idem = namespaces.RequestIds(conn, namespace_id, "EnqueueJobs", request_id)
        async with conn.pipeline():
            opening = await dags.open_steps(conn, namespace_id, idem, runs)
        answers = await opening.answers()
        if isinstance(answers, list):
            return [str(job_id) for job_id in answers]
        now, checked = answers

        async def write() -> list[str]:
            return await dags.insert_jobs(
                conn, namespace_id, None, runs, [0] * len(runs), now, tally, checked
            )

        ids = await opening.close(
            conn, not dags.copies(len(runs)), write, lambda ids: [uuid.UUID(job_id) for job_id in ids]
        )
    dags.after_bulk_load(db, len(runs))
    return ids


async def _tick_one_statement(
    db: Database,
    namespace_id: str,
    def_id: uuid.UUID,
    payload: dict[str, Any] | None,
    lease_to: LeaseTo | None,
    request_id: str,
) -> Job | None:
    """Tick in one round trip once the version is known here: the payload
    is merged and checked first, then one autocommit statement holds,
    inserts (with the request_id's key, if any) and reads back. None when
    the version is not known yet, or the statement made nothing (namespace
    or version missing, or retired; or the key was there: a replay): the
    caller's other path then tells which."""
    version = definitions.known(namespace_id, def_id)
    if version is None:
        return None
    merged = StandaloneJob.merged(version.payload_template, payload)
    if _payload_problems(version.kind, merged).items:
        return None  # refused by the two-trip path, after what it checks first
    params = {
        "namespace_id": namespace_id,
        "def_id": def_id,
        "kind": version.kind,
        "job_id": uuid7(),
        "payload": json.dumps(merged),
        "worker_id": lease_to.worker_id if lease_to else None,
        "lease": lease_to.lease if lease_to else None,
        "method": TICK,
        "request_id": request_id or None,
    }
    async with db.statement() as conn:
        return await fetch_record(conn, Job, "tick_one", params)


async def _tick_pipelined(
    db: Database, namespace_id: str, def_id: uuid.UUID, payload: dict[str, Any] | None
) -> Job:
    """Tick without a request id in two round trips (the first of a version
    in this process, or to say what is missing): BEGIN and the two holds
    (namespace, definition) go out together; the insert, the read-back and
    COMMIT go out together once the definition is checked here. The same
    statements, locks and checks as the idempotent path, in fewer trips."""
    async with db.pipelined_transaction() as conn:
        sent_hold = await namespaces.send_hold(conn, namespace_id)
        key = {"namespace_id": namespace_id, "def_id": def_id}
        held_def = await pending_records(conn, "hold_definition", key, Definition)
        await namespaces.held(sent_hold, namespace_id)
        found = await held_def.fetch()
        if not found:
            raise NotFound("definition", str(def_id), namespace_id=namespace_id)
        definition = definitions.raise_if_retired(found[0])
        _remember(namespace_id, def_id, definition)
        job_id = uuid7()
        run = StandaloneJob.of(definition, job_id, payload=payload)
        _payload_problems(definition.kind, run.payload).raise_if_any()
        await insert_standalone(conn, [run])
        made = await _send_reload(conn, job_id)
    (job,) = await made.fetch()
    return job
