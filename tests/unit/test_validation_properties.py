"""Property tests (hypothesis) for the pure request checks: chronosched_server.validation
and the id and page-token helpers of chronosched_server.ids.

The formats are read from docs/limits.md, the document clients are told to
follow, so these hold the code to the documentation rather than to itself.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chronosched_server import ids, validation
from chronosched_server.errors import FieldViolation, InvalidArgument, Why
from chronosched_server.validation import Violations

pytestmark = pytest.mark.timeout(60)

LIMITS = Path(__file__).resolve().parents[2] / "docs" / "limits.md"
# Modest example counts: the property files together take a few seconds.
FAST = settings(max_examples=100, deadline=None, database=None)


def documented_pattern(what: str) -> re.Pattern[str]:
    """The pattern docs/limits.md gives for `what` (a table row's first cell)."""
    for line in LIMITS.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == what:
            found = re.match(r"`([^`]+)`", cells[1])
            assert found, line
            return re.compile(found.group(1))
    raise AssertionError(f"docs/limits.md has no row for {what!r}")


def violations_of(check: Callable[..., Any], *args: Any, **kwargs: Any) -> list[FieldViolation]:
    v = Violations()
    check(v, *args, **kwargs)
    return v.items


def request_id_ok(value: str) -> bool:
    """docs/limits.md: 1-128 printable ASCII characters, no spaces."""
    return 1 <= len(value) <= 128 and all("!" <= c <= "~" for c in value)


# Strings near the formats: mostly their own characters, with separators,
# upper case, spaces, NUL, newlines and non-ASCII letters mixed in, and
# lengths around the limits.
NEAR_ID = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcz09-._:"),
        st.sampled_from("AZ \x00\n\t/~é٣ﬁ"),
        st.characters(),
    ),
    max_size=140,
)
# Lengths at the limits (63 for namespace ids, 64 for kinds, 128 for names,
# keys and request ids), one off either way.
LONG_RUNS = st.builds(
    lambda head, n, tail: head + "a" * n + tail,
    st.sampled_from(["", "a", "A", "-", "0"]),
    st.sampled_from([61, 62, 63, 64, 65, 126, 127, 128, 129]),
    st.sampled_from(["", "a", "-", ".", "\n"]),
)


def candidates(pattern: re.Pattern[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.from_regex(pattern, fullmatch=True), NEAR_ID, LONG_RUNS)


# --- ids, names, kinds, keys ---------------------------------------------------


@FAST
@given(value=candidates(documented_pattern("namespace id")))
@example(value="a" * 63)
@example(value="a" * 64)
@example(value="a-")
@example(value="ab\n")
def test_a_namespace_id_is_accepted_exactly_when_it_matches_the_documented_pattern(value: str) -> None:
    found = violations_of(validation.check_slug, "namespace_id", value)
    if not value:
        assert found == [FieldViolation("namespace_id", "required", Why.REQUIRED)]
    elif documented_pattern("namespace id").fullmatch(value):
        assert found == []
    else:
        assert [(f.field, f.reason) for f in found] == [("namespace_id", Why.INVALID_FORMAT)]


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("definition name", validation.NAME_RE),
        ("kind", validation.KIND_RE),
        ("job key", validation.KEY_RE),
    ],
)
@FAST
@given(data=st.data())
def test_names_kinds_and_keys_are_accepted_exactly_when_they_match_the_documented_pattern(
    what: str, pattern: re.Pattern[str], data: st.DataObject
) -> None:
    documented = documented_pattern(what)
    value = data.draw(candidates(documented))
    for required in (True, False):
        found = violations_of(validation.check_pattern, "f", value, pattern, required=required)
        if not value:
            assert found == ([FieldViolation("f", "required", Why.REQUIRED)] if required else [])
        elif documented.fullmatch(value):
            assert found == []
        else:
            assert [(f.field, f.reason) for f in found] == [("f", Why.INVALID_FORMAT)]


@FAST
@given(value=st.one_of(st.from_regex(validation.REQUEST_ID_RE, fullmatch=True), NEAR_ID, LONG_RUNS))
@example(value="x" * 128)
@example(value="x" * 129)
@example(value="a b")
def test_a_request_id_is_accepted_exactly_when_it_is_printable_ascii_without_spaces(value: str) -> None:
    found = violations_of(
        validation.check_pattern, "request_id", value, validation.REQUEST_ID_RE, required=False
    )
    assert (found == []) == (value == "" or request_id_ok(value))


