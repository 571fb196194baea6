"""Unit tests for chronosched_server.cron: pure computation, exact instants, no I/O."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chronosched_server.cron import (
    CronSpecError,
    Schedule,
    TimeZoneError,
    parse_schedule,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local_readings(times: list[datetime], zone: str) -> list[tuple[int, int, int]]:
    """(hour, minute, utc-offset hours) of each instant as seen on the zone's wall clock."""
    readings = []
    for moment in times:
        wall = moment.astimezone(ZoneInfo(zone))
        offset = wall.utcoffset()
        assert offset is not None
        readings.append((wall.hour, wall.minute, int(offset / timedelta(hours=1))))
    return readings


def assert_strictly_increasing(times: list[datetime]) -> None:
    assert all(a < b for a, b in itertools.pairwise(times)), times


# --------------------------------------------------------------------------- five fields


def test_five_field_step_minutes() -> None:
    schedule = parse_schedule("*/15 * * * *")
    assert schedule.next_times(utc(2026, 5, 10, 12, 7, 30), 4) == [
        utc(2026, 5, 10, 12, 15),
        utc(2026, 5, 10, 12, 30),
        utc(2026, 5, 10, 12, 45),
        utc(2026, 5, 10, 13, 0),
    ]
    assert schedule.has_seconds is False


def test_next_after_is_strictly_after() -> None:
    schedule = parse_schedule("0 9 * * *")
    assert schedule.next_after(utc(2026, 5, 10, 9, 0)) == utc(2026, 5, 11, 9, 0)
    assert schedule.next_after(utc(2026, 5, 10, 8, 59, 59)) == utc(2026, 5, 10, 9, 0)
    just_before = utc(2026, 5, 10, 9) - timedelta(microseconds=1)
    assert schedule.next_after(just_before) == utc(2026, 5, 10, 9, 0)


def test_weekday_range_skips_weekend() -> None:
    # 2026-05-08 is a Friday.
    schedule = parse_schedule("0 9 * * 1-5")
    assert schedule.next_times(utc(2026, 5, 8, 10), 2) == [utc(2026, 5, 11, 9), utc(2026, 5, 12, 9)]


def test_names_and_sunday_as_seven() -> None:
    # 2026-05-10 is a Sunday.
    after = utc(2026, 5, 4)
    assert parse_schedule("0 6 * * 7").next_after(after) == utc(2026, 5, 10, 6)
    assert parse_schedule("0 6 * * SUN").next_after(after) == utc(2026, 5, 10, 6)
    assert parse_schedule("0 6 * * fri-sat").next_times(after, 2) == [utc(2026, 5, 8, 6), utc(2026, 5, 9, 6)]
    assert parse_schedule("0 0 1 Jan,jul *").next_times(after, 2) == [utc(2026, 7, 1), utc(2027, 1, 1)]


def test_start_with_step_runs_to_end_of_field() -> None:
    schedule = parse_schedule("5/20 * * * *")
    assert schedule.next_times(utc(2026, 5, 10, 12), 4) == [
        utc(2026, 5, 10, 12, 5),
        utc(2026, 5, 10, 12, 25),
        utc(2026, 5, 10, 12, 45),
        utc(2026, 5, 10, 13, 5),
    ]


def test_restricted_day_of_month_and_day_of_week_are_ored() -> None:
    # The 13th of any month OR any Friday; 2026-02-13 and 2026-03-13 are Fridays.
    schedule = parse_schedule("0 0 13 * 5")
    assert schedule.next_times(utc(2026, 2, 14), 4) == [
        utc(2026, 2, 20),
        utc(2026, 2, 27),
        utc(2026, 3, 6),
        utc(2026, 3, 13),
    ]


def test_leap_day_schedule() -> None:
    assert parse_schedule("0 0 29 2 *").next_after(utc(2026, 1, 1)) == utc(2028, 2, 29)


