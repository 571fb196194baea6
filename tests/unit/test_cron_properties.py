"""Property tests (hypothesis) for chronosched_server.cron: generated specs,
zones and instants, against references written here from the rules the
module's docstring (and docs/architecture.md, "DST") gives, and against
croniter, which does the project's field matching.
"""

from __future__ import annotations

import calendar
import dataclasses
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chronosched_server.cron import CronSpecError, Schedule, TimeZoneError, parse_schedule

pytestmark = pytest.mark.timeout(60)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Zones without DST in the years drawn, whole- and odd-offset.
STEADY_ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "Etc/GMT-14", "Etc/GMT+12"]
# Zones with DST: one-hour and half-hour shifts, shifts at midnight (the
# date changes in the gap), southern hemisphere, more than two a year.
DST_ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Pacific/Chatham",
    "Africa/Casablanca",
]
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


# --- specs and what they mean ---------------------------------------------------


@dataclass(frozen=True)
class FieldRule:
    low: int
    high: int
    # What `*` covers (day-of-week: 0-6, while 7 is accepted as Sunday).
    star_high: int
    names: tuple[str, ...] = ()


SECOND = FieldRule(0, 59, 59)
MINUTE = FieldRule(0, 59, 59)
HOUR = FieldRule(0, 23, 23)
DOM = FieldRule(1, 31, 31)
MONTH = FieldRule(1, 12, 12, tuple(MONTH_NAMES))
DOW = FieldRule(0, 7, 6, tuple(DOW_NAMES))


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]

    @property
    def star(self) -> bool:
        return self.text == "*"


@st.composite
def fields(draw: st.DrawFn, rule: FieldRule, sparse: bool = False) -> Field:
    """A field's text and the values it stands for, computed here from the
    documented grammar: numbers (or names), `*`, `a-b`, `*/n`, `a-b/n`,
    `a/n` (a to the end of the field), comma lists; day-of-week 7 is 0."""

    def value(number: int) -> str:
        if rule.names and number - rule.low < len(rule.names) and draw(st.booleans()):
            name = rule.names[number - rule.low]
            return draw(st.sampled_from([name, name.upper(), name.title()]))
        return str(number)

    def item() -> tuple[str, set[int]]:
        shape = draw(st.sampled_from(["n", "n", "a-b", "*/n", "a-b/n", "a/n"]))
        a = draw(st.integers(rule.low, rule.high))
        b = draw(st.integers(a, rule.high))
        step = draw(st.integers(1, rule.star_high - rule.low + 1))
        if shape == "n":
            return value(a), {a}
        if shape == "a-b":
            return f"{value(a)}-{value(b)}", set(range(a, b + 1))
        if shape == "*/n":
            return f"*/{step}", set(range(rule.low, rule.star_high + 1, step))
        if shape == "a-b/n":
            return f"{value(a)}-{value(b)}/{step}", set(range(a, b + 1, step))
        return f"{value(a)}/{step}", set(range(a, max(a, rule.star_high) + 1, step))

    if not sparse and draw(st.integers(0, 3)) == 0:
        return Field("*", frozenset(range(rule.low, rule.star_high + 1)))
    items = [item() for _ in range(draw(st.integers(1, 3)))]
    values = set().union(*(v for _, v in items))
    if rule is DOW and 7 in values:
        values = (values - {7}) | {0}
    return Field(",".join(text for text, _ in items), frozenset(values))


