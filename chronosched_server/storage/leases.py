"""Leases: claiming READY jobs for a worker, extending and reaping leases,
and telling servers which running attempts were cancelled."""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from psycopg.rows import DictRow

from chronosched_server import transitions
from chronosched_server.storage.db import Conn, Pending, execute, fetch_all, pending_records
from chronosched_server.storage.records import Job, LeaseExtension
from chronosched_server.storage.results import Writes, dags_finished, write

REAP_BATCH = 500
# pg_notify payloads must stay under 8000 bytes; a ref is ~40.
_REFS_PER_NOTIFY = 150


@dataclass(frozen=True)
class Holder:
    """A worker stream as the database's leases know it: its worker id, and
    the one namespace its token is limited to (None: every namespace)."""

    worker_id: str
    namespace_id: str | None = None


@dataclass(frozen=True)
class ClaimSpec:
    """Whom a claim is for: a worker, what it serves."""

    worker_id: str
    namespaces: list[str]
    all_namespaces: bool
    kinds: list[str]


# Above this many (namespace, kind) pairs a claim walks the global priority
# index instead of probing each pair (claim_jobs_any says why).
MANY_PAIRS = 64


@functools.lru_cache(maxsize=256)
def _text_array(items: tuple[str, ...]) -> str:
    """`items` as a text[] literal, rendered once per distinct list. A worker
    may name up to 1,000 namespaces, and psycopg dumped such a list anew for
    every claim: 18% of the server's time while one worker named 1,000
    namespaces (py-spy). Sent as text, PostgreSQL parses the literal for the
    statement's `::text[]` cast. Every element is quoted, so any text works."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def claim_query(spec: ClaimSpec) -> str:
    """Which claim statement serves `spec`."""
    if spec.all_namespaces or len(spec.namespaces) * len(spec.kinds) > MANY_PAIRS:
        return "claim_jobs_any"
    return "claim_jobs_in"


async def claim(conn: Conn, spec: ClaimSpec, n: int, lease: timedelta) -> Pending[Job]:
    """Send the claim of up to `n` jobs; the caller fetches them (so it can pipeline)."""
    return await pending_records(
        conn,
        claim_query(spec),
        {
            "namespaces": _text_array(tuple(spec.namespaces)),
            "all_namespaces": spec.all_namespaces,
            "kinds": spec.kinds,
            "n": n,
            "lease": lease,
            "worker_id": spec.worker_id,
        },
        Job,
    )


async def extend(
    conn: Conn, refs: dict[uuid.UUID, tuple[int, Holder]], lease: timedelta
) -> Pending[LeaseExtension]:
    """Send the extension of running attempts' leases, each (attempt, the
    stream that asked); stale attempts and attempts leased to another
    worker or outside the stream's namespace are left alone. The caller
    fetches those extended once it no longer pipelines."""
    ids = sorted(refs)
    return await pending_records(
        conn,
        "extend_leases",
        {
            "job_ids": ids,
            "attempts": [refs[i][0] for i in ids],
            "worker_ids": [refs[i][1].worker_id for i in ids],
            "namespace_ids": [refs[i][1].namespace_id for i in ids],
            "lease": lease,
        },
        LeaseExtension,
    )


async def release_unsent(conn: Conn, refs: dict[uuid.UUID, int]) -> int:
    ids = sorted(refs)
    return await execute(conn, "release_unsent", {"job_ids": ids, "attempts": [refs[i] for i in ids]})


async def reap(conn: Conn, skipped: Counter[tuple[str, str]] | None = None) -> tuple[int, int]:
    """Expired leases: back to READY with attempt + 1 (after backoff), or FAILED
    when the attempts are spent. Returns (requeued, failed); the jobs a
    failure skipped are added to `skipped`."""
    rows = await fetch_all(conn, "lock_expired_leases", {"limit": REAP_BATCH})
    return await _take_back(conn, rows, "lease expired", skipped)


async def reclaim(
    conn: Conn,
    holder: Holder,
    holding: dict[uuid.UUID, int],
    skipped: Counter[tuple[str, str]] | None = None,
) -> tuple[int, int]:
    """Leases the database gives `holder`'s worker id (in its namespace)
    beyond the attempts it says it holds (`holding`, from its Subscribe):
    assignments it never received, lost with a dropped stream or a killed
    server, or attempts of an earlier process with the same id. Taken back
    as if their leases had expired, at once instead of a lease period later.
    Returns (requeued, failed); skips as in `reap`."""
    ids = sorted(holding)
    rows = await fetch_all(
        conn,
        "lock_unheld_leases",
        {
            "worker_id": holder.worker_id,
            "namespace_id": holder.namespace_id,
            "job_ids": ids,
            "attempts": [holding[i] for i in ids],
        },
    )
    return await _take_back(conn, rows, "worker reconnected without it", skipped)


async def held(conn: Conn, holder: Holder, holding: dict[uuid.UUID, int]) -> dict[uuid.UUID, int]:
    """Of the attempts a Subscribe says it holds, those the database leases
    to `holder` (RUNNING at that attempt, its worker id, its namespace): the
    ones its stream adopts. The rest are not the worker's to hold."""
    ids = sorted(holding)
    rows = await fetch_all(
        conn,
        "leased_to",
        {
            "worker_id": holder.worker_id,
            "namespace_id": holder.namespace_id,
            "job_ids": ids,
            "attempts": [holding[i] for i in ids],
        },
    )
    return {row["job_id"]: row["attempt"] for row in rows}