def test_whitespace_is_trimmed_and_collapsed() -> None:
    schedule = parse_schedule("  0   9\t* *  *  ")
    assert schedule.spec == "0 9 * * *"
    assert schedule.next_after(utc(2026, 5, 10)) == utc(2026, 5, 10, 9)


# --------------------------------------------------------------------------- six fields


def test_six_fields_every_five_seconds() -> None:
    schedule = parse_schedule("*/5 * * * * *")
    assert schedule.has_seconds is True
    assert schedule.next_times(utc(2026, 5, 10, 12, 0, 3), 4) == [
        utc(2026, 5, 10, 12, 0, 5),
        utc(2026, 5, 10, 12, 0, 10),
        utc(2026, 5, 10, 12, 0, 15),
        utc(2026, 5, 10, 12, 0, 20),
    ]


def test_six_fields_seconds_come_first() -> None:
    # Read seconds-last, "30 */2 * * * *" would be minute 30 of every 2nd hour, every second.
    schedule = parse_schedule("30 */2 * * * *")
    assert schedule.next_times(utc(2026, 5, 10, 12, 0, 0), 3) == [
        utc(2026, 5, 10, 12, 0, 30),
        utc(2026, 5, 10, 12, 2, 30),
        utc(2026, 5, 10, 12, 4, 30),
    ]


def test_six_fields_single_second_value() -> None:
    schedule = parse_schedule("5 * * * * *")
    assert schedule.next_times(utc(2026, 5, 10, 12, 0, 0), 2) == [
        utc(2026, 5, 10, 12, 0, 5),
        utc(2026, 5, 10, 12, 1, 5),
    ]


def test_six_fields_daily_time() -> None:
    schedule = parse_schedule("0 30 9 * * *")
    assert schedule.next_times(utc(2026, 5, 10, 12), 2) == [utc(2026, 5, 11, 9, 30), utc(2026, 5, 12, 9, 30)]
    assert schedule.next_after(utc(2026, 5, 10, 9, 29, 59)) == utc(2026, 5, 10, 9, 30, 0)


# --------------------------------------------------------------------------- descriptors


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
        ("@monthly", utc(2026, 6, 1)),
        ("@weekly", utc(2026, 5, 17)),  # next Sunday; 2026-05-10 is itself a Sunday
        ("@daily", utc(2026, 5, 11)),
        ("@midnight", utc(2026, 5, 11)),
        ("@hourly", utc(2026, 5, 10, 13)),
        ("@DAILY", utc(2026, 5, 11)),
    ],
)
def test_descriptors(spec: str, expected: datetime) -> None:
    schedule = parse_schedule(spec)
    assert schedule.next_after(utc(2026, 5, 10, 12, 30)) == expected
    assert schedule.has_seconds is False


def test_descriptor_uses_time_zone() -> None:
    assert parse_schedule("@daily", "Asia/Tokyo").next_after(utc(2026, 5, 10, 12)) == utc(2026, 5, 10, 15)


# --------------------------------------------------------------------------- @every


