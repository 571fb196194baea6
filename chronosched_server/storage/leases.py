"""Leases: claiming frontier jobs for a worker, extending and reaping leases,
and telling servers which running attempts were cancelled."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from chronosched_server import transitions
from chronosched_server.storage.db import Conn, execute, fetch_all
from chronosched_server.storage.queries import q
from chronosched_server.storage.results import dags_finished, fail_one, requeue

if TYPE_CHECKING:
    from chronosched_server.dispatch.streams import WorkerStream

REAP_BATCH = 500
# pg_notify payloads must stay under 8000 bytes; a ref is ~40.
_REFS_PER_NOTIFY = 150


async def claim(conn: Conn, stream: WorkerStream, n: int, lease: timedelta) -> AsyncCursor[DictRow]:
    """Queue the claim; the caller fetches the claimed rows (so it can pipeline)."""
    return await conn.execute(
        q("claim_jobs_any" if stream.all_namespaces else "claim_jobs_in"),
        {
            "namespaces": stream.namespaces,
            "kinds": stream.kinds,
            "n": n,
            "lease": lease,
            "worker_id": stream.worker_id,
        },
    )


async def extend(conn: Conn, refs: dict[uuid.UUID, int], lease: timedelta) -> AsyncCursor[DictRow]:
    """Queue the extension of running attempts' leases; stale attempts are
    left alone. The caller fetches (job_id, attempt, lease_expire_time) of
    those extended, once it no longer pipelines."""
    ids = sorted(refs)
    return await conn.execute(
        q("extend_leases"), {"job_ids": ids, "attempts": [refs[i] for i in ids], "lease": lease}
    )


async def release_unsent(conn: Conn, refs: dict[uuid.UUID, int]) -> int:
    ids = sorted(refs)
    return await execute(conn, "release_unsent", {"job_ids": ids, "attempts": [refs[i] for i in ids]})


async def reap(conn: Conn) -> tuple[int, int]:
    """Expired leases: back to READY with attempt + 1 (after backoff), or FAILED
    when the attempts are spent. Returns (requeued, failed)."""
    rows = await fetch_all(conn, "lock_expired_leases", {"limit": REAP_BATCH})
    return await _take_back(conn, rows, "lease expired")


async def reclaim(conn: Conn, worker_id: str, holding: dict[uuid.UUID, int]) -> tuple[int, int]:
    """Leases the database gives `worker_id` beyond the attempts it says it
    holds (`holding`, from its Subscribe): assignments it never received, lost
    with a dropped stream or a killed server, or attempts of an earlier process
    with the same id. Taken back as if their leases had expired, at once
    instead of a lease period later. Returns (requeued, failed)."""
    ids = sorted(holding)
    rows = await fetch_all(
        conn,
        "lock_unheld_leases",
        {"worker_id": worker_id, "job_ids": ids, "attempts": [holding[i] for i in ids]},
    )
    return await _take_back(conn, rows, "worker reconnected without it")


async def _take_back(conn: Conn, rows: list[DictRow], why: str) -> tuple[int, int]:
    again: list[tuple[uuid.UUID, str, timedelta, str]] = []
    finished: Counter[uuid.UUID] = Counter()
    failed_dags: set[uuid.UUID] = set()
    failed = 0
    for row in rows:
        error = f"{why} on attempt {row['attempt']} (worker {row['worker_id'] or 'unknown'})"
        if row["attempt"] < row["max_attempts"]:
            delay = transitions.backoff(
                row["attempt"], row["backoff_initial"], row["backoff_max"], row["backoff_multiplier"]
            )
            again.append((row["job_id"], error, delay, row["kind"]))
            continue
        failed += 1
        skipped = await fail_one(conn, row["job_id"], row["dag_id"], f"{error}; no attempts left")
        if row["dag_id"] is not None:
            finished[row["dag_id"]] += 1 + skipped
            failed_dags.add(row["dag_id"])
    if again:
        await requeue(conn, again)
    await dags_finished(conn, finished, failed_dags)
    return len(again), failed


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
