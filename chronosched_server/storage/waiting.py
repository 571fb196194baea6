"""Reads the facts behind Job.waiting for a page of jobs, in the page's own
transaction: at most two statements, whatever the page size, and none when
the page holds no PENDING or READY job."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from chronosched_server import waiting
from chronosched_server.storage.db import Conn, fetch_all
from chronosched_server.storage.records import Job


async def facts(conn: Conn, namespace_id: str, jobs: Sequence[Job]) -> waiting.Facts:
    pending_ids = [j.job_id for j in jobs if j.state == "PENDING"]
    kinds = sorted({j.kind for j in jobs if waiting.needs_facts(j)})
    pending: dict[uuid.UUID, waiting.Pending] = {}
    if pending_ids:
        rows = await fetch_all(
            conn, "waiting_pending", {"job_ids": pending_ids, "shown": waiting.PARENTS_SHOWN}
        )
        parents: dict[uuid.UUID, list[waiting.Parent]] = {}
        for row in rows:
            shown = parents.setdefault(row["job_id"], [])
            if row["parent_job_id"] is not None:
                shown.append(waiting.Parent(row["parent_key"], row["parent_job_id"], row["parent_state"]))
            pending[row["job_id"]] = waiting.Pending(row["dag_state"], row["unfinished"], shown)
    if not kinds:
        return waiting.Facts(pending=pending)
    rows = await fetch_all(conn, "waiting_capacity", {"namespace_id": namespace_id, "kinds": kinds})
    capacity = {r["kind"]: waiting.Capacity(r["workers"], r["slots"], r["in_flight"]) for r in rows}
    return waiting.Facts(now=rows[0]["now"], pending=pending, capacity=capacity)