def test_every_is_anchored_to_the_unix_epoch() -> None:
    schedule = parse_schedule("@every 11m")
    expected = [utc(2026, 5, 10, 12, 8), utc(2026, 5, 10, 12, 19), utc(2026, 5, 10, 12, 30)]
    # Different starting points land on the same lattice, not on start + k * interval.
    assert schedule.next_times(utc(2026, 5, 10, 12, 0, 0), 3) == expected
    assert schedule.next_times(utc(2026, 5, 10, 12, 3, 17), 3) == expected
    assert schedule.next_times(utc(2026, 5, 10, 12, 8, 0), 2) == expected[1:]
    for tick in expected:
        assert (tick - EPOCH) % timedelta(minutes=11) == timedelta(0)


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("@every 90s", utc(2026, 5, 10, 12, 3, 17), [utc(2026, 5, 10, 12, 4, 30), utc(2026, 5, 10, 12, 6)]),
        ("@every 1h30m", utc(2026, 5, 10, 12, 3, 17), [utc(2026, 5, 10, 13, 30), utc(2026, 5, 10, 15)]),
        ("@every 1.5h", utc(2026, 5, 10, 12, 3, 17), [utc(2026, 5, 10, 13, 30), utc(2026, 5, 10, 15)]),
        ("@every 2h", utc(2026, 5, 10, 12, 3, 17), [utc(2026, 5, 10, 14), utc(2026, 5, 10, 16)]),
        (
            "@every 2000ms",
            utc(2026, 5, 10, 12, 3, 17),
            [utc(2026, 5, 10, 12, 3, 18), utc(2026, 5, 10, 12, 3, 20)],
        ),
        (
            "@every 1s",
            utc(2026, 5, 10, 12, 3, 17),
            [utc(2026, 5, 10, 12, 3, 18), utc(2026, 5, 10, 12, 3, 19)],
        ),
        ("@every 1d", utc(2026, 5, 10, 12, 3, 17), [utc(2026, 5, 11), utc(2026, 5, 12)]),
    ],
)
def test_every_durations(spec: str, after: datetime, expected: list[datetime]) -> None:
    assert parse_schedule(spec).next_times(after, 2) == expected


def test_every_ignores_time_zone() -> None:
    # Kolkata is UTC+05:30, so a zone-aware reading would put hourly ticks at :30 UTC.
    in_kolkata = parse_schedule("@every 1h", "Asia/Kolkata")
    assert in_kolkata.time_zone == "Asia/Kolkata"
    assert in_kolkata.next_after(utc(2026, 5, 10, 12, 10)) == utc(2026, 5, 10, 13)
    # Across a DST change the ticks stay exactly one interval apart.
    in_new_york = parse_schedule("@every 1h", NEW_YORK)
    assert in_new_york.next_times(utc(2026, 11, 1, 4, 30), 3) == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 7),
    ]


def test_every_has_seconds_only_when_not_whole_minutes() -> None:
    assert parse_schedule("@every 90s").has_seconds is True
    assert parse_schedule("@every 10m").has_seconds is False
    assert parse_schedule("@every 120s").has_seconds is False


def test_every_maximum_is_366_days() -> None:
    schedule = parse_schedule("@every 366d")
    assert (schedule.next_after(utc(2026, 5, 10)) - EPOCH) % timedelta(days=366) == timedelta(0)
    assert parse_schedule("@every 8784h").next_after(utc(2026, 5, 10)) == schedule.next_after(
        utc(2026, 5, 10)
    )


# --------------------------------------------------------------------------- time zones


def test_time_zone_shifts_wall_clock_to_utc() -> None:
    assert parse_schedule("0 9 * * *", "Asia/Tokyo").next_after(utc(2026, 5, 10, 12)) == utc(2026, 5, 11, 0)
    assert parse_schedule("0 9 * * *", "Asia/Kolkata").next_after(utc(2026, 5, 10, 12)) == utc(
        2026, 5, 11, 3, 30
    )
    assert parse_schedule("0 9 * * *", NEW_YORK).next_after(utc(2026, 1, 10, 12)) == utc(2026, 1, 10, 14)
    assert parse_schedule("0 9 * * *", NEW_YORK).next_after(utc(2026, 7, 10, 12)) == utc(2026, 7, 10, 13)


def test_day_fields_are_read_in_the_zone() -> None:
    # Monday 00:30 in Tokyo is still Sunday in UTC.
    schedule = parse_schedule("30 0 * * 1", "Asia/Tokyo")
    assert schedule.next_after(utc(2026, 5, 4)) == utc(2026, 5, 10, 15, 30)


