"""Operator maintenance: moving finished work into history (manual Prune and
the retention loop share one batched statement), and the lock that makes one
replica the retention leader."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from chronosched_server.errors import Unavailable
from chronosched_server.storage import namespaces
from chronosched_server.storage.db import Database, fetch_one, translate
from chronosched_server.storage.queries import q

# What Prune moves when the request names no older_than.
DEFAULT_OLDER_THAN = timedelta(days=7)
# Jobs per transaction of a manual Prune (see the `prune` statement for how
# DAGs count against it).
DEFAULT_BATCH = 1000


@dataclass(frozen=True)
class Pruned:
    """What moved to history: by one batch, or added up over a whole prune."""

    dags: int = 0
    jobs: int = 0
    dependencies: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(self.dags + other.dags, self.jobs + other.jobs, self.dependencies + other.dependencies)


@dataclass(frozen=True)
class PruneBatch:
    """One batch: what it moved, the cutoff it used, and whether another
    batch may find more (a limit was reached)."""

    pruned: Pruned
    cutoff: datetime
    more: bool


async def prune_batch(
    db: Database,
    older_than: timedelta,
    namespace_id: str | None,
    *,
    batch: int,
    cutoff: datetime | None = None,
) -> PruneBatch:
    """Move one batch of finished work that ended before `cutoff` (default:
    `older_than` before the database's now) to history, in one transaction."""
    async with db.transaction() as conn:
        if namespace_id is not None:
            await namespaces.require(conn, namespace_id)
        row = await fetch_one(
            conn,
            "prune",
            {"older_than": older_than, "namespace_id": namespace_id, "batch": batch, "cutoff": cutoff},
        )
    assert row is not None
    return PruneBatch(
        pruned=Pruned(row["dags_pruned"], row["jobs_pruned"], row["dependencies_pruned"]),
        cutoff=row["cutoff"],
        more=row["more"],
    )


async def prune(
    db: Database, older_than: timedelta, namespace_id: str | None, *, batch: int = DEFAULT_BATCH
) -> Pruned:
    """Move finished DAGs (with jobs and edges) and finished standalone jobs
    to history, batch after batch until a batch is not full; returns the
    totals. Each batch commits on its own, so this is not one snapshot: work
    another transaction holds is skipped (the next prune or the retention
    loop takes it), and a prune that fails or is cancelled midway keeps what
    its earlier batches moved."""
    total = Pruned()
    cutoff: datetime | None = None
    while True:
        done = await prune_batch(db, older_than, namespace_id, batch=batch, cutoff=cutoff)
        total, cutoff = total + done.pruned, done.cutoff
        if not done.more:
            return total


class RetentionLock:
    """The retention leader's lock: a session-level advisory lock held on a
    session of its own (outside the pool, which would hand a locked session
    to someone else), the way migrations serialise on theirs. Whoever holds
    it prunes; it is released when `release()` closes the session or when
    PostgreSQL ends the session (a crash, a restart, a cut connection)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._session: psycopg.AsyncConnection[Any] | None = None

    @property
    def held(self) -> bool:
        """Whether this process held the lock when last asked (`acquire`)."""
        return self._session is not None

    async def acquire(self) -> bool:
        """Hold the lock: check that a held one's session still lives, or try
        to take it (without waiting) on a new session. Returns whether this
        process holds it now. Database errors leave as domain errors."""
        if self._session is not None:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._session.execute(q("retention_lock_alive"))
                return True
            except (psycopg.Error, TimeoutError):
                # The session is gone or hangs; whether PostgreSQL still
                # counts the lock as ours, we cannot tell: start over.
                await self.release()
        try:
            async with asyncio.timeout(self.timeout_s):
                session = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, row_factory=dict_row
                )
        except psycopg.Error as exc:
            raise translate(exc) from exc
        except TimeoutError as exc:
            raise Unavailable("database unavailable: no connection", reason="DATABASE_UNAVAILABLE") from exc
        try:
            async with asyncio.timeout(self.timeout_s):
                cur = await session.execute(q("try_retention_lock"))
                row = await cur.fetchone()
        except psycopg.Error as exc:
            await session.close()
            raise translate(exc) from exc
        except TimeoutError as exc:
            await session.close()
            raise Unavailable("database unavailable: no answer", reason="DATABASE_UNAVAILABLE") from exc
        except BaseException:
            await session.close()
            raise
        if row is not None and row["locked"]:
            self._session = session
            return True
        await session.close()
        return False

    async def release(self) -> None:
        """Give the lock up (closing its session ends it)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