@dataclass(frozen=True)
class Spec:
    seconds: Field | None
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def text(self) -> str:
        parts = [self.minute, self.hour, self.dom, self.month, self.dow]
        if self.seconds is not None:
            parts.insert(0, self.seconds)
        return " ".join(p.text for p in parts)

    @property
    def hour_wildcard(self) -> bool:
        return len(self.hour.values) == 24

    def day_matches(self, day: date) -> bool:
        dom = day.day in self.dom.values
        dow = (day.isoweekday() % 7) in self.dow.values
        month = day.month in self.month.values
        if self.dom.star or self.dow.star:
            return month and dom and dow
        return month and (dom or dow)

    def can_fire(self) -> bool:
        if self.dom.star or not self.dow.star:
            return True
        longest = {m: 29 if m == 2 else calendar.monthrange(2001, m)[1] for m in range(1, 13)}
        return any(d <= longest[m] for m in self.month.values for d in self.dom.values)

    def matches(self, wall: datetime) -> bool:
        return (
            self.day_matches(wall.date())
            and wall.hour in self.hour.values
            and wall.minute in self.minute.values
            and (wall.second in self.seconds.values if self.seconds is not None else wall.second == 0)
        )

    def croniter_expression(self) -> str:
        """What croniter is given for the spec: `*` or explicit numbers."""
        parts = [self.minute, self.hour, self.dom, self.month, self.dow]
        if self.seconds is not None:
            parts.insert(0, self.seconds)
        return " ".join("*" if p.star else ",".join(map(str, sorted(p.values))) for p in parts)


EVERY_DAY = Field("*", frozenset(range(1, 32)))
EVERY_MONTH = Field("*", frozenset(range(1, 13)))


@st.composite
def specs(draw: st.DrawFn, seconds: bool | None = None, every_day: bool = False) -> Spec:
    """A spec; `every_day` leaves day-of-month and month `*` (and the day
    of the week `*` half the time), so a window of a day or two has fires."""
    with_seconds = draw(st.booleans()) if seconds is None else seconds
    return Spec(
        seconds=draw(fields(SECOND)) if with_seconds else None,
        minute=draw(fields(MINUTE, sparse=True)),
        hour=draw(fields(HOUR)),
        dom=EVERY_DAY if every_day else draw(fields(DOM)),
        month=EVERY_MONTH if every_day else draw(fields(MONTH)),
        dow=draw(st.one_of(st.just(Field("*", frozenset(range(7)))), fields(DOW)))
        if every_day
        else draw(fields(DOW)),
    )


