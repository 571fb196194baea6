"""Unit tests for chronosched_server.validation (request field checks) and chronosched_server.ids."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf import duration_pb2, struct_pb2

from chronosched_server import ids, validation
from chronosched_server.errors import FieldViolation, InvalidArgument, Why
from chronosched_server.validation import (
    DEFAULT_PAGE_SIZE,
    KEY_RE,
    KIND_RE,
    MAX_JSON_BYTES,
    MAX_PAGE_SIZE,
    NAME_RE,
    REQUEST_ID_RE,
    Violations,
    check_duration,
    check_json_object,
    check_pattern,
    check_range,
    check_slug,
    check_text,
    page_size,
)

UUID_A = "0190f0a4-7b1c-7d2e-8f00-123456789abc"
UUID_B = "0190f0a4-7b1c-7d2e-8f00-abcdef012345"
SLUG_RULE = "must match [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])? (1-63 chars)"


def violations_of(check: Any, *args: Any, **kwargs: Any) -> list[FieldViolation]:
    v = Violations()
    check(v, *args, **kwargs)
    return v.items


# --- Violations ---------------------------------------------------------------


def test_violations_raise_only_when_collected() -> None:
    v = Violations()
    v.raise_if_any()
    v.add("a", "bad", Why.INVALID_FORMAT)
    with pytest.raises(InvalidArgument) as caught:
        v.raise_if_any()
    assert caught.value.violations == [FieldViolation("a", "bad", Why.INVALID_FORMAT)]
    assert caught.value.message == "invalid request: a: bad"
    assert caught.value.reason == "INVALID_ARGUMENT"


def test_invalid_argument_message_shows_five_violations() -> None:
    v = Violations()
    for i in range(7):
        v.add(f"f{i}", "bad", Why.INVALID_FORMAT)
    with pytest.raises(InvalidArgument) as caught:
        v.raise_if_any()
    assert len(caught.value.violations) == 7
    assert caught.value.message == (
        "invalid request: f0: bad; f1: bad; f2: bad; f3: bad; f4: bad (and 2 more)"
    )


# --- slugs --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "0", "team-a", "a1-b2-c3", "a--b", "a" * 63, "9" * 63])
def test_valid_slugs(value: str) -> None:
    assert violations_of(check_slug, "namespace_id", value) == []


def test_empty_slug_is_required() -> None:
    assert violations_of(check_slug, "namespace_id", "") == [
        FieldViolation("namespace_id", "required", Why.REQUIRED)
    ]


@pytest.mark.parametrize(
    "value",
    ["A", "Team", "-a", "a-", "-", "a_b", "a.b", "a b", "é", "a\n", "a" * 64],
)
def test_invalid_slugs(value: str) -> None:
    assert violations_of(check_slug, "namespace_id", value) == [
        FieldViolation("namespace_id", f"{value!r} {SLUG_RULE}", Why.INVALID_FORMAT)
    ]


def test_long_invalid_values_are_shown_truncated() -> None:
    value = "A" * 100
    shown = repr("A" * 61 + "...")
    assert violations_of(check_slug, "ns", value) == [
        FieldViolation("ns", f"{shown} {SLUG_RULE}", Why.INVALID_FORMAT)
    ]


# --- patterns -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        (NAME_RE, "a"),
        (NAME_RE, "Nightly.Report_v2-eu"),
        (NAME_RE, "X" * 128),
        (KIND_RE, "email.send"),
        (KIND_RE, "0-ingest_v2"),
        (KIND_RE, "k" * 64),
        (KEY_RE, "step:1"),
        (KEY_RE, "Extract.Users-2024_01"),
        (KEY_RE, "k" * 128),
        (REQUEST_ID_RE, "!"),
        (REQUEST_ID_RE, "req-1:{abc}~"),
        (REQUEST_ID_RE, "r" * 128),
    ],
)
def test_pattern_accepts(pattern: re.Pattern[str], value: str) -> None:
    assert violations_of(check_pattern, "f", value, pattern, required=True) == []


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        (NAME_RE, "-a"),
        (NAME_RE, ".a"),
        (NAME_RE, "a b"),
        (NAME_RE, "a:b"),
        (NAME_RE, "X" * 129),
        (KIND_RE, "Email"),
        (KIND_RE, "_a"),
        (KIND_RE, "a:b"),
        (KIND_RE, "k" * 65),
        (KEY_RE, ":a"),
        (KEY_RE, "a/b"),
        (KEY_RE, "a b"),
        (KEY_RE, "k" * 129),
        (REQUEST_ID_RE, "a b"),
        (REQUEST_ID_RE, "tab\t"),
        (REQUEST_ID_RE, "\x7f"),
        (REQUEST_ID_RE, "é"),
        (REQUEST_ID_RE, "r" * 129),
    ],
)
def test_pattern_rejects(pattern: re.Pattern[str], value: str) -> None:
    shown = repr(value if len(value) <= 64 else value[:61] + "...")
    assert violations_of(check_pattern, "f", value, pattern, required=False) == [
        FieldViolation("f", f"{shown} must match {pattern.pattern}", Why.INVALID_FORMAT)
    ]


def test_pattern_empty_value_required_or_optional() -> None:
    assert violations_of(check_pattern, "kind", "", KIND_RE, required=True) == [
        FieldViolation("kind", "required", Why.REQUIRED)
    ]
    assert violations_of(check_pattern, "kind", "", KIND_RE, required=False) == []


# --- text ---------------------------------------------------------------------


def test_text_at_limit_is_accepted() -> None:
    assert violations_of(check_text, "description", "x" * 5, 5) == []
    assert violations_of(check_text, "description", "", 5) == []


def test_text_too_long() -> None:
    assert violations_of(check_text, "description", "x" * 6, 5) == [
        FieldViolation("description", "at most 5 characters, got 6", Why.TOO_LONG)
    ]


def test_text_with_nul() -> None:
    assert violations_of(check_text, "description", "a\x00b", 5) == [
        FieldViolation("description", "must not contain NUL characters", Why.INVALID_FORMAT)
    ]


def test_text_too_long_and_with_nul_reports_both() -> None:
    assert violations_of(check_text, "error", "\x00" * 3, 2) == [
        FieldViolation("error", "at most 2 characters, got 3", Why.TOO_LONG),
        FieldViolation("error", "must not contain NUL characters", Why.INVALID_FORMAT),
    ]


# --- JSON objects -------------------------------------------------------------


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def test_json_object_clean() -> None:
    clean = struct({"a": [1, "two", {"three": None}], "b": {"c": True}, "": "empty key is fine"})
    assert violations_of(check_json_object, "payload", clean) == []
    assert violations_of(check_json_object, "payload", struct_pb2.Struct()) == []


@pytest.mark.parametrize(
    ("value", "path"),
    [
        pytest.param({"a": "x\x00"}, "payload.a", id="top-level-value"),
        pytest.param({"k\x00": 1}, "payload.'k\\x00'", id="top-level-key"),
        pytest.param({"a": {"b": {"c": "\x00"}}}, "payload.a.b.c", id="nested-dict-value"),
        pytest.param({"outer": {"in\x00": "v"}}, "payload.outer.'in\\x00'", id="nested-dict-key"),
        pytest.param({"a": [1, "ok", "x\x00"]}, "payload.a[2]", id="list-value"),
        pytest.param({"a": [[], ["ok", ["\x00"]]]}, "payload.a[1][1][0]", id="nested-list-value"),
        pytest.param({"a": [{"b": "ok"}, {"c": "\x00"}]}, "payload.a[1].c", id="dict-in-list-value"),
        pytest.param({"a": [{"b\x00": 1}]}, "payload.a[0].'b\\x00'", id="dict-in-list-key"),
    ],
)
def test_json_object_nul_path(value: dict[str, Any], path: str) -> None:
    assert violations_of(check_json_object, "payload", struct(value)) == [
        FieldViolation(path, "must not contain NUL characters", Why.INVALID_FORMAT)
    ]


def test_json_object_reports_only_the_first_nul() -> None:
    found = violations_of(check_json_object, "payload", struct({"a": "\x00", "b": ["\x00"]}))
    assert len(found) == 1
    assert found[0] in (
        FieldViolation("payload.a", "must not contain NUL characters", Why.INVALID_FORMAT),
        FieldViolation("payload.b[0]", "must not contain NUL characters", Why.INVALID_FORMAT),
    )


def test_json_object_size_cap() -> None:
    # Struct{fields: {"k": Value{string_value: L chars}}} encodes to L + 15 bytes
    # while every length varint stays 3 bytes long.
    at_cap = struct({"k": "x" * (MAX_JSON_BYTES - 15)})
    assert at_cap.ByteSize() == MAX_JSON_BYTES
    assert violations_of(check_json_object, "payload_template", at_cap) == []

    over = struct({"k": "x" * MAX_JSON_BYTES})
    assert violations_of(check_json_object, "payload_template", over) == [
        FieldViolation("payload_template", "at most 1048576 bytes, got 1048591", Why.TOO_LONG)
    ]


def test_json_object_over_cap_skips_the_nul_scan() -> None:
    over = struct({"k": "\x00" * MAX_JSON_BYTES})
    assert violations_of(check_json_object, "payload", over) == [
        FieldViolation("payload", "at most 1048576 bytes, got 1048591", Why.TOO_LONG)
    ]


# --- numbers, page size, durations --------------------------------------------


def test_range() -> None:
    assert violations_of(check_range, "priority", 1000, -1000, 1000) == []
    assert violations_of(check_range, "priority", -1000, -1000, 1000) == []
    assert violations_of(check_range, "priority", 1001, -1000, 1000) == [
        FieldViolation("priority", "must be between -1000 and 1000, got 1001", Why.OUT_OF_RANGE)
    ]
    assert violations_of(check_range, "backoff_multiplier", 0.5, 1.0, 10.0) == [
        FieldViolation("backoff_multiplier", "must be between 1 and 10, got 0.5", Why.OUT_OF_RANGE)
    ]


@pytest.mark.parametrize(("value", "expected"), [(0, DEFAULT_PAGE_SIZE), (1, 1), (50, 50), (1000, 1000)])
def test_page_size_in_bounds(value: int, expected: int) -> None:
    v = Violations()
    assert page_size(v, value) == expected
    assert v.items == []


def test_page_size_default_and_max() -> None:
    assert DEFAULT_PAGE_SIZE == 50
    assert MAX_PAGE_SIZE == 1000


@pytest.mark.parametrize("value", [-1, 1001, 2**31 - 1])
def test_page_size_out_of_bounds(value: int) -> None:
    v = Violations()
    page_size(v, value)
    assert v.items == [
        FieldViolation("page_size", f"must be between 0 and 1000, got {value}", Why.OUT_OF_RANGE)
    ]


LO, HI = timedelta(seconds=1), timedelta(days=1)


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (1, 0, timedelta(seconds=1)),
        (86400, 0, timedelta(days=1)),
        (90, 250_000_000, timedelta(seconds=90, milliseconds=250)),
        (1, 1000, timedelta(seconds=1, microseconds=1)),
    ],
)
def test_duration_in_bounds(seconds: int, nanos: int, expected: timedelta) -> None:
    v = Violations()
    value = duration_pb2.Duration(seconds=seconds, nanos=nanos)
    assert check_duration(v, "timeout", value, LO, HI) == expected
    assert v.items == []


@pytest.mark.parametrize(
    ("seconds", "nanos", "shown"),
    [
        (0, 0, "0s"),
        (0, 999_999_000, "0.999999s"),
        (86400, 1000, "86400s"),
        (86401, 0, "86401s"),
        (-5, 0, "-5s"),
    ],
)
def test_duration_out_of_bounds(seconds: int, nanos: int, shown: str) -> None:
    v = Violations()
    check_duration(v, "timeout", duration_pb2.Duration(seconds=seconds, nanos=nanos), LO, HI)
    assert v.items == [
        FieldViolation("timeout", f"must be between 1s and 86400s, got {shown}", Why.OUT_OF_RANGE)
    ]


def test_duration_sub_microsecond_precision() -> None:
    v = Violations()
    check_duration(v, "timeout", duration_pb2.Duration(seconds=2, nanos=1500), LO, HI)
    assert v.items == [
        FieldViolation("timeout", "sub-microsecond precision is not supported", Why.INVALID_FORMAT)
    ]


def test_duration_sub_microsecond_and_out_of_bounds_reports_both() -> None:
    v = Violations()
    check_duration(v, "timeout", duration_pb2.Duration(seconds=0, nanos=1), LO, HI)
    assert [item.description for item in v.items] == [
        "sub-microsecond precision is not supported",
        "must be between 1s and 86400s, got 0s",
    ]


# --- ids: UUIDv7 --------------------------------------------------------------


def _ms_of(u: uuid.UUID) -> int:
    return u.int >> 80


def test_uuid7_version_variant_and_time() -> None:
    before = time.time_ns() // 1_000_000
    u = ids.uuid7()
    after = time.time_ns() // 1_000_000
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert before <= _ms_of(u) <= after


def test_uuid7_values_differ() -> None:
    assert len({ids.uuid7() for _ in range(1000)}) == 1000


def test_uuid7_strs_empty() -> None:
    assert ids.uuid7_strs(0) == []


@pytest.mark.parametrize("count", [1, 4096, 10_000])
def test_uuid7_strs_sorted_unique_canonical(count: int) -> None:
    before = time.time_ns() // 1_000_000
    out = ids.uuid7_strs(count)
    after = time.time_ns() // 1_000_000
    assert len(out) == count
    assert out == sorted(out)
    assert len(set(out)) == count
    parsed = [uuid.UUID(s) for s in out]
    assert [str(u) for u in parsed] == out  # canonical lowercase text
    assert {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    assert parsed == sorted(parsed)
    # The first id carries the current millisecond, or a later one when earlier
    # calls in this millisecond used up its 4096 sequence numbers.
    assert before <= _ms_of(parsed[0]) <= after + 1 + 10_000 // 4096
    # 4096 sequence numbers per millisecond; a batch that starts part-way
    # through a millisecond spills into one more.
    assert _ms_of(parsed[-1]) - _ms_of(parsed[0]) <= ((count - 1) >> 12) + 1


def test_parse_uuid() -> None:
    u = ids.uuid7()
    assert ids.parse_uuid(str(u), "dag_id") == u
    with pytest.raises(InvalidArgument) as empty:
        ids.parse_uuid("", "dag_id")
    assert empty.value.violations == [FieldViolation("dag_id", "required", Why.REQUIRED)]
    with pytest.raises(InvalidArgument) as bad:
        ids.parse_uuid("not-a-uuid", "jobs[2].def_id")
    assert bad.value.violations == [
        FieldViolation("jobs[2].def_id", "'not-a-uuid' is not a UUID", Why.INVALID_FORMAT)
    ]


# --- ids: page tokens ---------------------------------------------------------


@pytest.mark.parametrize(
    "last",
    ["a", "ns-1", "team-a", f"{UUID_A},{UUID_B}", "ключ", "?"],
)
def test_page_token_round_trip(last: str) -> None:
    token = ids.encode_page_token(last)
    assert "=" not in token
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert ids.decode_page_token(token) == last


def test_empty_page_token_means_first_page() -> None:
    assert ids.decode_page_token("") is None


def test_page_token_is_opaque_base64url() -> None:
    assert ids.encode_page_token("a") == "YQ"
    assert ids.encode_page_token("ns-1") == "bnMtMQ"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("a", id="impossible-length"),
        pytest.param("abcde", id="impossible-length-5"),
        pytest.param("_w", id="not-utf8"),
        pytest.param("abc!", id="bad-char-bad-length"),
        pytest.param("a b", id="space"),
    ],
)
def test_malformed_page_token_raises(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        ids.decode_page_token(token)
    assert caught.value.violations == [
        FieldViolation("page_token", "malformed page token", Why.INVALID_FORMAT)
    ]
    assert caught.value.message == "invalid request: page_token: malformed page token"


def test_malformed_page_token_names_the_given_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        ids.decode_page_token("_w", field="jobs_page_token")
    assert caught.value.violations == [
        FieldViolation("jobs_page_token", "malformed page token", Why.INVALID_FORMAT)
    ]


@pytest.mark.parametrize("token", ["@@@@", "!", "===="])
def test_page_token_outside_the_alphabet_raises(token: str) -> None:
    with pytest.raises(InvalidArgument):
        ids.decode_page_token(token)


def test_all_match_checks_every_value_in_one_pass() -> None:
    key = validation.KEY_RE
    assert validation.all_match(key, [])
    assert validation.all_match(key, ["a", "b.c", "x:1"])
    assert not validation.all_match(key, ["a", "bad key"])
    assert not validation.all_match(key, ["a", ""])
    # A newline inside one value must not make two valid-looking lines.
    assert not validation.all_match(key, ["a\nb"])
    assert not validation.all_match(key, ["a", "b\n"])