def test_results_are_utc_aware() -> None:
    tokyo_input = datetime(2026, 5, 10, 21, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    result = parse_schedule("*/10 * * * *", NEW_YORK).next_after(tokyo_input)
    assert result == utc(2026, 5, 10, 12, 10)
    assert result.tzinfo is UTC


# --------------------------------------------------------------------------- DST: New York
# 2026-03-08 02:00 EST jumps to 03:00 EDT (07:00 UTC);
# 2026-11-01 02:00 EDT falls back to 01:00 EST (06:00 UTC).


def test_new_york_spring_forward_daily_fires_once_when_the_gap_ends() -> None:
    fires = parse_schedule("30 2 * * *", NEW_YORK).next_times(utc(2026, 3, 7, 12), 3)
    assert fires == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30), utc(2026, 3, 10, 6, 30)]
    assert local_readings(fires, NEW_YORK) == [(3, 0, -4), (2, 30, -4), (2, 30, -4)]


def test_new_york_spring_forward_several_skipped_matches_collapse_to_one_fire() -> None:
    fires = parse_schedule("*/15 2 * * *", NEW_YORK).next_times(utc(2026, 3, 7, 12), 3)
    assert fires == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 0), utc(2026, 3, 9, 6, 15)]


def test_new_york_spring_forward_gap_match_and_gap_end_match_fire_once() -> None:
    fires = parse_schedule("0 2,3 * * *", NEW_YORK).next_times(utc(2026, 3, 7, 12), 3)
    assert fires == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 0), utc(2026, 3, 9, 7, 0)]


def test_new_york_fall_back_daily_fires_only_at_first_occurrence() -> None:
    fires = parse_schedule("30 1 * * *", NEW_YORK).next_times(utc(2026, 10, 31, 12), 3)
    assert fires == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30), utc(2026, 11, 3, 6, 30)]
    assert local_readings(fires, NEW_YORK) == [(1, 30, -4), (1, 30, -5), (1, 30, -5)]


def test_new_york_fall_back_search_from_inside_the_repeated_hour() -> None:
    schedule = parse_schedule("30 1 * * *", NEW_YORK)
    # 06:10 UTC is 01:10 EST, the second pass; 01:30 already fired at 05:30 UTC.
    assert schedule.next_after(utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 2, 6, 30)
    assert schedule.next_after(utc(2026, 11, 1, 5, 10)) == utc(2026, 11, 1, 5, 30)


def test_new_york_fall_back_fixed_hour_with_minute_steps() -> None:
    fires = parse_schedule("*/20 1 * * *", NEW_YORK).next_times(utc(2026, 10, 31, 12), 4)
    assert fires == [
        utc(2026, 11, 1, 5, 0),
        utc(2026, 11, 1, 5, 20),
        utc(2026, 11, 1, 5, 40),
        utc(2026, 11, 2, 6, 0),
    ]


def test_new_york_hourly_through_spring_forward() -> None:
    fires = parse_schedule("0 * * * *", NEW_YORK).next_times(utc(2026, 3, 8, 4), 5)
    assert fires == [
        utc(2026, 3, 8, 5),
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 8),
        utc(2026, 3, 8, 9),
    ]
    assert [h for h, _, _ in local_readings(fires, NEW_YORK)] == [0, 1, 3, 4, 5]


def test_new_york_hourly_through_fall_back() -> None:
    fires = parse_schedule("0 * * * *", NEW_YORK).next_times(utc(2026, 11, 1, 3), 6)
    assert fires == [
        utc(2026, 11, 1, 4),
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 7),
        utc(2026, 11, 1, 8),
        utc(2026, 11, 1, 9),
    ]
    assert local_readings(fires, NEW_YORK) == [
        (0, 0, -4),
        (1, 0, -4),
        (1, 0, -5),
        (2, 0, -5),
        (3, 0, -5),
        (4, 0, -5),
    ]


@pytest.mark.parametrize(
    ("local_day", "expected_fires"),
    [((2026, 3, 8), 23), ((2026, 11, 1), 25), ((2026, 6, 1), 24)],
)
def test_new_york_hourly_fires_once_per_real_hour(
    local_day: tuple[int, int, int], expected_fires: int
) -> None:
    zone = ZoneInfo(NEW_YORK)
    day_start = datetime(*local_day, tzinfo=zone)
    next_day = day_start.date() + timedelta(days=1)
    day_end = datetime(next_day.year, next_day.month, next_day.day, tzinfo=zone)
    schedule = parse_schedule("0 * * * *", NEW_YORK)
    fires = _fires_between(schedule, day_start, day_end)
    assert len(fires) == expected_fires
    assert fires[0] == day_start
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(fires))


