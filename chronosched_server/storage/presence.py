"""Presence of open Dequeue streams across server replicas (migration 0008):
what ListWorkers reads. Each replica writes only its own rows; any replica
deletes rows that expired (their replica died without closing them)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from chronosched_server.storage.db import Conn, Database, execute, fetch_records
from chronosched_server.storage.records import WorkerPresence


@dataclass(frozen=True)
class OpenStream:
    """One stream a replica holds now, as it writes it."""

    stream_id: uuid.UUID
    worker_id: str
    namespaces: list[str]
    all_namespaces: bool
    kinds: list[str]
    slots: int
    jobs_in_flight: int
    # Seconds since the replica last heard from the worker.
    silent_s: float
    # Seconds since the stream subscribed.
    connected_s: float


async def sync(conn: Conn, replica_id: str, streams: list[OpenStream], ttl_s: float) -> None:
    """Make the replica's rows exactly `streams`, each valid for `ttl_s`
    more seconds, and drop every expired row: three statements, whatever the
    number of streams."""
    rows = [
        {
            "stream_id": str(s.stream_id),
            "worker_id": s.worker_id,
            "namespaces": s.namespaces,
            "all_namespaces": s.all_namespaces,
            "kinds": s.kinds,
            "slots": s.slots,
            "jobs_in_flight": s.jobs_in_flight,
            "silent_s": max(0.0, s.silent_s),
            "connected_s": max(0.0, s.connected_s),
        }
        for s in streams
    ]
    await execute(
        conn,
        "delete_closed_worker_streams",
        {"replica_id": replica_id, "open": [s.stream_id for s in streams]},
    )
    if rows:
        await execute(
            conn,
            "upsert_worker_streams",
            {"replica_id": replica_id, "streams": json.dumps(rows), "ttl_s": ttl_s},
        )
    await execute(conn, "delete_expired_worker_streams", {})


async def list_page(
    db: Database, namespace_id: str | None, after: tuple[str, uuid.UUID] | None, limit: int
) -> list[WorkerPresence]:
    """Unexpired streams in (worker_id, stream_id) order after `after`; with
    `namespace_id`, only those serving it."""
    async with db.transaction() as conn:
        return await fetch_records(
            conn,
            WorkerPresence,
            "list_worker_streams",
            {
                "namespace_id": namespace_id,
                "after_worker": after[0] if after else None,
                "after_stream": after[1] if after else None,
                "limit": limit,
            },
        )