@FAST
@given(
    pattern=st.sampled_from(
        [validation.NAME_RE, validation.KIND_RE, validation.KEY_RE, validation.NAMESPACE_ID_RE]
    ),
    values=st.lists(st.one_of(NEAR_ID, st.from_regex(validation.KEY_RE, fullmatch=True)), max_size=6),
)
def test_all_match_agrees_with_matching_one_value_at_a_time(
    pattern: re.Pattern[str], values: list[str]
) -> None:
    # The one-regex shortcut must not let a newline join two halves into
    # matches, nor split one bad value into good ones.
    assert validation.all_match(pattern, values) == all(pattern.fullmatch(v) for v in values)


# --- text, ranges, page sizes -----------------------------------------------------


@FAST
@given(value=st.text(alphabet=st.sampled_from("ab\x00é"), max_size=40), limit=st.integers(0, 40))
def test_text_is_refused_for_its_length_and_for_nul_only(value: str, limit: int) -> None:
    found = violations_of(validation.check_text, "t", value, limit)
    reasons = sorted(f.reason for f in found)
    expected = sorted([Why.TOO_LONG] * (len(value) > limit) + [Why.INVALID_FORMAT] * ("\x00" in value))
    assert reasons == expected
    assert all(f.field == "t" for f in found)


@FAST
@given(
    value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6)),
    lo=st.integers(-1000, 0),
    hi=st.integers(0, 1000),
)
def test_a_range_check_refuses_exactly_what_lies_outside_it(value: float, lo: int, hi: int) -> None:
    found = violations_of(validation.check_range, "r", value, lo, hi)
    inside = not math.isnan(value) and lo <= value <= hi
    assert [(f.field, f.reason) for f in found] == ([] if inside else [("r", Why.OUT_OF_RANGE)])


@FAST
@given(value=st.integers(-(2**31), 2**31 - 1))
def test_page_size_defaults_zero_and_refuses_out_of_range(value: int) -> None:
    v = Violations()
    size = validation.page_size(v, value)
    assert size == (value or validation.DEFAULT_PAGE_SIZE)
    assert (v.items == []) == (0 <= value <= validation.MAX_PAGE_SIZE)


# --- durations --------------------------------------------------------------------

# google.protobuf.Duration's own range: seconds within +-10,000 years, and
# nanos of the same sign.
MAX_DURATION_SECONDS = 315_576_000_000


@st.composite
def durations(draw: st.DrawFn) -> duration_pb2.Duration:
    seconds = draw(
        st.one_of(st.integers(-10, 10**6), st.integers(-MAX_DURATION_SECONDS, MAX_DURATION_SECONDS))
    )
    nanos = draw(st.one_of(st.integers(0, 999_999_999), st.integers(0, 999).map(lambda n: n * 1_000_000)))
    if seconds < 0 or (seconds == 0 and draw(st.booleans())):
        nanos = -nanos
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


@FAST
@given(value=durations(), lo_s=st.integers(0, 3600), span_s=st.integers(0, 7 * 86400))
def test_a_duration_is_refused_for_precision_and_range_and_comes_back_as_its_timedelta(
    value: duration_pb2.Duration, lo_s: int, span_s: int
) -> None:
    lo, hi = timedelta(seconds=lo_s), timedelta(seconds=lo_s + span_s)
    v = Violations()
    td = validation.check_duration(v, "d", value, lo, hi)
    # Nanoseconds are cut toward zero to microseconds.
    micros = abs(value.nanos) // 1000 * (1 if value.nanos >= 0 else -1)
    assert td == timedelta(seconds=value.seconds, microseconds=micros)
    expected = [Why.INVALID_FORMAT] * (value.nanos % 1000 != 0) + [Why.OUT_OF_RANGE] * (not lo <= td <= hi)
    assert [f.reason for f in v.items] == expected


@FAST
@given(td=st.timedeltas(min_value=timedelta(days=-3650), max_value=timedelta(days=3650)))
def test_a_timedelta_round_trips_through_a_duration(td: timedelta) -> None:
    value = duration_pb2.Duration()
    value.FromTimedelta(td)
    v = Violations()
    assert validation.check_duration(v, "d", value, timedelta.min, timedelta.max) == td
    assert v.items == []


# --- JSON payloads -------------------------------------------------------------------

KEYS = st.text(alphabet=st.sampled_from("ab_\x00"), min_size=1, max_size=4)
STRINGS = st.text(alphabet=st.sampled_from("xy é\x00\n"), max_size=6)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), STRINGS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def resolve(value: Any, path: str) -> Any:
    """The value a violation's path names: `.key` and `[i]` steps (keys here
    hold no dots or brackets)."""
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        value = value[int(index)] if index else value[key]
    return value