# Naive bounds, as hypothesis wants them; the instants drawn are UTC.
INSTANTS = st.datetimes(
    min_value=datetime(1999, 1, 1),  # noqa: DTZ001
    max_value=datetime(2036, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def parsed(spec: Spec, zone: str) -> Schedule:
    """The schedule of a spec that can fire; one that never can is refused."""
    if not spec.can_fire():
        with pytest.raises(CronSpecError, match="never"):
            parse_schedule(spec.text, zone)
        assume(False)
    return parse_schedule(spec.text, zone)


# --- references --------------------------------------------------------------------


def steady_reference(spec: Spec, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """Fires in a zone without DST: walk the local days, and each matching
    day's times in order (skipping those of the first day before `after`)."""
    seconds = sorted(spec.seconds.values) if spec.seconds is not None else [0]
    local = after.astimezone(zone)
    out: list[datetime] = []
    day = local.date()
    while True:
        first = day == local.date()
        if spec.day_matches(day):
            for h in sorted(spec.hour.values):
                if first and h < local.hour:
                    continue
                for m in sorted(spec.minute.values):
                    if first and (h, m) < (local.hour, local.minute):
                        continue
                    for s in seconds:
                        moment = datetime(day.year, day.month, day.day, h, m, s, tzinfo=zone).astimezone(UTC)
                        if moment > after:
                            out.append(moment)
                            if len(out) == count:
                                return out
        day += timedelta(days=1)


def dst_reference(spec: Spec, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Fires in [start, end) minute by minute, by the documented DST rules:
    with a wildcard hour field every real minute whose wall clock matches;
    otherwise a matching wall time fires at its first occurrence only, and
    wall times a forward jump skips fire once, when the gap ends."""
    out = []
    moment = start
    while moment < end:
        wall = moment.astimezone(zone)
        before = (moment - timedelta(minutes=1)).astimezone(zone).utcoffset()
        offset = wall.utcoffset()
        assert before is not None and offset is not None
        if spec.hour_wildcard:
            fire = spec.matches(wall)
        else:
            fire = spec.matches(wall) and wall.fold == 0
            if offset > before:
                gap_start = (moment + before).replace(tzinfo=None)
                skipped = (
                    gap_start + timedelta(minutes=k) for k in range((offset - before) // timedelta(minutes=1))
                )
                fire = fire or any(spec.matches(s) for s in skipped)
        if fire:
            out.append(moment)
        moment += timedelta(minutes=1)
    return out


@cache
def transitions(zone_name: str, year: int) -> list[datetime]:
    """The whole hours (UTC) after which the zone's offset changes, in `year`
    (probed every 6 hours: no zone changes twice within that)."""
    zone = ZoneInfo(zone_name)

    def offset(moment: datetime) -> timedelta | None:
        return moment.astimezone(zone).utcoffset()

    found = []
    probe = datetime(year, 1, 1, tzinfo=UTC)
    while probe.year == year:
        coarse = probe + timedelta(hours=6)
        if offset(probe) != offset(coarse):
            hour = probe
            while offset(hour) == offset(hour + timedelta(hours=1)):
                hour += timedelta(hours=1)
            found.append(hour)
        probe = coarse
    return found


def fires_between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    out = []
    cursor = start - timedelta(seconds=1)
    while (cursor := schedule.next_after(cursor)) < end:
        out.append(cursor)
    return out


# --- properties ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, database=None)
@given(spec=specs(), zone=st.sampled_from(STEADY_ZONES), after=INSTANTS)
def test_without_dst_fires_are_the_matching_wall_times_and_croniter_agrees(
    spec: Spec, zone: str, after: datetime
) -> None:
    schedule = parsed(spec, zone)
    fires = schedule.next_times(after, 6)
    assert fires == steady_reference(spec, ZoneInfo(zone), after, 6)
    if zone == "UTC":
        iterator = croniter(
            spec.croniter_expression(), start_time=after, second_at_beginning=spec.seconds is not None
        )
        assert [iterator.get_next(datetime) for _ in fires] == fires


@settings(max_examples=60, deadline=None, database=None)
@given(spec=specs(), zone=st.sampled_from(STEADY_ZONES + DST_ZONES), after=INSTANTS)
def test_fires_increase_strictly_in_whole_seconds_and_match_the_spec_or_end_a_gap(
    spec: Spec, zone: str, after: datetime
) -> None:
    schedule = parsed(spec, zone)
    fires = schedule.next_times(after, 8)
    assert fires[0] > after
    assert all(a < b for a, b in itertools.pairwise(fires))
    tz = ZoneInfo(zone)
    for fire in fires:
        assert fire.tzinfo is UTC and fire.microsecond == 0
        wall = fire.astimezone(tz)
        if spec.matches(wall):
            # A repeated wall time fires in its second pass only on cadence.
            assert wall.fold == 0 or spec.hour_wildcard or not _repeated(wall)
            continue
        # Otherwise only the end of a forward jump, for a fixed hour field.
        before = (fire - timedelta(seconds=1)).astimezone(tz).utcoffset()
        assert before is not None and wall.utcoffset() is not None
        assert not spec.hour_wildcard and wall.utcoffset() > before, (spec.text, zone, fire)  # type: ignore[operator]


def _repeated(wall: datetime) -> bool:
    """Whether this wall time also occurs at another instant (a fall-back)."""
    other = wall.replace(fold=1 - wall.fold)
    return other.utcoffset() != wall.utcoffset()


@settings(max_examples=40, deadline=None, database=None)
@given(
    spec=specs(seconds=False, every_day=True),
    zone=st.sampled_from(DST_ZONES),
    year=st.integers(2000, 2036),
    data=st.data(),
)
def test_around_a_dst_change_fires_follow_the_documented_rules(
    spec: Spec, zone: str, year: int, data: st.DataObject
) -> None:
    changes = transitions(zone, year)
    assume(changes)
    change = data.draw(st.sampled_from(changes))
    if data.draw(st.booleans()):
        # Aim at the wall hours the change skips or repeats.
        before = change.astimezone(ZoneInfo(zone)).utcoffset()
        assert before is not None
        hours = {(change + before).hour, (change + before + timedelta(hours=1)).hour}
        text = ",".join(map(str, sorted(hours)))
        spec = dataclasses.replace(spec, hour=Field(text, frozenset(hours)))
    # Restricted to a day or so: enough to cross the change from either side.
    start, end = change - timedelta(hours=26), change + timedelta(hours=26)
    schedule = parsed(spec, zone)
    assert fires_between(schedule, start, end) == dst_reference(spec, ZoneInfo(zone), start, end), (
        spec.text,
        zone,
        change,
    )


@settings(max_examples=40, deadline=None, database=None)
@given(spec=specs(), zone=st.sampled_from(STEADY_ZONES + DST_ZONES), at=INSTANTS)
def test_latest_at_or_before_and_next_after_agree(spec: Spec, zone: str, at: datetime) -> None:
    schedule = parsed(spec, zone)
    following = schedule.next_after(at)
    assert following > at
    assert schedule.latest_at_or_before(following) == following
    latest = schedule.latest_at_or_before(at)
    if latest is not None:
        assert latest <= at < schedule.next_after(latest)
        assert schedule.next_after(latest) == following


UNITS = {
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
    "d": Fraction(86400),
}


@st.composite
def every_specs(draw: st.DrawFn) -> tuple[str, Fraction]:
    """`@every` terms and the interval in seconds they add up to."""
    terms = draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.integers(0, 500).map(str),
                    st.decimals(min_value=0, max_value=50, places=2).map(lambda d: f"{d:.2f}"),
                ),
                st.sampled_from(list(UNITS)),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return "".join(n + u for n, u in terms), sum((Fraction(n) * UNITS[u] for n, u in terms), Fraction(0))


@settings(max_examples=150, deadline=None, database=None)
@given(every=every_specs(), zone=st.sampled_from(STEADY_ZONES + DST_ZONES), after=INSTANTS)
def test_every_fires_on_multiples_of_its_interval_from_the_epoch_in_any_zone(
    every: tuple[str, Fraction], zone: str, after: datetime
) -> None:
    text, interval = every
    spec = f"@every {text}"
    if interval < 1 or interval.denominator != 1 or interval > 366 * 86400:
        with pytest.raises(CronSpecError):
            parse_schedule(spec, zone)
        return
    step = int(interval)
    fires = parse_schedule(spec, zone).next_times(after, 4)
    elapsed = (after - EPOCH) // timedelta(seconds=1)
    first = EPOCH + timedelta(seconds=(elapsed // step + 1) * step)
    assert fires == [first + timedelta(seconds=step * k) for k in range(4)]


@settings(max_examples=200, deadline=None, database=None)
@given(
    text=st.one_of(
        st.text(alphabet=st.sampled_from("0123456789*/,-@ abcdefjlmnorstuvwyADFHJLMSW?#\t\n"), max_size=40),
        st.text(max_size=30),
    ),
    zone=st.one_of(
        st.sampled_from([*DST_ZONES, "UTC", "", "localtime", "Mars/Olympus", "../etc/passwd"]),
        st.text(max_size=12),
    ),
)
def test_any_text_parses_or_raises_only_the_modules_own_errors(text: str, zone: str) -> None:
    try:
        schedule = parse_schedule(text, zone)
    except (CronSpecError, TimeZoneError):
        return
    # A spec that parsed reads back the same, whitespace collapsed.
    assert schedule.spec == " ".join(text.split())
    again = parse_schedule(schedule.spec, zone)
    assert again.spec == schedule.spec
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert again.next_times(after, 3) == schedule.next_times(after, 3)
