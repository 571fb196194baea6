"""What /metrics reads from the database and the pool, and the tally that
storage calls fill for the job counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from chronosched_server.storage.db import Database, fetch_records
from chronosched_server.storage.records import FrontierCount
from chronosched_server.transitions import Outcome

# (namespace_id, kind)
Pair = tuple[str, str]


@dataclass
class Tally:
    """Jobs a storage call changed, by namespace and kind, for the caller to
    add to its counters once the call has returned (so committed); a call
    that raised may have filled part of it, which is then dropped. Filled
    only from what the statements return anyway: counting costs no round
    trip. A call that only replays an earlier request (same request id)
    adds nothing."""

    created: Counter[Pair] = field(default_factory=Counter)
    skipped: Counter[Pair] = field(default_factory=Counter)
    cancelled: Counter[Pair] = field(default_factory=Counter)
    # Results applied through a unary call (CompleteJob, FailJob).
    finished: Counter[tuple[str, str, Outcome]] = field(default_factory=Counter)


async def frontier_counts(db: Database) -> list[FrontierCount]:
    async with db.transaction() as conn:
        return await fetch_records(conn, FrontierCount, "frontier_counts", {})


def pool_stats(db: Database) -> dict[str, int]:
    """Connections in use, idle in the pool, and requests waiting for one."""
    stats = db.pool.get_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    return {"in_use": size - idle, "idle": idle, "waiting": stats.get("requests_waiting", 0)}
