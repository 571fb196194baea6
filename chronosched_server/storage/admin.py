"""Operator maintenance: prune finished work into history."""

from __future__ import annotations

from datetime import timedelta

from chronosched_server.storage import namespaces
from chronosched_server.storage.db import Database, fetch_one


async def prune(db: Database, older_than: timedelta, namespace_id: str | None) -> tuple[int, int, int]:
    """Move finished DAGs (with jobs and edges) and finished standalone jobs to history.

    Returns (dags, jobs, dependencies) moved.
    """
    async with db.transaction() as conn:
        if namespace_id is not None:
            await namespaces.require(conn, namespace_id)
        row = await fetch_one(conn, "prune", {"older_than": older_than, "namespace_id": namespace_id})
    assert row is not None
    return row["dags_pruned"], row["jobs_pruned"], row["dependencies_pruned"]
