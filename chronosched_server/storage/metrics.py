"""What /metrics reads from the database and the pool."""

from __future__ import annotations

from chronosched_server.storage.db import Database, fetch_records
from chronosched_server.storage.records import FrontierCount


async def frontier_counts(db: Database) -> list[FrontierCount]:
    async with db.transaction() as conn:
        return await fetch_records(conn, FrontierCount, "frontier_counts", {})


def pool_stats(db: Database) -> dict[str, int]:
    """Connections in use, idle in the pool, and requests waiting for one."""
    stats = db.pool.get_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    return {"in_use": size - idle, "idle": idle, "waiting": stats.get("requests_waiting", 0)}
