"""Applying job results in batches: the one transition path.

The unary CompleteJob/FailJob apply a batch of one; the Dequeue stream
applies everything that arrived since the last commit (group commit). Rows
are locked once, decisions are pure (`transitions`), and writes are set-based,
so a batch of N results costs a handful of statements, not N times as many.

The dispatcher first sends plain successes through `succeed_jobs` with their
attempt as the fence, which needs no lock-and-decide round trip; whatever that
statement did not complete takes the full path here.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, NamedTuple

from psycopg.rows import DictRow

from chronosched_server import transitions
from chronosched_server.errors import DomainError, NotFound
from chronosched_server.storage.db import Conn, Pending, execute, fetch_all, pending
from chronosched_server.transitions import JobFacts, Outcome


class ResultIn(NamedTuple):
    """One reported outcome; `attempt` None is an operator action (no fence).
    A tuple, as ResultOut: a stream builds one of each per result, and a
    frozen dataclass's constructor costs several times as much.

    `namespace_id` limits it to a job of that namespace (the caller's token,
    or the request): a job elsewhere is NOT_FOUND, as a missing one is.
    `worker_id` (a worker stream's results) limits it to an attempt leased
    to that worker (transitions, JOB_NOT_HELD)."""

    job_id: uuid.UUID
    attempt: int | None
    success: bool
    result: dict[str, Any]
    error: str = ""
    non_retryable: bool = False
    namespace_id: str | None = None
    worker_id: str | None = None


# One success for `succeed_jobs`: job, attempt fence, result JSON, namespace
# limit and lease holder (None: unchecked), and whether the caller decided
# it already (True: applied as it is; False: only where the rule book says
# SUCCEED, checked by the statement).
Plain = tuple[uuid.UUID, int | None, str, str | None, str | None, bool]


class ResultOut(NamedTuple):
    """`rejected` is set when the result changed nothing and was refused."""

    changed: bool
    rejected: DomainError | None = None
    # What the result did (for metrics); None when refused or unknown.
    outcome: Outcome | None = None


@dataclass
class Writes:
    succeeded: list[tuple[uuid.UUID, str]]  # job, result json
    retried: list[tuple[uuid.UUID, str, timedelta]]  # job, error, delay
    failed: list[tuple[uuid.UUID, uuid.UUID | None, str]]  # job, dag, error


async def apply_results(
    conn: Conn, items: list[ResultIn], skipped: Counter[tuple[str, str]] | None = None
) -> list[ResultOut]:
    """Apply results in the caller's transaction, in order; rejections write
    nothing. Jobs skipped by a failure are added to `skipped` (namespace, kind).
    Meant for a pipelined transaction (`Database.pipelined_transaction`):
    BEGIN travels with the lock, and the writes with whatever follows them
    and the COMMIT."""
    writes, outs = await decide(conn, items)
    tally = await write(conn, writes)
    await dags_finished(conn, tally.finished, tally.failed)
    if skipped is not None:
        skipped.update(tally.skipped)
    return outs


async def decide(conn: Conn, items: list[ResultIn]) -> tuple[Writes, list[ResultOut]]:
    """Lock the jobs (one round trip) and decide every result; nothing written yet."""
    writes = Writes([], [], [])
    if not items:
        return writes, []
    rows = await fetch_all(conn, "lock_jobs", {"job_ids": sorted({i.job_id for i in items})})
    jobs = {row["job_id"]: row for row in rows}
    facts = {
        job_id: JobFacts(row["state"], row["attempt"], row["max_attempts"], row["worker_id"])
        for job_id, row in jobs.items()
    }
    outs: list[ResultOut] = []
    for item in items:
        row = jobs.get(item.job_id)
        if row is None or (item.namespace_id is not None and row["namespace_id"] != item.namespace_id):
            # The same answer for a job of another namespace as for none.
            outs.append(ResultOut(False, NotFound("job", str(item.job_id))))
            continue
        try:
            if item.success:
                outcome = transitions.decide_complete(facts[item.job_id], item.attempt, by=item.worker_id)
            else:
                outcome = transitions.decide_fail(
                    facts[item.job_id], item.attempt, non_retryable=item.non_retryable, by=item.worker_id
                )
        except DomainError as exc:
            outs.append(ResultOut(False, exc))
            continue
        # Later results in the same batch must see this one's effect (a
        # duplicate becomes an ACK, a result for the old attempt is stale).
        current = facts[item.job_id]
        if outcome is Outcome.SUCCEED:
            facts[item.job_id] = replace(current, state="SUCCEEDED")
            writes.succeeded.append((item.job_id, json.dumps(item.result)))
        elif outcome is Outcome.RETRY:
            facts[item.job_id] = replace(current, state="READY", attempt=current.attempt + 1, worker_id="")
            delay = transitions.backoff(
                current.attempt, row["backoff_initial"], row["backoff_max"], row["backoff_multiplier"]
            )
            writes.retried.append((item.job_id, item.error, delay))
        elif outcome is Outcome.FAIL:
            facts[item.job_id] = replace(current, state="FAILED")
            writes.failed.append((item.job_id, row["dag_id"], item.error))
        outs.append(ResultOut(outcome is not Outcome.ACK, outcome=outcome))
    return writes, outs


@dataclass
class DagTally:
    """Terminal jobs per DAG from one batch, the DAGs one of them failed,
    and the jobs their failures skipped by (namespace, kind)."""

    finished: Counter[uuid.UUID]
    failed: set[uuid.UUID]
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)


async def write(conn: Conn, w: Writes) -> DagTally:
    """Apply decided results set-based. Successes carry their DAG counters in
    their own statement; failures' counters are returned for the caller to
    apply last (`dags_finished`), so a failing DAG's row is locked only until
    the commit. Safe inside a pipeline block: only the rare final failures
    wait for an answer (their skip count)."""
    finished: Counter[uuid.UUID] = Counter()
    if w.succeeded:
        await succeed(conn, [(job, None, result, None, None, True) for job, result in w.succeeded])
    if w.retried:
        await requeue(conn, w.retried)
    failed_dags: set[uuid.UUID] = set()
    skipped: Counter[tuple[str, str]] = Counter()
    for job_id, dag_id, error in w.failed:
        by_kind = await fail_one(conn, job_id, dag_id, error)
        skipped.update(by_kind)
        if dag_id is not None:
            finished[dag_id] += 1 + by_kind.total()
            failed_dags.add(dag_id)
    return DagTally(finished, failed_dags, skipped)


async def succeed(conn: Conn, items: list[Plain]) -> Pending[uuid.UUID]:
    """Send `succeed_jobs` for each `Plain` success: the ids of the jobs it
    completed, fetched whenever the caller can wait (so a pipeline keeps
    going)."""
    return await pending(
        conn,
        "succeed_jobs",
        {
            "job_ids": [i[0] for i in items],
            "attempts": [i[1] for i in items],
            "results": [i[2] for i in items],
            "namespace_ids": [i[3] for i in items],
            "worker_ids": [i[4] for i in items],
            "decided": [i[5] for i in items],
        },
        _job_id,
    )


def _job_id(row: DictRow) -> uuid.UUID:
    job_id: uuid.UUID = row["job_id"]
    return job_id


def undecided(item: ResultIn) -> Plain:
    """A success for `succeed_jobs` to check against the rule book itself."""
    return item.job_id, item.attempt, json.dumps(item.result), item.namespace_id, item.worker_id, False


def fast_path(items: list[ResultIn]) -> list[bool]:
    """Which results may go through `succeed_jobs` with their attempt before
    anything is locked: successes with an attempt, for a job no other result
    in the batch names (so the order of results for one job never matters)."""
    per_job = Counter(i.job_id for i in items)
    return [i.success and i.attempt is not None and per_job[i.job_id] == 1 for i in items]


async def requeue(conn: Conn, items: list[tuple[uuid.UUID, str, timedelta]]) -> None:
    """READY again with attempt + 1 after the given delays (retries and expired leases)."""
    await execute(
        conn,
        "retry_jobs",
        {
            "job_ids": [i[0] for i in items],
            "errors": [i[1] for i in items],
            "delays": [i[2] for i in items],
        },
    )


async def fail_one(
    conn: Conn, job_id: uuid.UUID, dag_id: uuid.UUID | None, error: str
) -> Counter[tuple[str, str]]:
    """FAILED, descendants SKIPPED; returns how many were skipped by
    (namespace, kind)."""
    await execute(conn, "fail_job", {"job_id": job_id, "error": error})
    if dag_id is None:
        return Counter()
    rows = await fetch_all(conn, "skip_descendants", {"job_id": job_id, "dag_id": dag_id})
    return Counter({(row["namespace_id"], row["kind"]): int(row["skipped"]) for row in rows})


async def dags_finished(conn: Conn, finished: Counter[uuid.UUID], failed: set[uuid.UUID]) -> None:
    if not finished:
        return
    dag_ids = sorted(finished)
    await execute(
        conn,
        "dag_jobs_finished",
        {
            "dag_ids": dag_ids,
            "finished": [finished[d] for d in dag_ids],
            "failed": [d in failed for d in dag_ids],
        },
    )
