"""The cron planner (chronosched_server/scheduler/plan.py) and the database
clock estimate (chronosched_server/scheduler/clock.py): pure, with explicit
datetimes, nothing slept through."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from chronosched_server.cron import parse_schedule
from chronosched_server.scheduler.clock import DbClock
from chronosched_server.scheduler.plan import (
    GRACE,
    MAX_COUNTED_MISSES,
    Action,
    Misfire,
    Overlap,
    Plan,
    Policy,
    PreviousRun,
    Status,
    anchor_of,
    forbid_overlap,
    on_time,
    plan,
)

FIRED, SKIPPED = Status.FIRED, Status.SKIPPED
SKIP = Policy()
FIRE_ONCE = Policy(misfire=Misfire.FIRE_ONCE, starting_deadline=timedelta(seconds=60))
S = timedelta(seconds=1)
MS = timedelta(milliseconds=1)
US = timedelta(microseconds=1)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def shape(p: Plan) -> list[tuple[datetime, Status, str]]:
    return [(a.scheduled_time, a.status, a.reason) for a in p.actions]


# --- nothing due, on time, the grace ---------------------------------------------


def test_nothing_due_before_the_first_tick() -> None:
    every_minute = parse_schedule("0 * * * * *")
    created = utc(2030, 1, 1, 12, 0, 30, micro=250_000)
    p = plan(every_minute, created, utc(2030, 1, 1, 12, 0, 59, micro=999_999), SKIP)
    assert p == Plan((), created, utc(2030, 1, 1, 12, 1, 0))


def test_a_tick_reached_on_time_fires_with_no_reason() -> None:
    every_minute = parse_schedule("0 * * * * *")
    tick = utc(2030, 1, 1, 12, 1, 0)
    p = plan(every_minute, utc(2030, 1, 1, 12, 0, 30), tick + 3 * MS, SKIP)
    assert shape(p) == [(tick, FIRED, "")]
    assert (p.cursor, p.next_tick) == (tick, utc(2030, 1, 1, 12, 2, 0))


def test_ticks_are_strictly_after_the_anchor() -> None:
    every_second = parse_schedule("* * * * * *")
    tick = utc(2030, 1, 1, 12, 0, 5)
    # The anchor is the last decided tick itself: it is not decided again.
    assert plan(every_second, tick, tick + 500 * MS, SKIP) == Plan((), tick, tick + S)
    # A version created a fraction after a tick does not own that tick.
    p = plan(every_second, tick + 300 * MS, tick + S + MS, SKIP)
    assert shape(p) == [(tick + S, FIRED, "")]


def test_a_tick_exactly_grace_late_still_fires_on_time() -> None:
    every_minute = parse_schedule("0 * * * * *")
    tick = utc(2030, 1, 1, 12, 1, 0)
    p = plan(every_minute, utc(2030, 1, 1, 12, 0, 30), tick + GRACE, FIRE_ONCE)
    assert shape(p) == [(tick, FIRED, "")]


def test_a_tick_a_microsecond_beyond_the_grace_is_missed() -> None:
    every_minute = parse_schedule("0 * * * * *")
    tick = utc(2030, 1, 1, 12, 1, 0)
    p = plan(every_minute, utc(2030, 1, 1, 12, 0, 30), tick + GRACE + US, SKIP)
    assert shape(p) == [(tick, SKIPPED, "misfire: 1 tick missed (skip policy)")]
    assert (p.cursor, p.next_tick) == (tick, utc(2030, 1, 1, 12, 2, 0))


def test_a_stall_shorter_than_the_grace_leaves_no_gap() -> None:
    every_second = parse_schedule("* * * * * *")
    last = utc(2030, 1, 1, 12, 0, 0)
    p = plan(every_second, last, last + 2 * S + 900 * MS, SKIP)
    assert shape(p) == [(last + S, FIRED, ""), (last + 2 * S, FIRED, "")]
    assert (p.cursor, p.next_tick) == (last + 2 * S, last + 3 * S)


def test_an_anchor_ahead_of_now_plans_nothing() -> None:
    # The local estimate of the database clock may trail a create_time by a little.
    every_second = parse_schedule("* * * * * *")
    created = utc(2030, 1, 1, 12, 0, 0, micro=400_000)
    assert plan(every_second, created, created - 5 * MS, SKIP) == Plan((), created, utc(2030, 1, 1, 12, 0, 1))


def test_grace_is_a_parameter() -> None:
    every_second = parse_schedule("* * * * * *")
    last = utc(2030, 1, 1, 12, 0, 0)
    p = plan(every_second, last, last + S + 200 * MS, SKIP, grace=100 * MS)
    assert shape(p) == [(last + S, SKIPPED, "misfire: 1 tick missed (skip policy)")]


# --- misfire policies after downtime ------------------------------------------------


def downtime(ticks: int, late: timedelta) -> tuple[datetime, datetime, datetime]:
    """(anchor, the latest missed tick, now) for `ticks` missed minutes, the latest `late` ago."""
    created = utc(2030, 1, 1, 12, 0, 30)
    latest = utc(2030, 1, 1, 12, ticks, 0)
    return created, latest, latest + late


def test_skip_records_one_skipped_row_for_the_latest_missed_tick() -> None:
    anchor, latest, now = downtime(10, 5 * S)
    p = plan(parse_schedule("0 * * * * *"), anchor, now, SKIP)
    assert shape(p) == [(latest, SKIPPED, "misfire: 10 ticks missed (skip policy)")]
    assert (p.cursor, p.next_tick) == (latest, latest + 60 * S)


def test_fire_once_fires_the_latest_missed_tick_within_its_deadline() -> None:
    anchor, latest, now = downtime(10, 5 * S)
    p = plan(parse_schedule("0 * * * * *"), anchor, now, FIRE_ONCE)
    assert shape(p) == [
        (latest, FIRED, "catch-up: 10 ticks missed; fired once for the latest (fire_once policy)")
    ]
    assert (p.cursor, p.next_tick) == (latest, latest + 60 * S)


def test_fire_once_deadline_is_inclusive() -> None:
    anchor, latest, now = downtime(3, 30 * S)
    tight = Policy(misfire=Misfire.FIRE_ONCE, starting_deadline=30 * S)
    p = plan(parse_schedule("0 * * * * *"), anchor, now, tight)
    assert [(a.scheduled_time, a.status) for a in p.actions] == [(latest, FIRED)]


def test_fire_once_past_its_deadline_skips() -> None:
    anchor, latest, now = downtime(3, 30 * S)
    tight = Policy(misfire=Misfire.FIRE_ONCE, starting_deadline=30 * S - US)
    p = plan(parse_schedule("0 * * * * *"), anchor, now, tight)
    assert [(a.scheduled_time, a.status) for a in p.actions] == [(latest, SKIPPED)]

    tight = Policy(misfire=Misfire.FIRE_ONCE, starting_deadline=10 * S)
    p = plan(parse_schedule("0 * * * * *"), anchor, now, tight)
    assert shape(p) == [
        (
            latest,
            SKIPPED,
            "misfire: 3 ticks missed; the latest missed its starting deadline of 10s (fire_once policy)",
        )
    ]
    assert (p.cursor, p.next_tick) == (latest, latest + 60 * S)


def test_fire_once_deadline_boundary_with_a_sparse_schedule() -> None:
    every_ten_minutes = parse_schedule("0 */10 * * * *")
    anchor = utc(2030, 1, 1, 11, 55, 0)
    latest = utc(2030, 1, 1, 12, 30, 0)
    policy = Policy(misfire=Misfire.FIRE_ONCE, starting_deadline=timedelta(minutes=2))
    at_deadline = plan(every_ten_minutes, anchor, latest + timedelta(minutes=2), policy)
    assert [(a.scheduled_time, a.status) for a in at_deadline.actions] == [(latest, FIRED)]
    assert at_deadline.actions[0].reason.startswith("catch-up: 4 ticks missed")
    past = plan(every_ten_minutes, anchor, latest + timedelta(minutes=2) + US, policy)
    assert [(a.scheduled_time, a.status) for a in past.actions] == [(latest, SKIPPED)]
    assert "missed its starting deadline of 120s" in past.actions[0].reason


@pytest.mark.parametrize("policy", [SKIP, FIRE_ONCE], ids=["skip", "fire_once"])
def test_missed_ticks_are_superseded_by_an_on_time_tick(policy: Policy) -> None:
    every_second = parse_schedule("* * * * * *")
    last = utc(2030, 1, 1, 12, 0, 0)
    now = last + 10 * S + 500 * MS
    p = plan(every_second, last, now, policy)
    # Ticks 1..8 are more than 2 s late; 9 and 10 are within the grace.
    assert shape(p) == [
        (
            last + 8 * S,
            SKIPPED,
            f"misfire: 8 ticks missed; superseded by the on-time tick at 2030-01-01T12:00:09Z "
            f"({policy.misfire} policy)",
        ),
        (last + 9 * S, FIRED, ""),
        (last + 10 * S, FIRED, ""),
    ]


def test_a_long_outage_caps_the_count_but_finds_the_latest_tick() -> None:
    every_second = parse_schedule("* * * * * *")
    last = utc(2030, 1, 1, 0, 0, 0)
    now = utc(2030, 1, 2, 0, 0, 0, micro=100_000)  # a day later
    p = plan(every_second, last, now, SKIP)
    # The cutoff is 23:59:58.1: 23:59:58 is the last missed tick, 23:59:59 and
    # midnight are within the grace.
    latest_missed = utc(2030, 1, 1, 23, 59, 58)
    assert shape(p) == [
        (
            latest_missed,
            SKIPPED,
            f"misfire: more than {MAX_COUNTED_MISSES} ticks missed; superseded by the "
            "on-time tick at 2030-01-01T23:59:59Z (skip policy)",
        ),
        (latest_missed + S, FIRED, ""),
        (latest_missed + 2 * S, FIRED, ""),
    ]


def test_every_schedule_after_downtime() -> None:
    every_90s = parse_schedule("@every 90s")
    # @every is anchored to the epoch: 2030-01-01T00:00:00Z is a multiple of 90 s.
    anchor = utc(2030, 1, 1, 0, 0, 0)
    p = plan(every_90s, anchor, utc(2030, 1, 1, 0, 7, 40), SKIP)
    assert shape(p) == [(utc(2030, 1, 1, 0, 7, 30), SKIPPED, "misfire: 5 ticks missed (skip policy)")]
    assert p.next_tick == utc(2030, 1, 1, 0, 9, 0)


# --- DST (America/New_York: spring forward 2025-03-09 02:00 EST, fall back 2025-11-02 02:00 EDT)


def test_spring_forward_fixed_time_fires_when_the_gap_ends() -> None:
    daily_0230 = parse_schedule("0 30 2 * * *", "America/New_York")
    anchor = utc(2025, 3, 8, 12, 0, 0)
    transition = utc(2025, 3, 9, 7, 0, 0)  # 02:00 EST = 03:00 EDT
    assert plan(daily_0230, anchor, transition - MS, SKIP).next_tick == transition
    p = plan(daily_0230, anchor, transition + 400 * MS, SKIP)
    assert shape(p) == [(transition, FIRED, "")]
    assert p.next_tick == utc(2025, 3, 10, 6, 30, 0)  # 02:30 EDT


@pytest.mark.parametrize(
    ("deadline", "status"), [(timedelta(seconds=60), FIRED), (timedelta(seconds=10), SKIPPED)]
)
def test_spring_forward_fire_once_after_downtime_over_the_gap(deadline: timedelta, status: Status) -> None:
    daily_0230 = parse_schedule("0 30 2 * * *", "America/New_York")
    anchor = utc(2025, 3, 8, 7, 30, 0)  # 2025-03-08 02:30 EST, fired
    transition = utc(2025, 3, 9, 7, 0, 0)
    policy = Policy(misfire=Misfire.FIRE_ONCE, starting_deadline=deadline)
    p = plan(daily_0230, anchor, transition + 30 * S, policy)
    assert [(a.scheduled_time, a.status) for a in p.actions] == [(transition, status)]
    assert "1 tick missed" in p.actions[0].reason


def test_fall_back_fixed_time_fires_only_at_the_first_pass() -> None:
    daily_0130 = parse_schedule("0 30 1 * * *", "America/New_York")
    first = utc(2025, 11, 2, 5, 30, 0)  # 01:30 EDT
    repeated = utc(2025, 11, 2, 6, 30, 0)  # 01:30 EST, the same wall time again
    p = plan(daily_0130, utc(2025, 11, 1, 12, 0, 0), first + MS, SKIP)
    assert shape(p) == [(first, FIRED, "")]
    p = plan(daily_0130, first, repeated + MS, SKIP)
    assert p == Plan((), first, utc(2025, 11, 3, 6, 30, 0))


def test_fall_back_hourly_cadence_fires_both_passes() -> None:
    hourly = parse_schedule("@hourly", "America/New_York")
    anchor = utc(2025, 11, 2, 4, 30, 0)  # 00:30 EDT
    p = plan(hourly, anchor, utc(2025, 11, 2, 5, 0, 0, micro=1000), SKIP)
    assert shape(p) == [(utc(2025, 11, 2, 5, 0, 0), FIRED, "")]  # 01:00 EDT
    p = plan(hourly, p.cursor, utc(2025, 11, 2, 6, 0, 0, micro=1000), SKIP)
    assert shape(p) == [(utc(2025, 11, 2, 6, 0, 0), FIRED, "")]  # 01:00 EST


def test_spring_forward_downtime_counts_real_ticks_only() -> None:
    hourly = parse_schedule("0 * * * *", "America/New_York")
    anchor = utc(2025, 3, 9, 5, 30, 0)  # 00:30 EST
    # 01:00 EST (06:00Z), then 02:00 never happens, 03:00 EDT (07:00Z), 04:00 EDT (08:00Z).
    p = plan(hourly, anchor, utc(2025, 3, 9, 8, 0, 10), SKIP)
    assert shape(p) == [(utc(2025, 3, 9, 8, 0, 0), SKIPPED, "misfire: 3 ticks missed (skip policy)")]


# --- anchor -------------------------------------------------------------------------


def test_anchor_is_the_latest_of_its_parts() -> None:
    created = utc(2030, 1, 1, 12, 0, 0)
    assert anchor_of(created, None, None) == created
    assert anchor_of(created, created + S, None) == created + S
    assert anchor_of(created, created + S, created + 2 * S) == created + 2 * S
    assert anchor_of(created + 3 * S, created + S, created + 2 * S) == created + 3 * S


# --- overlap ------------------------------------------------------------------------


def fired(t: datetime) -> Action:
    return Action(t, FIRED, job_id=uuid.uuid4())


T0 = utc(2030, 1, 1, 12, 0, 0)


@pytest.mark.parametrize("state", ["READY", "RUNNING", "PENDING"])
def test_forbid_skips_while_the_previous_run_is_unfinished(state: str) -> None:
    previous = PreviousRun(uuid.uuid4(), state)
    (out,) = forbid_overlap([fired(T0)], previous)
    assert (out.status, out.job_id) == (SKIPPED, None)
    assert out.reason == f"overlap: previous run {previous.job_id} is still {state} (forbid policy)"


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED", None])
def test_forbid_fires_once_the_previous_run_is_done_or_gone(state: str | None) -> None:
    action = fired(T0)
    assert forbid_overlap([action], PreviousRun(uuid.uuid4(), state)) == [action]
    assert forbid_overlap([action], None) == [action]


def test_forbid_counts_a_fire_of_the_same_pass_as_the_previous_run() -> None:
    first, second = fired(T0), fired(T0 + S)
    out = forbid_overlap([first, second], PreviousRun(uuid.uuid4(), "SUCCEEDED"))
    assert out[0] == first
    assert (out[1].status, out[1].job_id) == (SKIPPED, None)
    assert str(first.job_id) in out[1].reason


def test_forbid_leaves_skipped_actions_alone_and_needs_job_ids() -> None:
    skipped = Action(T0, SKIPPED, "misfire: 1 tick missed (skip policy)")
    assert forbid_overlap([skipped], PreviousRun(uuid.uuid4(), "RUNNING")) == [skipped]
    with pytest.raises(ValueError, match="has no job id"):
        forbid_overlap([Action(T0, FIRED)], None)


def test_policy_values_are_the_stored_texts() -> None:
    assert [m.value for m in Misfire] == ["skip", "fire_once"]
    assert [o.value for o in Overlap] == ["allow", "forbid"]
    assert [s.value for s in Status] == ["FIRED", "SKIPPED"]


# --- the database clock estimate ----------------------------------------------------


def test_db_clock_uses_the_midpoint_of_the_fastest_round_trip() -> None:
    local = [1000.0]
    clock = DbClock(lambda: local[0])
    # A slow sample (100 ms round trip) says +0.300 s; a fast one (2 ms) says +0.250 s.
    clock.observe(1000.0, datetime.fromtimestamp(1000.350, UTC), 1000.100)
    assert clock.offset == timedelta(seconds=0.3)
    clock.observe(1001.0, datetime.fromtimestamp(1001.251, UTC), 1001.002)
    assert abs(clock.offset.total_seconds() - 0.25) < 1e-6
    # A later slow sample does not override the fast one.
    clock.observe(1002.0, datetime.fromtimestamp(1002.5, UTC), 1002.2)
    assert abs(clock.offset.total_seconds() - 0.25) < 1e-6
    local[0] = 2000.0
    assert abs((clock.now() - datetime.fromtimestamp(2000.25, UTC)).total_seconds()) < 1e-6


def test_db_clock_forgets_old_samples() -> None:
    clock = DbClock(lambda: 0.0)
    clock.observe(0.0, datetime.fromtimestamp(5.0005, UTC), 0.001)  # the fastest, +5 s
    for i in range(10):
        clock.observe(10.0 + i, datetime.fromtimestamp(10.0 + i + 0.01 + 7, UTC), 10.02 + i)
    assert abs(clock.offset.total_seconds() - 7.0) < 1e-6


# --- the on-time shortcut -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "zone"),
    [
        ("* * * * * *", "UTC"),
        ("*/5 * * * * *", "UTC"),
        ("0 * * * * *", "UTC"),
        ("@every 7s", "UTC"),
        ("0 30 2 * * *", "America/New_York"),
        ("0 0 * * * *", "America/New_York"),
    ],
)
def test_the_on_time_shortcut_agrees_with_plan(spec: str, zone: str) -> None:
    schedule = parse_schedule(spec, zone)
    # Around both 2025 New York transitions and an ordinary day.
    for start in (utc(2025, 3, 9, 5, 59, 50), utc(2025, 11, 2, 5, 59, 50), utc(2030, 6, 1, 12, 0, 0)):
        anchor = start
        next_tick = schedule.next_after(anchor)
        following = schedule.next_after(next_tick)
        offsets = [timedelta(0), 1 * MS, 999 * MS, GRACE, GRACE + US, following - next_tick]
        for offset in offsets:
            now = next_tick + offset
            quick = on_time(anchor, now, next_tick, following)
            if quick is not None:
                assert quick == plan(schedule, anchor, now, FIRE_ONCE)
        # Not applicable: not due yet, missed, or two ticks due.
        assert on_time(anchor, next_tick - US, next_tick, following) is None
        assert on_time(anchor, next_tick + GRACE + US, next_tick, following) is None
        assert on_time(anchor, following, next_tick, following) is None
        # Applicable right at the tick.
        assert on_time(anchor, next_tick, next_tick, following) == Plan(
            (Action(next_tick, FIRED),), next_tick, following
        )