def test_new_york_half_hourly_through_both_transitions() -> None:
    schedule = parse_schedule("*/30 * * * *", NEW_YORK)
    spring = schedule.next_times(utc(2026, 3, 8, 5, 45), 4)
    assert spring == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30)]
    fall = schedule.next_times(utc(2026, 11, 1, 5, 15), 4)
    assert fall == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 1, 7),
    ]


def test_new_york_wildcard_hour_skips_nonexistent_wall_time() -> None:
    # 02:30 never happens on 2026-03-08; the cadence stays one real hour apart.
    fires = parse_schedule("30 * * * *", NEW_YORK).next_times(utc(2026, 3, 8, 6), 2)
    assert fires == [utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30)]
    assert [h for h, _, _ in local_readings(fires, NEW_YORK)] == [1, 3]


def test_new_york_seconds_schedule_through_fall_back() -> None:
    schedule = parse_schedule("*/20 * * * * *", NEW_YORK)
    # 05:59:40 UTC is 01:59:40 EDT; the next wall second 01:00:00 EST is 06:00:00 UTC.
    assert schedule.next_times(utc(2026, 11, 1, 5, 59, 30), 3) == [
        utc(2026, 11, 1, 5, 59, 40),
        utc(2026, 11, 1, 6, 0, 0),
        utc(2026, 11, 1, 6, 0, 20),
    ]


# --------------------------------------------------------------------------- DST: Berlin
# 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00 UTC);
# 2026-10-25 03:00 CEST falls back to 02:00 CET (01:00 UTC).


def test_berlin_spring_forward_daily() -> None:
    fires = parse_schedule("30 2 * * *", BERLIN).next_times(utc(2026, 3, 28, 12), 2)
    assert fires == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]


def test_berlin_fall_back_daily() -> None:
    fires = parse_schedule("30 2 * * *", BERLIN).next_times(utc(2026, 10, 24, 12), 2)
    assert fires == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_berlin_hourly_through_both_transitions() -> None:
    schedule = parse_schedule("0 * * * *", BERLIN)
    spring = schedule.next_times(utc(2026, 3, 28, 23, 30), 3)
    assert spring == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]
    assert [h for h, _, _ in local_readings(spring, BERLIN)] == [1, 3, 4]
    fall = schedule.next_times(utc(2026, 10, 24, 22, 30), 4)
    assert fall == [utc(2026, 10, 24, 23), utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)]
    assert local_readings(fall, BERLIN) == [(1, 0, 2), (2, 0, 2), (2, 0, 1), (3, 0, 1)]


# --------------------------------------------------------------------------- DST: brute force


def _transitions(zone: ZoneInfo, year: int) -> Iterator[datetime]:
    probe = datetime(year, 1, 1, tzinfo=UTC)
    while probe.year == year:
        following = probe + timedelta(hours=1)
        if probe.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            yield probe
        probe = following


