"""What a schedule does at a given moment: pure planning, no I/O, no clock.

Given a schedule, its anchor (every tick at or before it is already decided),
the current database time and the definition's policies, :func:`plan` says
which ticks fire, which are recorded as SKIPPED and why, and when to look
again. :func:`forbid_overlap` then applies the forbid overlap policy against
the state of the previous run. The scheduler loop (``scheduler/loop.py``)
does the I/O around these two functions.

Semantics
---------
* **Due ticks** are the ticks strictly after the anchor and at or before
  ``now``. The anchor is the latest of: the owning version's create time (a
  version never fires ticks from before it existed), the last tick decided
  for the definition name (FIRED or SKIPPED, by any replica), and the last
  resume of the schedule (ticks that fell while it was paused never fire).
* **Missed**: a due tick is missed when the scheduler reaches it more than
  ``grace`` (2 s) after it was due, i.e. ``now - tick > grace``. Ticks reached
  within the grace fire normally, late but on time in the ledger's eyes: a
  scheduler stalled for a second (a long garbage collection, a slow database)
  leaves no gap. Missed ticks only happen after downtime (no scheduler
  running, the database unreachable) or a stall longer than the grace.
* **Misfire policy**, applied to the missed ticks of one pass (``n`` ticks,
  the latest ``L``), which are recorded as ONE ledger row for ``L``:

  - if ticks on time follow in the same pass, they fire and ``L`` is
    SKIPPED as superseded (either policy: a run is happening now anyway);
  - ``skip``: ``L`` is SKIPPED, ``"misfire: n ticks missed (skip policy)"``;
  - ``fire_once``: ``L`` FIRES once as a catch-up if ``now - L`` is within
    the starting deadline (inclusive), else it is SKIPPED because it
    "missed its starting deadline".
* **Overlap** ``forbid``: a FIRED tick becomes SKIPPED while the previous
  FIRED run of the name is not terminal; the reason names that job.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from chronosched_server.cron import Schedule

__all__ = [
    "GRACE",
    "MAX_COUNTED_MISSES",
    "TERMINAL_STATES",
    "Action",
    "Misfire",
    "Overlap",
    "Plan",
    "Policy",
    "PreviousRun",
    "Status",
    "anchor_of",
    "forbid_overlap",
    "on_time",
    "plan",
]

# How late a tick may be reached and still fire as an ordinary fire.
GRACE: Final = timedelta(seconds=2)
# Counting missed ticks walks them one by one; after a long outage of a
# every-second schedule the count is capped rather than walked for seconds.
MAX_COUNTED_MISSES: Final = 1000
TERMINAL_STATES: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"})

_JUST_BEFORE: Final = timedelta(microseconds=1)


class Misfire(StrEnum):
    """What happens to ticks missed during downtime (stored text values)."""

    SKIP = "skip"
    FIRE_ONCE = "fire_once"


class Overlap(StrEnum):
    """Whether a fire may start while the previous run is unfinished (stored text values)."""

    ALLOW = "allow"
    FORBID = "forbid"


class Status(StrEnum):
    """A ledger row's status (stored text values)."""

    FIRED = "FIRED"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class Policy:
    """A definition's cron policies."""

    misfire: Misfire = Misfire.SKIP
    starting_deadline: timedelta = timedelta(seconds=60)
    overlap: Overlap = Overlap.ALLOW


@dataclass(frozen=True)
class Action:
    """One ledger row to record: a tick FIRED (with the job to enqueue) or SKIPPED."""

    scheduled_time: datetime
    status: Status
    reason: str = ""
    # Set by the caller on FIRED actions before forbid_overlap and recording.
    job_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Plan:
    """The outcome of one look at a schedule."""

    actions: tuple[Action, ...]
    # Every tick at or before this is decided once the actions are recorded.
    cursor: datetime
    # The first tick after everything decided: when to look again.
    next_tick: datetime


@dataclass(frozen=True)
class PreviousRun:
    """The previous FIRED run of a schedule: its job and the job's state (None: gone)."""

    job_id: uuid.UUID
    state: str | None


