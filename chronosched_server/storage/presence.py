"""Presence of open Dequeue streams across server replicas (migration 0008):
what ListWorkers reads. Each replica writes only its own rows; any replica
deletes rows that expired (their replica died without closing them)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from chronosched_server.storage.db import Conn, Database, execute, fetch_one, fetch_records
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
    more seconds, drop every expired row, and note the (namespace, kind)
    pairs served: four statements, whatever the number of streams."""
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
    pairs = sorted({(ns, kind) for s in streams for ns in (s.namespaces or [""]) for kind in s.kinds})
    if pairs:
        await execute(
            conn,
            "touch_served_kinds",
            {"scopes": [ns for ns, _ in pairs], "kinds": [kind for _, kind in pairs]},
        )


async def kind_served_since(conn: Conn, namespace_id: str, kind: str, window_s: float) -> bool:
    """Whether a worker serves `kind` in the namespace now, or did within
    `window_s` seconds (CreateDefinition's warning)."""
    row = await fetch_one(
        conn, "kind_served_since", {"namespace_id": namespace_id, "kind": kind, "window_s": window_s}
    )
    return bool(row and row["served"])


async def list_page(
    db: Database, namespace_id: str | None, after: tuple[str, uuid.UUID] | None, limit: int
) -> list[WorkerPresence]:
    """Unexpired streams in (worker_id, stream_id) order after `after`; with
    `namespace_id`, only those serving it."""
    async with db.reads() as conn:
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