@FAST
@given(payload=st.dictionaries(KEYS, JSON_VALUES, max_size=5))
def test_a_json_object_is_refused_exactly_when_it_holds_a_nul_and_the_path_names_one(
    payload: dict[str, Any],
) -> None:
    struct = struct_pb2.Struct()
    struct.update(payload)
    found = violations_of(validation.check_json_object, "payload", struct)
    assert len(found) == (1 if has_nul(payload) else 0)
    for violation in found:
        assert violation.reason == Why.INVALID_FORMAT
        assert violation.field.startswith("payload")
        if "'" in violation.field:
            # A key holding the NUL, shown quoted at the end of the path.
            assert "\\x00" in violation.field
        else:
            named = resolve(payload, violation.field.removeprefix("payload"))
            assert isinstance(named, str) and "\x00" in named


@settings(max_examples=30, deadline=None, database=None)
@given(payload=st.dictionaries(st.sampled_from(["a", "b", "c"]), STRINGS, max_size=3))
def test_the_size_cap_counts_serialized_bytes(payload: dict[str, Any]) -> None:
    struct = struct_pb2.Struct()
    struct.update({**payload, "big": "x" * validation.MAX_JSON_BYTES})
    found = violations_of(validation.check_json_object, "payload", struct)
    assert [(f.field, f.reason) for f in found] == [("payload", Why.TOO_LONG)]
    # Under the cap, the same object passes (if it holds no NUL).
    assert json.loads(json_format.MessageToJson(struct))["big"]
    small = struct_pb2.Struct()
    small.update({k: v.replace("\x00", "") for k, v in payload.items()})
    assert violations_of(validation.check_json_object, "payload", small) == []


@settings(max_examples=60, deadline=None, database=None)
@given(
    kind=st.sampled_from(["http", "command", "manual"]),
    payload=st.dictionaries(
        st.sampled_from(["url", "argv", "method", "timeout", "env", "x"]), JSON_VALUES, max_size=4
    ),
    template=st.booleans(),
)
def test_a_kind_payload_check_only_ever_adds_one_violation(
    kind: str, payload: dict[str, Any], template: bool
) -> None:
    found = violations_of(validation.check_kind_payload, "jobs[0].payload", kind, payload, template=template)
    assert len(found) <= 1
    assert all(f.field.startswith("jobs[0].payload.") and f.reason == Why.INVALID_FORMAT for f in found)
    if kind == "manual":
        assert found == []


# --- UUIDs and page tokens ---------------------------------------------------------


@FAST
@given(value=st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), NEAR_ID))
def test_parse_uuid_accepts_every_canonical_uuid_and_raises_only_its_own_violation(value: str) -> None:
    try:
        expected: uuid.UUID | None = uuid.UUID(value)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(InvalidArgument) as caught:
            ids.parse_uuid(value, "job_id")
        reasons = [(f.field, f.reason) for f in caught.value.violations]
        assert reasons == [("job_id", Why.REQUIRED if not value else Why.INVALID_FORMAT)]
        return
    parsed = ids.parse_uuid(value, "job_id")
    assert parsed == expected
    if re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value):
        assert str(parsed) == value.lower()


@FAST
@given(cursor=st.text(min_size=1, max_size=80))
def test_a_page_token_round_trips_its_cursor(cursor: str) -> None:
    token = ids.encode_page_token(cursor)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", token)
    assert ids.decode_page_token(token) == cursor


@FAST
@given(token=st.one_of(st.text(max_size=40), st.text(alphabet=st.sampled_from("AQab-_=+/ "), max_size=12)))
def test_a_page_token_decodes_or_raises_only_its_own_violation(token: str) -> None:
    try:
        decoded = ids.decode_page_token(token)
    except InvalidArgument as exc:
        caught: InvalidArgument | None = exc
    else:
        caught = None
    if caught is not None:
        assert [(f.field, f.reason) for f in caught.violations] == [("page_token", Why.INVALID_FORMAT)]
        assert token != ""
        return
    if token == "":
        assert decoded is None
        return
    # A token that decodes names a cursor, which reads the same re-encoded.
    assert decoded
    assert ids.decode_page_token(ids.encode_page_token(decoded)) == decoded


@settings(max_examples=20, deadline=None, database=None)
@given(counts=st.lists(st.integers(1, 5000), min_size=1, max_size=4))
def test_uuid7_strings_increase_across_calls_and_are_version_7(counts: list[int]) -> None:
    made = [s for count in counts for s in ids.uuid7_strs(count)]
    assert made == sorted(made) and len(set(made)) == len(made)
    for text in made[:: max(1, len(made) // 50)]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