def anchor_of(
    create_time: datetime, last_scheduled_time: datetime | None, resumed_at: datetime | None
) -> datetime:
    """The instant after which a schedule's ticks are undecided (see the module docs)."""
    return max(t for t in (create_time, last_scheduled_time, resumed_at) if t is not None)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seconds(value: timedelta) -> str:
    total = value.total_seconds()
    return f"{total:g}s"


def _ticks(count: int, capped: bool) -> str:
    if capped:
        return f"more than {count} ticks missed"
    return "1 tick missed" if count == 1 else f"{count} ticks missed"


def plan(
    schedule: Schedule, anchor: datetime, now: datetime, policy: Policy, *, grace: timedelta = GRACE
) -> Plan:
    """Decide the ticks of `schedule` in (anchor, now] (all times aware, database time)."""
    first = schedule.next_after(anchor)
    if first > now:
        return Plan((), anchor, first)
    cutoff = now - grace  # ticks strictly before it are missed

    missed = 0
    capped = False
    latest_missed: datetime | None = None
    tick = first
    while tick < cutoff:
        if missed == MAX_COUNTED_MISSES:
            # Too many to walk: find the latest by search instead.
            capped = True
            latest_missed = schedule.latest_at_or_before(cutoff - _JUST_BEFORE) or latest_missed
            break
        missed += 1
        latest_missed = tick
        tick = schedule.next_after(tick)

    on_time: list[datetime] = []
    tick = schedule.next_after(max(anchor, cutoff - _JUST_BEFORE))
    while tick <= now:
        on_time.append(tick)
        tick = schedule.next_after(tick)
    next_tick = tick

    actions: list[Action] = []
    if latest_missed is not None:
        what = _ticks(missed, capped)
        if on_time:
            reason = (
                f"misfire: {what}; superseded by the on-time tick at {_iso(on_time[0])} "
                f"({policy.misfire} policy)"
            )
            actions.append(Action(latest_missed, Status.SKIPPED, reason))
        elif policy.misfire is Misfire.SKIP:
            actions.append(Action(latest_missed, Status.SKIPPED, f"misfire: {what} (skip policy)"))
        elif now - latest_missed <= policy.starting_deadline:
            reason = f"catch-up: {what}; fired once for the latest (fire_once policy)"
            actions.append(Action(latest_missed, Status.FIRED, reason))
        else:
            reason = (
                f"misfire: {what}; the latest missed its starting deadline of "
                f"{_seconds(policy.starting_deadline)} (fire_once policy)"
            )
            actions.append(Action(latest_missed, Status.SKIPPED, reason))
    actions += [Action(t, Status.FIRED) for t in on_time]
    return Plan(tuple(actions), actions[-1].scheduled_time, next_tick)


def on_time(
    anchor: datetime, now: datetime, next_tick: datetime, following: datetime, *, grace: timedelta = GRACE
) -> Plan | None:
    """:func:`plan` for the common case, with no cron arithmetic: the caller
    knows the first tick after the anchor (`next_tick`) and the one after it
    (`following`), and exactly one of them is due, on time. Returns what
    :func:`plan` would, or None when the case does not apply."""
    if anchor < next_tick <= now < following and now - next_tick <= grace:
        return Plan((Action(next_tick, Status.FIRED),), next_tick, following)
    return None


def forbid_overlap(actions: Sequence[Action], previous: PreviousRun | None) -> list[Action]:
    """Apply the forbid overlap policy: a FIRED action whose previous run is
    unfinished becomes SKIPPED. A fire in this batch counts as the previous run
    of the next one (it is READY the moment it is enqueued)."""
    out: list[Action] = []
    for action in actions:
        if action.status is Status.FIRED:
            if previous is not None and previous.state is not None and previous.state not in TERMINAL_STATES:
                reason = f"overlap: previous run {previous.job_id} is still {previous.state} (forbid policy)"
                out.append(replace(action, status=Status.SKIPPED, reason=reason, job_id=None))
                continue
            if action.job_id is None:
                raise ValueError(f"FIRED action at {_iso(action.scheduled_time)} has no job id")
            previous = PreviousRun(action.job_id, "READY")
        out.append(action)
    return out
