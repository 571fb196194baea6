"""Schedule specs: parsing, validation and fire-time computation (pure logic, no I/O).

Accepted specs
--------------
* Five fields, minute precision: ``minute hour day-of-month month day-of-week``.
* Six fields, second precision, with the seconds field FIRST:
  ``second minute hour day-of-month month day-of-week``. ``*/5 * * * * *`` fires every
  five seconds and ``0 30 9 * * *`` fires at 09:30:00 every day.
* Descriptors: ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``
  and ``@hourly`` (the usual five-field meanings; ``@weekly`` is Sunday 00:00).
* ``@every <duration>``: a fixed interval written as ``<number><unit>`` terms, units ``d``,
  ``h``, ``m``, ``s`` and ``ms`` (``90s``, ``10m``, ``1h30m``, ``1.5h``, ``7d``). The interval
  must be a whole number of seconds between 1s and 366d.

Field values are numbers, ``*``, ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n`` (from
``a`` to the end of the field), and comma lists of those. Months accept ``jan``..``dec`` and
days of the week ``sun``..``sat`` (case-insensitive); day-of-week 7 is Sunday like 0. Ranges
must not wrap (``fri-mon`` is rejected rather than guessed at). Quartz/croniter extensions
(``L``, ``W``, ``#``, ``H``, ``?``), ``@reboot`` and seven-field specs with a year are
rejected. When both day-of-month and day-of-week are restricted (neither is a literal ``*``)
a day matches if EITHER matches, as in classic cron; otherwise both must match. A spec that
can never fire (``0 0 30 2 *``) is rejected at parse time.

Time zones and daylight saving time
-----------------------------------
Cron fields are wall-clock times in the schedule's IANA ``time_zone``. All results are
timezone-aware UTC datetimes, strictly increasing and never duplicated. Where the wall clock
jumps, the behaviour depends on whether the hour field is a wildcard, i.e. matches all 24
hours (``*``, ``*/1``, ``0-23``; ``@hourly`` is one):

* Hour field restricted (``30 2 * * *``, ``0 9 * * 1-5``, ``@daily``): the spec names
  particular wall times, and each matching wall time fires exactly once.

  - Spring forward: a matching wall time that does not exist (02:30 when 02:00 jumps to
    03:00) fires once at the instant the gap ends (03:00 local, i.e. the transition
    instant). Several skipped matches collapse into that one fire, and it coincides with a
    03:00 match if the spec has one. A daily job is therefore never silently dropped.
  - Fall back: a wall time that occurs twice (01:30 when 02:00 falls back to 01:00) fires
    only at its first occurrence (the earlier UTC instant); the repeated wall-clock interval
    produces no fires at all.

* Hour field wildcard (``0 * * * *``, ``*/15 * * * *``, ``*/5 * * * * *``): the spec is a
  cadence and follows real time. It fires at every real instant whose wall clock matches, so
  skipped wall times simply do not fire and repeated wall times fire in both passes. For
  ``0 * * * *`` in America/New_York the fires stay exactly one hour apart in UTC through
  both transitions: 23 fires on the spring-forward day and 25 on the fall-back day.

This follows the split Vixie cron makes between fixed-time and wildcard jobs. The
transition instants come from ``zoneinfo`` offsets, probed at a step far shorter than the
smallest gap between two offset changes anywhere in tzdata (about four days).

``@every`` schedules
--------------------
``@every`` ignores the time zone and DST entirely. Fire times are anchored to the Unix epoch
in UTC: the schedule fires at every instant ``t`` with ``(t - 1970-01-01T00:00:00Z) %
interval == 0``. Anchoring to a constant instead of to process start-up is what lets every
server replica, and every restart of one, compute the same tick times independently.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import cache
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, croniter

__all__ = [
    "MAX_SPEC_LENGTH",
    "CronSpecError",
    "Schedule",
    "TimeZoneError",
    "parse_schedule",
]

MAX_SPEC_LENGTH: Final = 200
MAX_EVERY: Final = timedelta(days=366)
LATEST_LOOKBACK: Final = timedelta(days=400)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND: Final = timedelta(seconds=1)
# Offset probing assumes at most one offset change per step. tzdata never has two changes
# closer than ~95 hours, so 12 hours leaves a wide margin while keeping year-long
# searches (yearly specs) to a few hundred cheap utcoffset() calls.
_PROBE_STEP: Final = 12 * 3600
_LOOKBACK_SECONDS: Final = int(LATEST_LOOKBACK.total_seconds())
_MAX_EVERY_SECONDS: Final = int(MAX_EVERY.total_seconds())
# These keys load on many hosts but mean "whatever this machine is set to", which would
# make replicas on differently configured hosts disagree about fire times.
_HOST_DEPENDENT_ZONES: Final = frozenset({"localtime", "posixrules"})


class CronSpecError(ValueError):
    """The schedule spec is invalid; the message is a human-readable reason."""


class TimeZoneError(ValueError):
    """The time zone is not a known IANA time zone name."""


# --------------------------------------------------------------------------- field parsing


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    # The upper bound that `*` stands for; differs from `high` only for day-of-week, where 7
    # is accepted as an alias of Sunday but must not make `*/2` hit Sunday twice.
    star_high: int
    names: Mapping[str, int] = field(default_factory=dict)


_MONTH_NAMES: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
_DOW_NAMES: Final = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}

_SECOND_FIELD: Final = _Field("second", 0, 59, 59)
_MINUTE_FIELD: Final = _Field("minute", 0, 59, 59)
_HOUR_FIELD: Final = _Field("hour", 0, 23, 23)
_DOM_FIELD: Final = _Field("day-of-month", 1, 31, 31)
_MONTH_FIELD: Final = _Field("month", 1, 12, 12, _MONTH_NAMES)
_DOW_FIELD: Final = _Field("day-of-week", 0, 7, 6, _DOW_NAMES)

_FIVE_FIELDS: Final[tuple[_Field, ...]] = (_MINUTE_FIELD, _HOUR_FIELD, _DOM_FIELD, _MONTH_FIELD, _DOW_FIELD)
_SIX_FIELDS: Final[tuple[_Field, ...]] = (_SECOND_FIELD, *_FIVE_FIELDS)

_NUMBER_RE: Final = re.compile(r"[0-9]+", re.ASCII)
_NAME_RE: Final = re.compile(r"[A-Za-z]+", re.ASCII)
# Longest month (Feb counted as 29) so that leap-day schedules stay valid.
_MAX_DAYS_IN_MONTH: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_DESCRIPTORS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELD_COUNT_HELP: Final = (
    "expected 5 fields (minute hour day-of-month month day-of-week), "
    "6 fields (second minute hour day-of-month month day-of-week), "
    "a descriptor such as @daily, or @every <duration>"
)


@dataclass(frozen=True)
class _ParsedField:
    values: frozenset[int]
    # Day-of-month/day-of-week OR semantics hinge on whether a field was written as `*`,
    # not on which values it ends up covering.
    is_star: bool


def _parse_value(fld: _Field, text: str, item: str) -> int:
    if _NUMBER_RE.fullmatch(text):
        value = int(text)
    elif _NAME_RE.fullmatch(text) and text.lower() in fld.names:
        value = fld.names[text.lower()]
    else:
        where = "" if text == item else f" in {item!r}"
        raise CronSpecError(f"{fld.name} field: invalid value {text!r}{where}")
    if not fld.low <= value <= fld.high:
        raise CronSpecError(f"{fld.name} field: {value} is out of range {fld.low}-{fld.high}")
    return value


def _parse_item(fld: _Field, item: str) -> set[int]:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _NUMBER_RE.fullmatch(step_text):
            raise CronSpecError(f"{fld.name} field: invalid step {step_text!r} in {item!r}")
        step = int(step_text)
        max_step = fld.star_high - fld.low + 1
        if not 1 <= step <= max_step:
            raise CronSpecError(f"{fld.name} field: step {step} is out of range 1-{max_step}")
    if base == "*":
        start, end = fld.low, fld.star_high
    elif "-" in base:
        start_text, _, end_text = base.partition("-")
        start, end = _parse_value(fld, start_text, item), _parse_value(fld, end_text, item)
        if start > end:
            raise CronSpecError(
                f"{fld.name} field: range {base!r} runs backwards; write the lower bound first"
            )
    else:
        start = _parse_value(fld, base, item)
        # `a/n` means "from a to the end of the field", as in most cron dialects; max() keeps
        # day-of-week `7/n` (Sunday) from becoming an empty range.
        end = max(start, fld.star_high) if slash else start
    return set(range(start, end + 1, step))


def _parse_field(fld: _Field, text: str) -> _ParsedField:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronSpecError(f"{fld.name} field: empty list entry in {text!r}")
        values |= _parse_item(fld, item)
    if fld is _DOW_FIELD and 7 in values:
        values = (values - {7}) | {0}
    return _ParsedField(frozenset(values), text == "*")


def _croniter_field(parsed: _ParsedField) -> str:
    # croniter only ever sees `*` or explicit numbers, so its own (looser and occasionally
    # surprising) handling of names, ranges and steps never decides what a spec means.
    return "*" if parsed.is_star else ",".join(str(v) for v in sorted(parsed.values))


def _check_can_fire(dom: _ParsedField, month: _ParsedField, dow: _ParsedField) -> None:
    if dom.is_star or not dow.is_star:
        # With day-of-week restricted too, OR semantics means some weekday always matches.
        return
    if any(day <= _MAX_DAYS_IN_MONTH[m - 1] for m in month.values for day in dom.values):
        return
    days = ",".join(str(d) for d in sorted(dom.values))
    months = ",".join(str(m) for m in sorted(month.values))
    raise CronSpecError(
        f"day-of-month field: day(s) {days} never occur in month(s) {months}; the schedule would never fire"
    )


# --------------------------------------------------------------------------- @every


_DURATION_TERM_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|[dhms])", re.ASCII)
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _parse_every(text: str) -> int:
    """Return the interval in whole seconds."""
    position = 0
    total_ms = Fraction(0)
    while position < len(text):
        term = _DURATION_TERM_RE.match(text, position)
        if term is None:
            raise CronSpecError(
                f"invalid @every duration {text!r}: use <number><unit> terms with units "
                "d, h, m, s or ms, e.g. 90s, 10m, 1h30m"
            )
        # Fraction keeps "1.1h" exact; floats would turn whole-second checks into guesses.
        total_ms += Fraction(term.group(1)) * _UNIT_MS[term.group(2)]
        position = term.end()
    if total_ms < 1000:
        raise CronSpecError("@every duration must be at least 1s")
    if total_ms % 1000:
        raise CronSpecError(f"@every duration must be a whole number of seconds, got {text}")
    seconds = int(total_ms / 1000)
    if seconds > _MAX_EVERY_SECONDS:
        raise CronSpecError(f"@every duration must be at most {MAX_EVERY.days}d, got {text}")
    return seconds


# --------------------------------------------------------------------------- rules


class _Rule(Protocol):
    @property
    def has_seconds(self) -> bool: ...

    def next_after(self, after: int, limit: int | None) -> int | None:
        """First fire time (epoch seconds) strictly after `after`; None if beyond `limit`."""
        ...

    def latest_at_or_before(self, at: int, earliest: int) -> int | None:
        """Latest fire time in [earliest, at] (epoch seconds)."""
        ...


@dataclass(frozen=True)
class _EveryRule:
    interval: int

    @property
    def has_seconds(self) -> bool:
        return self.interval % 60 != 0

    def next_after(self, after: int, limit: int | None) -> int | None:
        tick = (after // self.interval + 1) * self.interval
        return tick if limit is None or tick <= limit else None

    def latest_at_or_before(self, at: int, earliest: int) -> int | None:
        tick = at // self.interval * self.interval
        return tick if tick >= earliest else None


class _CronRule:
    """Cron fields matched against wall-clock time in a zone.

    Instants are whole epoch seconds. The search walks the UTC timeline one constant-offset
    segment at a time: inside a segment wall time is UTC plus a fixed offset, so croniter can
    do the field matching on a plain UTC calendar with no DST logic of its own, and the DST
    semantics live entirely in how segment boundaries are crossed.
    """

    __slots__ = ("_has_seconds", "_hour_wildcard", "_iterator", "_lock", "_zone")

    def __init__(self, expression: str, seconds_first: bool, hour_wildcard: bool, zone: ZoneInfo) -> None:
        self._has_seconds = seconds_first
        self._hour_wildcard = hour_wildcard
        self._zone = zone
        # Building a croniter costs several times more than one get_next(), so keep one and
        # serialise access: get_next(start_time=...) mutates its cursor.
        self._iterator = croniter(
            expression, start_time=_EPOCH, ret_type=float, second_at_beginning=seconds_first
        )
        self._lock = threading.Lock()

    @property
    def has_seconds(self) -> bool:
        return self._has_seconds

    def _offset(self, instant: int) -> int:
        offset = datetime.fromtimestamp(instant, self._zone).utcoffset()
        if offset is None:  # pragma: no cover - ZoneInfo always answers for aware datetimes
            raise RuntimeError(f"time zone {self._zone.key!r} gave no UTC offset")
        return offset // _ONE_SECOND

    def _wall_next(self, wall: int) -> int:
        """First matching wall time strictly after `wall`; both are seconds on a UTC-tagged calendar."""
        with self._lock:
            found = float(self._iterator.get_next(float, start_time=_EPOCH + timedelta(seconds=wall)))
        return round(found)

    def _first_transition(self, low: int, high: int) -> int | None:
        """First instant in (low, high] whose UTC offset differs from the offset at `low`."""
        if high <= low:
            return None
        base = self._offset(low)
        start = low
        while start < high:
            stop = min(start + _PROBE_STEP, high)
            if self._offset(stop) != base:
                while stop - start > 1:
                    middle = (start + stop) // 2
                    if self._offset(middle) == base:
                        start = middle
                    else:
                        stop = middle
                return stop
            start = stop
        return None

    def _past_repeated_interval(self, instant: int) -> tuple[int, bool]:
        """Where a fixed-hour search from `instant` may start, and whether that start is inclusive.

        Inside the second pass of a fall-back, every wall time has already had its (only)
        chance to fire during the first pass, so the search resumes where the wall clock
        reaches new ground again.
        """
        transition = self._first_transition(instant - _PROBE_STEP, instant)
        if transition is None:
            return instant, False
        repeated = self._offset(transition - 1) - self._offset(transition)
        if repeated > 0 and instant < transition + repeated:
            return transition + repeated, True
        return instant, False

    def next_after(self, after: int, limit: int | None) -> int | None:
        start, inclusive = (after, False) if self._hour_wildcard else self._past_repeated_interval(after)
        while True:
            offset = self._offset(start)
            wall = start + offset
            candidate = self._wall_next(wall - 1 if inclusive else wall) - offset
            horizon = candidate if limit is None else min(candidate, limit)
            transition = self._first_transition(start, horizon)
            if transition is None:
                return candidate if limit is None or candidate <= limit else None
            new_offset = self._offset(transition)
            inclusive = True
            if new_offset > offset:
                # Spring forward: wall times [transition+offset, transition+new_offset) never
                # happen. A fixed-hour spec matching one of them fires when the gap ends.
                gap_start, gap_end = transition + offset, transition + new_offset
                if not self._hour_wildcard and self._wall_next(gap_start - 1) < gap_end:
                    return transition
                start = transition
            elif self._hour_wildcard:
                # Fall back, cadence semantics: the repeated wall times fire again.
                start = transition
            else:
                # Fall back, fixed-time semantics: skip the repeated wall times entirely.
                start = transition + (offset - new_offset)

    def latest_at_or_before(self, at: int, earliest: int) -> int | None:
        # Defined through next_after so the two can never disagree about the DST rules.
        # Invariant: a fire exists in (low, at] and none exists in (high, at].
        low = earliest - 1
        if self.next_after(low, at) is None:
            return None
        high = at
        while high - low > 1:
            middle = (low + high) // 2
            if self.next_after(middle, at) is None:
                high = middle
            else:
                low = middle
        return high


# --------------------------------------------------------------------------- public API


def _to_epoch_seconds(value: datetime, name: str) -> int:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")
    # Floor division, not timestamp(): float rounding could push x.999999 up to x+1.
    return (value - _EPOCH) // _ONE_SECOND


def _from_epoch_seconds(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


@dataclass(frozen=True, repr=False)
class Schedule:
    """A validated, immutable schedule. Create instances with :func:`parse_schedule`."""

    _spec: str
    _time_zone: str
    _rule: _Rule = field(compare=False)

    @property
    def spec(self) -> str:
        """The spec with surrounding whitespace removed and inner runs collapsed to one space."""
        return self._spec

    @property
    def time_zone(self) -> str:
        return self._time_zone

    @property
    def has_seconds(self) -> bool:
        """True if fire times can fall on a non-zero second (6-field specs, @every not in minutes)."""
        return self._rule.has_seconds

    def __repr__(self) -> str:
        return f"Schedule(spec={self._spec!r}, time_zone={self._time_zone!r})"

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after `after`, as an aware UTC datetime."""
        start = _to_epoch_seconds(after, "after")
        try:
            found = self._rule.next_after(start, None)
        except (OverflowError, CroniterBadDateError) as exc:
            raise ValueError(f"no fire time after {after.isoformat()} within the supported range") from exc
        if found is None:  # pragma: no cover - only reachable with a limit
            raise ValueError(f"no fire time after {after.isoformat()}")
        return _from_epoch_seconds(found)

    def next_times(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times strictly after `after`, ascending, as aware UTC datetimes."""
        if count < 0:
            raise ValueError(f"count must be non-negative, got {count}")
        times: list[datetime] = []
        cursor = after
        for _ in range(count):
            cursor = self.next_after(cursor)
            times.append(cursor)
        return times

    def latest_at_or_before(self, at: datetime) -> datetime | None:
        """The latest fire time <= `at` (aware UTC), or None if there is none in the last 400 days."""
        end = _to_epoch_seconds(at, "at")
        try:
            found = self._rule.latest_at_or_before(end, end - _LOOKBACK_SECONDS)
        except (OverflowError, CroniterBadDateError) as exc:
            raise ValueError(f"no fire time before {at.isoformat()} within the supported range") from exc
        return None if found is None else _from_epoch_seconds(found)


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _load_zone(name: str) -> ZoneInfo:
    if not isinstance(name, str):
        raise TimeZoneError(f"time zone must be a string, got {type(name).__name__}")
    unknown = TimeZoneError(f"unknown IANA time zone {name!r}")
    if name in _HOST_DEPENDENT_ZONES:
        raise unknown
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise unknown from exc
    known = _known_zones()
    # An empty list means the host can enumerate nothing; trust the successful load then.
    if known and name not in known:
        raise unknown
    return zone


@dataclass(frozen=True)
class _CronFields:
    expression: str
    seconds_first: bool
    hour_wildcard: bool


def _parse_cron(fields: list[str]) -> _CronFields:
    if len(fields) == 5:
        layout = _FIVE_FIELDS
    elif len(fields) == 6:
        layout = _SIX_FIELDS
    else:
        raise CronSpecError(f"spec has {len(fields)} fields; {_FIELD_COUNT_HELP}")
    parsed = [_parse_field(fld, text) for fld, text in zip(layout, fields, strict=True)]
    hour, dom, month, dow = parsed[-4:]
    _check_can_fire(dom, month, dow)
    return _CronFields(
        " ".join(_croniter_field(p) for p in parsed),
        seconds_first=len(fields) == 6,
        hour_wildcard=len(hour.values) == 24,
    )


def _parse_spec(tokens: list[str]) -> _CronFields | int:
    """The cron fields, or the @every interval in seconds."""
    head = tokens[0].lower()
    if head == "@every":
        if len(tokens) != 2:
            raise CronSpecError("@every takes exactly one duration with no spaces, e.g. @every 1h30m")
        return _parse_every(tokens[1])
    if head == "@reboot":
        raise CronSpecError("@reboot is not supported; schedules must name times")
    if head.startswith("@"):
        if head not in _DESCRIPTORS:
            raise CronSpecError(f"unknown descriptor {tokens[0]}")
        if len(tokens) != 1:
            raise CronSpecError(f"descriptor {tokens[0]} takes no arguments")
        return _parse_cron(_DESCRIPTORS[head].split())
    return _parse_cron(tokens)


def parse_schedule(spec: str, time_zone: str = "UTC") -> Schedule:
    """Validate `spec` in `time_zone` and return the :class:`Schedule`.

    Raises CronSpecError for an invalid spec (checked first) and TimeZoneError for an
    unknown time zone.
    """
    if not isinstance(spec, str):
        raise CronSpecError(f"spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise CronSpecError("spec is empty; " + _FIELD_COUNT_HELP)
    if len(text) > MAX_SPEC_LENGTH:
        raise CronSpecError(f"spec is {len(text)} characters long; the maximum is {MAX_SPEC_LENGTH}")
    tokens = text.split()
    parsed = _parse_spec(tokens)
    # Validated even for @every, which ignores it, so a stored schedule never carries a bad zone.
    zone = _load_zone(time_zone)
    rule: _Rule
    if isinstance(parsed, int):
        rule = _EveryRule(parsed)
    else:
        rule = _CronRule(parsed.expression, parsed.seconds_first, parsed.hour_wildcard, zone)
    return Schedule(" ".join(tokens), time_zone, rule)
