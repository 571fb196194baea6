"""The retention loop: moves finished work older than the configured
retention into the history tables, on one replica at a time.

Every server process runs one (unless its retention is 0); the one that
holds the retention lock (a session-level advisory lock,
`storage.admin.RetentionLock`) prunes, the others only try the lock at each
interval and take over when its holder goes away. A pass runs the same
batched statement as the manual Prune (`storage.admin.prune_batch`), batch
after batch, each a short transaction of its own that skips locked rows, so
a backlog of a million finished jobs never holds dispatch up: between
batches the loop hands the event loop (and the database) back. Once a batch
is not full the pass ends and the loop rests for the interval. Database
errors are logged and the pass is tried again after a growing pause; the
loop never ends the server.

Tests drive a loop with `run_once()`, or start it and wait on `passes`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from chronosched_server.errors import DomainError
from chronosched_server.storage import admin
from chronosched_server.storage.admin import Pruned
from chronosched_server.storage.db import Database
from chronosched_server.waits import cancel_all

log = logging.getLogger(__name__)

# A long pass says how far it got at most this often.
_PROGRESS_EVERY_S = 30.0


@dataclass(frozen=True)
class RetentionConfig:
    """Tuning of the retention loop (defaults are what the server runs)."""

    # Finished work older than this moves to history; 0 means never.
    retention: timedelta
    # Rest between passes once caught up.
    interval_s: float = 300.0
    # Jobs per transaction (the `prune` statement's `batch`).
    batch: int = admin.DEFAULT_BATCH
    # After each batch of a pass, rest this many times as long as the batch
    # took: at 1.0 the loop keeps a database session busy half the time at
    # most, and rests longer when the database is slow (busy); 0 only yields.
    rest_ratio: float = 1.0
    # After a failed pass: this long, doubling on each failure in a row, at
    # most interval_s.
    retry_s: float = 1.0


@dataclass
class PassResult:
    """What one pass did."""

    # Whether this loop held the lock (only the holder prunes).
    leader: bool
    # What each batch moved, in order.
    batches: list[Pruned] = field(default_factory=list)

    @property
    def pruned(self) -> Pruned:
        return sum(self.batches, Pruned())


class Retention:
    """Prunes finished work by age, as the retention leader among replicas."""

    def __init__(self, db: Database, url: str, config: RetentionConfig) -> None:
        self.db = db
        self.config = config
        self.lock = admin.RetentionLock(url)
        self._task: asyncio.Task[None] | None = None
        # For tests, benchmarks and logs.
        self.passes = 0
        self.failures = 0
        self.pruned = Pruned()

    @property
    def enabled(self) -> bool:
        return self.config.retention > timedelta(0)

    @property
    def leader(self) -> bool:
        """Whether this loop held the lock at its last look."""
        return self.lock.held

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_all([self._task])
            self._task = None
        await self.lock.release()

    async def _run(self) -> None:
        failed_in_a_row = 0
        while True:
            try:
                await self.run_once()
                failed_in_a_row = 0
                rest = self.config.interval_s
            except Exception as exc:  # the server outlives whatever went wrong here
                failed_in_a_row += 1
                self.failures += 1
                rest = min(self.config.interval_s, self.config.retry_s * 2 ** (failed_in_a_row - 1))
                if isinstance(exc, DomainError):
                    log.warning(
                        "retention: pass failed (%s); trying again in %.1fs",
                        exc,
                        rest,
                        extra={"event": "retention_failed", "retry_in_s": rest},
                    )
                else:
                    log.exception(
                        "retention: pass failed; trying again in %.1fs",
                        rest,
                        extra={"event": "retention_failed", "retry_in_s": rest},
                    )
            await asyncio.sleep(rest)

    # -- one pass ---------------------------------------------------------

    async def run_once(self) -> PassResult:
        """Take (or keep) the lock; if held, prune batch after batch until a
        batch is not full. Database errors leave as domain errors (what the
        batches before moved stays moved)."""
        if not self.enabled:
            return PassResult(leader=False)
        was_leader = self.lock.held
        if not await self.lock.acquire():
            self.passes += 1
            return PassResult(leader=False)
        if not was_leader:
            log.info(
                "retention: this replica holds the retention lock and prunes",
                extra={"event": "retention_leader"},
            )
        result = PassResult(leader=True)
        started = last_report = time.monotonic()
        cutoff = None
        try:
            while True:
                batch_started = time.monotonic()
                batch = await admin.prune_batch(
                    self.db, self.config.retention, None, batch=self.config.batch, cutoff=cutoff
                )
                took = time.monotonic() - batch_started
                cutoff = batch.cutoff
                result.batches.append(batch.pruned)
                self.pruned += batch.pruned
                if not batch.more:
                    break
                now = time.monotonic()
                if now - last_report >= _PROGRESS_EVERY_S:
                    last_report = now
                    log.info(
                        "retention: %s so far (%d batches, %.0fs)",
                        _says(result.pruned),
                        len(result.batches),
                        now - started,
                        extra={"event": "retention_progress", **_fields(result.pruned)},
                    )
                # Dispatch comes first: leave the database (and the event
                # loop) to it between batches.
                await asyncio.sleep(took * self.config.rest_ratio)
        finally:
            self.passes += 1
            moved = result.pruned
            if moved != Pruned():
                log.info(
                    "retention: moved %s that finished before %s to history in %d batch(es), %.1fs",
                    _says(moved),
                    cutoff.isoformat() if cutoff is not None else "?",
                    len(result.batches),
                    time.monotonic() - started,
                    extra={
                        "event": "retention_pass",
                        **_fields(moved),
                        "cutoff": cutoff,
                        "batches": len(result.batches),
                        "seconds": round(time.monotonic() - started, 3),
                    },
                )
        return result


def _fields(p: Pruned) -> dict[str, int]:
    return {"dags": p.dags, "jobs": p.jobs, "dependencies": p.dependencies}


def _says(p: Pruned) -> str:
    return f"{p.dags:,} DAG(s), {p.jobs:,} job(s) and {p.dependencies:,} dependencies"