def _reference_fires(
    minutes: set[int], hours: set[int], zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """The documented DST rules evaluated minute by minute, for specs with `*` day fields."""
    cadence = len(hours) == 24
    fires = []
    moment = start
    while moment < end:
        wall = moment.astimezone(zone)
        matches = wall.hour in hours and wall.minute in minutes
        previous_offset = (moment - timedelta(minutes=1)).astimezone(zone).utcoffset()
        offset = wall.utcoffset()
        assert previous_offset is not None
        assert offset is not None
        if cadence:
            fire = matches
        else:
            fire = matches and wall.fold == 0
            if offset > previous_offset:
                # Wall readings skipped by the jump, written on a UTC-tagged calendar.
                skipped_start = moment + previous_offset
                skipped = (
                    skipped_start + timedelta(minutes=k)
                    for k in range((offset - previous_offset) // timedelta(minutes=1))
                )
                fire = fire or any(s.hour in hours and s.minute in minutes for s in skipped)
        if fire:
            fires.append(moment)
        moment += timedelta(minutes=1)
    return fires


def _fires_between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    fires = []
    cursor = start - timedelta(seconds=1)
    while (cursor := schedule.next_after(cursor)) < end:
        fires.append(cursor)
    return fires


@pytest.mark.parametrize(
    "zone_name",
    [NEW_YORK, BERLIN, "America/Santiago", "Australia/Lord_Howe", "Australia/Sydney", "America/Havana"],
)
@pytest.mark.parametrize(
    ("spec", "minutes", "hours"),
    [
        ("30 2 * * *", {30}, {2}),
        ("0 0 * * *", {0}, {0}),
        ("30 23 * * *", {30}, {23}),
        ("*/20 1 * * *", {0, 20, 40}, {1}),
        ("0 1-3 * * *", {0}, {1, 2, 3}),
        ("15,45 2,3 * * *", {15, 45}, {2, 3}),
        ("0 * * * *", {0}, set(range(24))),
        ("15,45 * * * *", {15, 45}, set(range(24))),
    ],
)
def test_dst_rules_match_minute_by_minute_reference(
    zone_name: str, spec: str, minutes: set[int], hours: set[int]
) -> None:
    zone = ZoneInfo(zone_name)
    schedule = parse_schedule(spec, zone_name)
    transitions = list(_transitions(zone, 2026))
    assert transitions, zone_name
    for transition in transitions:
        start, end = transition - timedelta(hours=30), transition + timedelta(hours=30)
        assert _fires_between(schedule, start, end) == _reference_fires(minutes, hours, zone, start, end), (
            zone_name,
            transition,
        )


@pytest.mark.parametrize("zone_name", [NEW_YORK, BERLIN, "America/Santiago", "Australia/Lord_Howe"])
def test_fixed_time_daily_fires_exactly_once_per_local_day_for_a_year(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    for spec in ("30 2 * * *", "0 0 * * *", "30 1 * * *"):
        fires = parse_schedule(spec, zone_name).next_times(utc(2025, 12, 31, 12), 380)
        assert_strictly_increasing(fires)
        days = [fire.astimezone(zone).date() for fire in fires]
        assert len(set(days)) == len(days), spec
        assert days[0].isoformat() == "2026-01-01"
        assert all((b - a).days == 1 for a, b in itertools.pairwise(days)), spec


# --------------------------------------------------------------------------- latest_at_or_before


def test_latest_at_or_before_basic() -> None:
    schedule = parse_schedule("0 9 * * *")
    assert schedule.latest_at_or_before(utc(2026, 5, 10, 8, 59, 59)) == utc(2026, 5, 9, 9)
    assert schedule.latest_at_or_before(utc(2026, 5, 10, 9, 0, 0)) == utc(2026, 5, 10, 9)
    assert schedule.latest_at_or_before(utc(2026, 5, 10, 9) - timedelta(microseconds=1)) == utc(2026, 5, 9, 9)
    assert schedule.latest_at_or_before(utc(2026, 5, 10, 23)) == utc(2026, 5, 10, 9)


def test_latest_at_or_before_seconds_and_every() -> None:
    assert parse_schedule("*/5 * * * * *").latest_at_or_before(utc(2026, 5, 10, 12, 0, 14)) == utc(
        2026, 5, 10, 12, 0, 10
    )
    every = parse_schedule("@every 11m")
    assert every.latest_at_or_before(utc(2026, 5, 10, 12, 7, 59)) == utc(2026, 5, 10, 11, 57)
    assert every.latest_at_or_before(utc(2026, 5, 10, 12, 8)) == utc(2026, 5, 10, 12, 8)


def test_latest_at_or_before_respects_lookback() -> None:
    leap_day = parse_schedule("0 0 29 2 *")
    assert leap_day.latest_at_or_before(utc(2024, 12, 1)) == utc(2024, 2, 29)
    assert leap_day.latest_at_or_before(utc(2026, 6, 1)) is None
    assert parse_schedule("@yearly").latest_at_or_before(utc(2026, 12, 31)) == utc(2026, 1, 1)


def test_latest_at_or_before_follows_dst_rules() -> None:
    daily = parse_schedule("30 1 * * *", NEW_YORK)
    # 06:45 UTC is 01:45 EST on the fall-back day; 01:30 fired only in the EDT pass.
    assert daily.latest_at_or_before(utc(2026, 11, 1, 6, 45)) == utc(2026, 11, 1, 5, 30)
    gap = parse_schedule("30 2 * * *", NEW_YORK)
    assert gap.latest_at_or_before(utc(2026, 3, 8, 7, 15)) == utc(2026, 3, 8, 7, 0)
    hourly = parse_schedule("0 * * * *", NEW_YORK)
    assert hourly.latest_at_or_before(utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 1, 6)


@pytest.mark.parametrize(
    ("spec", "zone_name", "after"),
    [
        ("0 * * * *", NEW_YORK, utc(2026, 11, 1, 2)),
        ("30 1 * * *", NEW_YORK, utc(2026, 10, 30)),
        ("30 2 * * *", NEW_YORK, utc(2026, 3, 6)),
        ("*/20 * * * * *", BERLIN, utc(2026, 10, 25, 0, 59)),
    ],
)
def test_latest_at_or_before_agrees_with_next_after(spec: str, zone_name: str, after: datetime) -> None:
    schedule = parse_schedule(spec, zone_name)
    fires = schedule.next_times(after, 8)
    for earlier, later in itertools.pairwise(fires):
        assert schedule.latest_at_or_before(earlier) == earlier
        assert schedule.latest_at_or_before(earlier + (later - earlier) / 2) == earlier
        assert schedule.latest_at_or_before(later - timedelta(microseconds=1)) == earlier


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "spec is empty"),
        ("   \t ", "spec is empty"),
        ("* * * *", "spec has 4 fields; expected 5 fields"),
        ("*", "spec has 1 fields"),
        ("0 0 * * * * 2026", "spec has 7 fields"),
        ("61 * * * *", "minute field: 61 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month field: 32 is out of range 1-31"),
        ("* * * 13 *", "month field: 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("60 * * * * *", "second field: 60 is out of range 0-59"),
        ("0-60 * * * *", "minute field: 60 is out of range 0-59"),
        ("*/0 * * * *", "minute field: step 0 is out of range 1-60"),
        ("*/61 * * * *", "minute field: step 61 is out of range 1-60"),
        ("*/x * * * *", "minute field: invalid step 'x'"),
        ("30-10 * * * *", "minute field: range '30-10' runs backwards"),
        ("* * * * fri-mon", "day-of-week field: range 'fri-mon' runs backwards"),
        ("abc * * * *", "minute field: invalid value 'abc'"),
        ("jan * * * *", "minute field: invalid value 'jan'"),
        ("* * * foo *", "month field: invalid value 'foo'"),
        ("-5 * * * *", "minute field: invalid value '' in '-5'"),
        ("1-2-3 * * * *", "minute field: invalid value '2-3' in '1-2-3'"),
        ("1,,2 * * * *", "minute field: empty list entry in '1,,2'"),
        ("1, * * * *", "minute field: empty list entry"),
        ("0 0 L * *", "day-of-month field: invalid value 'L'"),
        ("0 0 15W * *", "day-of-month field: invalid value '15W'"),
        ("0 0 * * 1#2", "day-of-week field: invalid value '1#2'"),
        ("0 0 ? * *", "day-of-month field: invalid value '?'"),
        ("H * * * *", "minute field: invalid value 'H'"),
        ("0 0 * * \u0661", "day-of-week field: invalid value"),  # non-ASCII digit
        ("0 0 30 2 *", "never occur"),
        ("0 0 31 4,6,9,11 *", "day(s) 31 never occur in month(s) 4,6,9,11"),
        ("@reboot", "@reboot is not supported"),
        ("@fortnightly", "unknown descriptor @fortnightly"),
        ("@", "unknown descriptor @"),
        ("@daily 5", "descriptor @daily takes no arguments"),
        ("@every", "@every takes exactly one duration"),
        ("@every 1h 30m", "@every takes exactly one duration"),
        ("@every 500ms", "@every duration must be at least 1s"),
        ("@every 0s", "@every duration must be at least 1s"),
        ("@every 1500ms", "@every duration must be a whole number of seconds"),
        ("@every 1.25s", "@every duration must be a whole number of seconds"),
        ("@every 367d", "@every duration must be at most 366d"),
        ("@every 8785h", "@every duration must be at most 366d"),
        ("@every 10", "invalid @every duration '10'"),
        ("@every 10x", "invalid @every duration '10x'"),
        ("@every -5s", "invalid @every duration '-5s'"),
        ("@every 1w", "invalid @every duration '1w'"),
        ("0 " * 101, "the maximum is 200"),
    ],
)
def test_invalid_specs(spec: str, message: str) -> None:
    with pytest.raises(CronSpecError) as caught:
        parse_schedule(spec)
    assert message in str(caught.value)
    assert not isinstance(caught.value, TimeZoneError)


def test_spec_length_limit_counts_trimmed_text() -> None:
    spec = "0 0 1 1 " + ",".join(["1"] * 96)
    assert len(spec) == 199
    assert parse_schedule(f"   {spec}   ").spec == spec


@pytest.mark.parametrize(
    "zone", ["Mars/Base", "", "America", "../etc/passwd", "/etc/localtime", "localtime", " UTC"]
)
def test_invalid_time_zone(zone: str) -> None:
    with pytest.raises(TimeZoneError) as caught:
        parse_schedule("0 9 * * *", zone)
    assert str(caught.value) == f"unknown IANA time zone {zone!r}"
    assert not isinstance(caught.value, CronSpecError)


def test_invalid_time_zone_message_example() -> None:
    with pytest.raises(TimeZoneError, match=r"^unknown IANA time zone 'Mars/Base'$"):
        parse_schedule("@every 1h", "Mars/Base")


def test_naive_datetimes_are_rejected() -> None:
    schedule = parse_schedule("0 9 * * *")
    naive = utc(2026, 5, 10).replace(tzinfo=None)
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        schedule.next_after(naive)
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        schedule.next_times(naive, 3)
    with pytest.raises(ValueError, match="at must be a timezone-aware datetime"):
        schedule.latest_at_or_before(naive)


def test_next_times_count() -> None:
    schedule = parse_schedule("@hourly")
    assert schedule.next_times(utc(2026, 5, 10), 0) == []
    with pytest.raises(ValueError, match="count must be non-negative"):
        schedule.next_times(utc(2026, 5, 10), -1)


# --------------------------------------------------------------------------- the Schedule object


def test_schedule_properties_and_immutability() -> None:
    schedule = parse_schedule("0 30 9 * * 1-5", BERLIN)
    assert (schedule.spec, schedule.time_zone, schedule.has_seconds) == ("0 30 9 * * 1-5", BERLIN, True)
    assert repr(schedule) == "Schedule(spec='0 30 9 * * 1-5', time_zone='Europe/Berlin')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule._spec = "* * * * *"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        schedule.spec = "* * * * *"  # type: ignore[misc]
    assert schedule == parse_schedule(" 0 30 9 * *  1-5 ", BERLIN)
    assert schedule != parse_schedule("0 30 9 * * 1-5", NEW_YORK)
    assert len({schedule, parse_schedule("0 30 9 * * 1-5", BERLIN)}) == 1


def test_spec_errors_are_reported_before_time_zone_errors() -> None:
    with pytest.raises(CronSpecError, match="minute field"):
        parse_schedule("61 * * * *", "Mars/Base")