async def _take_back(
    conn: Conn, rows: list[DictRow], why: str, skipped: Counter[tuple[str, str]] | None
) -> tuple[int, int]:
    """A lease that ended without a result is a failed attempt: the rule book
    (transitions.decide_fail) picks retry or fail, and the shared writer
    applies it. Returns (requeued, failed)."""
    writes = Writes([], [], [])
    for row in rows:
        error = f"{why} on attempt {row['attempt']} (worker {row['worker_id'] or 'unknown'})"
        facts = transitions.JobFacts("RUNNING", row["attempt"], row["max_attempts"])
        outcome = transitions.decide_fail(facts, row["attempt"], non_retryable=False)
        if outcome is transitions.Outcome.RETRY:
            delay = transitions.backoff(
                row["attempt"], row["backoff_initial"], row["backoff_max"], row["backoff_multiplier"]
            )
            writes.retried.append((row["job_id"], error, delay))
        else:
            writes.failed.append((row["job_id"], row["dag_id"], f"{error}; no attempts left"))
    tally = await write(conn, writes)
    await dags_finished(conn, tally.finished, tally.failed)
    if skipped is not None:
        skipped.update(tally.skipped)
    return len(writes.retried), len(writes.failed)


async def notify_cancelled(conn: Conn, refs: list[DictRow], reason: str) -> None:
    """Tell every server (including this one) to push cancels for these attempts.

    Payload: `reason|job_id:attempt,job_id:attempt,...` (reason has no `|`).
    """
    for start in range(0, len(refs), _REFS_PER_NOTIFY):
        chunk = refs[start : start + _REFS_PER_NOTIFY]
        payload = reason.replace("|", "/") + "|" + ",".join(f"{r['job_id']}:{r['attempt']}" for r in chunk)
        await execute(conn, "notify_cancel", {"payload": payload})


def parse_cancel_payload(payload: str) -> tuple[str, list[tuple[uuid.UUID, int]]]:
    reason, _, body = payload.partition("|")
    refs: list[tuple[uuid.UUID, int]] = []
    for part in body.split(","):
        job_id, _, attempt = part.partition(":")
        try:
            refs.append((uuid.UUID(job_id), int(attempt)))
        except ValueError:
            continue
    return reason, refs
