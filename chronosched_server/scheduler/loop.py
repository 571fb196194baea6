"""The cron scheduler: one per server process, any number per database.

Each scheduler keeps the active schedule set in memory (reloaded at least
once a second, and at once on a NOTIFY from a new definition version or a
pause/resume), sleeps until the next tick of any schedule in database time,
plans what is due (:mod:`plan`, pure) and records it in ONE transaction per
pass: the ledger rows first (ON CONFLICT DO NOTHING on the tick's key), then
a READY job for each FIRED row that went in, through the same enqueue path
as Tick. Replicas all attempt every tick; the ledger key lets exactly one
record it, so a fire is never doubled, and since every replica attempts it,
a replica that dies (or was never there) loses nothing.

Tests drive a scheduler with an injected clock and `run_once()`; the server
runs `start()`, whose loop uses the database clock (:mod:`clock`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from chronosched_server import cron
from chronosched_server.errors import DomainError, Unavailable
from chronosched_server.ids import uuid7
from chronosched_server.scheduler import plan
from chronosched_server.scheduler.clock import DbClock
from chronosched_server.storage import jobs, notifications, schedules
from chronosched_server.storage.db import Database, isolating
from chronosched_server.storage.jobs import StandaloneJob
from chronosched_server.storage.records import ActiveSchedule
from chronosched_server.storage.schedules import FireRow
from chronosched_server.waits import cancel_all, wait_event

log = logging.getLogger(__name__)

SCHEDULES_CHANNEL = "chronosched_schedules"

Key = tuple[str, str]  # (namespace_id, name)

# A reload (a few milliseconds) is not started this close before a tick.
_RELOAD_CLEARANCE_S = 0.02


@dataclass(frozen=True)
class SchedulerConfig:
    """Tuning of the scheduler loop (defaults are what the server runs)."""

    # The schedule set is reloaded at least this often (and at once on NOTIFY).
    reload_interval_s: float = 1.0
    # How late a tick may be reached and still fire normally (plan.GRACE).
    grace: timedelta = plan.GRACE
    # Ledger rows per transaction; a pass with more splits into several.
    max_batch: int = 500
    # After a failed pass, how long before its schedules are tried again.
    retry_delay_s: float = 0.5


class CronMetrics(Protocol):
    """Where the scheduler reports its fires: the server's Metrics
    (chronosched_server.metrics), which the scheduler layer does not import."""

    def cron_recorded(self, namespace: str, kind: str, fired: bool, late_s: float, missed: bool) -> None:
        """One tick this scheduler recorded: FIRED or not, how late (seconds,
        database time), and whether it was reached after the grace (a misfire)."""


class _Unmeasured:
    """The CronMetrics of a scheduler nobody scrapes (tests, tools)."""

    def cron_recorded(self, namespace: str, kind: str, fired: bool, late_s: float, missed: bool) -> None:
        pass


@dataclass
class _Entry:
    """One active schedule as this scheduler sees it."""

    # The owning (latest) version of the name.
    definition: ActiveSchedule
    schedule: cron.Schedule
    policy: plan.Policy
    cursor: datetime  # every tick at or before it is decided
    next_tick: datetime  # the first tick after the cursor
    # The tick after next_tick, computed ahead (between passes) so that an
    # ordinary fire needs no cron arithmetic on its way to the database.
    following: datetime | None = None
    # After a failed pass: not before this.
    retry_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.next_tick <= now and (self.retry_at is None or self.retry_at <= now)

    @property
    def wake_at(self) -> datetime:
        return self.next_tick if self.retry_at is None else max(self.next_tick, self.retry_at)

    @property
    def def_id(self) -> uuid.UUID:
        return self.definition.def_id


@dataclass
class PassResult:
    """What one pass recorded (rows another replica recorded first are not counted)."""

    fired: int = 0
    skipped: int = 0
    failed: int = 0
    recorded: list[schedules.Recorded] = field(default_factory=list)


class Scheduler:
    """Fires cron schedules. `clock` returns the current database time (aware);
    by default the local clock corrected by the measured database offset."""

    def __init__(
        self,
        db: Database,
        listen_url: str | None = None,
        config: SchedulerConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        metrics: CronMetrics | None = None,
    ):
        self.db = db
        self.metrics: CronMetrics = metrics or _Unmeasured()
        self.listen_url = listen_url
        self.config = config or SchedulerConfig()
        self.clock: Callable[[], datetime]
        self._db_clock: DbClock | None
        if clock is None:
            self._db_clock = DbClock()
            self.clock = self._db_clock.now
        else:
            self._db_clock, self.clock = None, clock
        self._entries: dict[Key, _Entry] = {}
        self._parsed: dict[tuple[str, str], cron.Schedule] = {}
        self._wake = asyncio.Event()
        self._reload_requested = True
        self._next_reload = 0.0  # loop.time()
        self._tasks: list[asyncio.Task[None]] = []
        # For tests, benchmarks and logs.
        self.fired = 0
        self.skipped = 0
        self.passes = 0

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run())]
        if self.listen_url:
            self._tasks.append(asyncio.create_task(self._listen()))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    # -- one pass (tests drive these with an injected clock) ---------------

    async def run_once(self) -> PassResult:
        """Reload the schedule set and record everything due as of `clock()`."""
        await self.reload()
        return await self.fire_due(self.clock())

    @property
    def active(self) -> dict[Key, str]:
        """(namespace, name) -> cron spec of the schedules this scheduler runs."""
        return {key: e.schedule.spec for key, e in self._entries.items()}

    async def reload(self) -> None:
        """Replace the schedule set with the database's (measuring the clock offset too)."""
        if self._db_clock is not None:
            self._db_clock.observe(*await schedules.sample_clock(self.db, self._db_clock.local))
        rows = await schedules.load_active(self.db)
        entries: dict[Key, _Entry] = {}
        parsed: dict[tuple[str, str], cron.Schedule] = {}
        for row in rows:
            key = (row.namespace_id, row.name)
            spec = (row.cron_spec, row.time_zone)
            schedule = self._parsed.get(spec) or parsed.get(spec)
            if schedule is None:
                try:
                    schedule = cron.parse_schedule(*spec)
                except ValueError as exc:  # validated at creation; only a cron.py change gets here
                    log.error("schedule %s/%s: cannot parse %r: %s", *key, spec[0], exc)
                    continue
            parsed[spec] = schedule
            anchor = plan.anchor_of(row.create_time, row.last_scheduled_time, row.resumed_at)
            old = self._entries.get(key)
            if old is not None and old.def_id == row.def_id and old.cursor >= anchor:
                # Same owner, and nothing decided elsewhere that this
                # scheduler has not seen: keep its state (including its
                # last fire, which this read may not show yet).
                entries[key] = old
                continue
            entries[key] = _Entry(
                definition=row,
                schedule=schedule,
                policy=plan.Policy(
                    misfire=plan.Misfire(row.misfire_policy),
                    starting_deadline=row.starting_deadline,
                    overlap=plan.Overlap(row.overlap_policy),
                ),
                cursor=anchor,
                next_tick=schedule.next_after(anchor),
            )
        self._entries = entries
        self._parsed = parsed

    async def fire_due(self, now: datetime) -> PassResult:
        """Plan every schedule due at `now` and record the outcome."""
        grace = self.config.grace
        due: list[tuple[Key, _Entry, plan.Plan]] = []
        for key, entry in self._entries.items():
            if not entry.due(now):
                continue
            decided = None
            if entry.following is not None:
                decided = plan.on_time(entry.cursor, now, entry.next_tick, entry.following, grace=grace)
            if decided is None:
                decided = plan.plan(entry.schedule, entry.cursor, now, entry.policy, grace=grace)
            if decided.actions:
                due.append((key, entry, decided))
            else:
                entry.cursor, entry.next_tick, entry.following = decided.cursor, decided.next_tick, None
        result = PassResult()
        for start in range(0, len(due), self.config.max_batch):
            await self._record(due[start : start + self.config.max_batch], now, result)
        # Off the critical path (the fires are committed): look one tick
        # ahead for the next pass.
        for entry in self._entries.values():
            if entry.following is None:
                entry.following = entry.schedule.next_after(entry.next_tick)
        self.passes += 1
        self.fired += result.fired
        self.skipped += result.skipped
        return result

    async def _record(
        self, batch: list[tuple[Key, _Entry, plan.Plan]], now: datetime, result: PassResult
    ) -> None:
        # A schedule whose fires break the transaction is isolated; the rest go through.
        for group, recorded in await isolating(batch, lambda items: self._transact(items, now)):
            if isinstance(recorded, DomainError):
                if isinstance(recorded, Unavailable):
                    log.warning("database unavailable; %d schedule(s) wait for the next pass", len(group))
                else:
                    log.error(
                        "schedule %s/%s: recording its fires failed; retrying",
                        *group[0][0],
                        exc_info=recorded,
                    )
                self._retry_later(group, now)
                result.failed += len(group)
                continue
            for _, entry, decided in group:
                entry.cursor, entry.next_tick, entry.retry_at = decided.cursor, decided.next_tick, None
                # plan.on_time hands over the precomputed tick; otherwise it
                # is computed again before the next pass.
                entry.following = None
            result.recorded += recorded
            # Lateness counts to the commit (just done), in database time;
            # missed is plan's rule, against the time the pass planned with.
            committed = self.clock()
            kinds = {key: entry.definition.kind for key, entry, _ in group}
            for row in recorded:
                fired = row.status == plan.Status.FIRED
                if fired:
                    result.fired += 1
                else:
                    result.skipped += 1
                self.metrics.cron_recorded(
                    row.namespace_id,
                    kinds.get((row.namespace_id, row.name), ""),
                    fired,
                    (committed - row.scheduled_time).total_seconds(),
                    now - row.scheduled_time > self.config.grace,
                )
                _log_fire(row)

    def _retry_later(self, batch: Sequence[tuple[Key, _Entry, plan.Plan]], now: datetime) -> None:
        # Nothing was recorded: the cursor stays, and the ticks are tried
        # again (they become misfires if that takes longer than the grace).
        later = now + timedelta(seconds=self.config.retry_delay_s)
        for _, entry, _ in batch:
            entry.retry_at = later

    async def _transact(
        self, batch: Sequence[tuple[Key, _Entry, plan.Plan]], now: datetime
    ) -> list[schedules.Recorded]:
        planned: list[tuple[_Entry, list[plan.Action]]] = []
        for _, entry, decided in batch:
            actions = [
                replace(a, job_id=uuid7()) if a.status is plan.Status.FIRED else a for a in decided.actions
            ]
            planned.append((entry, actions))
        forbid = [
            (entry.definition.namespace_id, entry.definition.name, actions[0].scheduled_time)
            for entry, actions in planned
            if entry.policy.overlap is plan.Overlap.FORBID
        ]
        # An injected clock is recorded as the fire time; otherwise the
        # database stamps its own now().
        fire_time = None if self._db_clock is not None else now
        async with self.db.transaction() as conn:
            previous = await schedules.previous_fired_runs(conn, forbid)
            rows: list[FireRow] = []
            to_enqueue: dict[Any, StandaloneJob] = {}
            for entry, actions in planned:
                d = entry.definition
                key = (d.namespace_id, d.name)
                if entry.policy.overlap is plan.Overlap.FORBID:
                    prev = previous.get(key)
                    actions = plan.forbid_overlap(actions, plan.PreviousRun(*prev) if prev else None)
                for a in actions:
                    rows.append(
                        FireRow(
                            d.namespace_id,
                            d.name,
                            a.scheduled_time,
                            d.def_id,
                            d.version,
                            a.status.value,
                            a.reason,
                            a.job_id,
                        )
                    )
                    if a.job_id is not None:
                        to_enqueue[a.job_id] = StandaloneJob.of(d, a.job_id, due_time=a.scheduled_time)
            recorded = await schedules.insert_fires(conn, rows, fire_time)
            await jobs.insert_standalone(
                conn, [to_enqueue[r.job_id] for r in recorded if r.job_id is not None]
            )
        return recorded

    # -- background loops -------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                # Fire first, and keep reloads out of the moments just before
                # a tick: a reload must not delay a fire.
                await self.fire_due(self.clock())
                if (self._reload_requested or loop.time() >= self._next_reload) and not self._tick_imminent():
                    self._reload_requested = False
                    self._next_reload = loop.time() + self.config.reload_interval_s
                    await self.reload()
                    await self.fire_due(self.clock())
            except asyncio.CancelledError:
                raise
            except Unavailable:
                log.warning("scheduler: database unavailable; retrying")
                self._reload_requested = True
                await asyncio.sleep(self.config.retry_delay_s)
                continue
            except Exception:
                log.exception("scheduler pass failed; retrying")
                self._reload_requested = True
                await asyncio.sleep(self.config.retry_delay_s)
                continue
            await self._sleep(loop)

    def _until_next_tick(self) -> float | None:
        if not self._entries:
            return None
        return (min(e.wake_at for e in self._entries.values()) - self.clock()).total_seconds()

    def _tick_imminent(self) -> bool:
        until = self._until_next_tick()
        return until is not None and until < _RELOAD_CLEARANCE_S

    async def _sleep(self, loop: asyncio.AbstractEventLoop) -> None:
        delay = self._next_reload - loop.time()
        if self._reload_requested:
            delay = 0.0
        until = self._until_next_tick()
        if until is not None:
            if delay < until < delay + _RELOAD_CLEARANCE_S:
                delay = until  # the reload waits until after the tick
            delay = min(max(delay, 0.0), until)
        if delay <= 0:
            return
        self._wake.clear()
        await wait_event(self._wake, delay)

    async def _listen(self) -> None:
        assert self.listen_url is not None
        await notifications.listen_forever(
            self.listen_url,
            [SCHEDULES_CHANNEL],
            lambda _channel, _payload: self._request_reload(),
            self._request_reload,
            name="schedule",
        )

    def _request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()


def _log_fire(row: schedules.Recorded) -> None:
    """One line per tick this scheduler recorded (committed: another
    replica never logs the same tick)."""
    fields = {"namespace": row.namespace_id, "schedule": row.name, "scheduled_time": row.scheduled_time}
    if row.status == plan.Status.FIRED:
        log.info(
            "schedule %s/%s fired for %s: job %s",
            row.namespace_id,
            row.name,
            row.scheduled_time.isoformat(),
            row.job_id,
            extra={"event": "schedule_fired", "job_id": row.job_id, **fields},
        )
    else:
        log.info(
            "schedule %s/%s skipped its tick of %s (the fire ledger says why)",
            row.namespace_id,
            row.name,
            row.scheduled_time.isoformat(),
            extra={"event": "schedule_skipped", **fields},
        )
