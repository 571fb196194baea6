"""Edge validation of request fields: pure, no I/O.

Every check names the field by its path in the request, and a request is
checked whole before anything is written, so a rejected request changes
nothing. Limits here are the documented ones (docs/limits.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2

from chronosched_server.errors import FieldViolation, InvalidArgument, Why
from chronosched_worker.kinds import payload_problem

NAMESPACE_ID_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
KIND_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")

MAX_DESCRIPTION = 1024
MAX_DAG_NAME = 200
MAX_JSON_BYTES = 1024 * 1024
MAX_ERROR_CHARS = 64 * 1024
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
MIN_ATTEMPTS, MAX_ATTEMPTS = 1, 100
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 1000
# CreateDag / CreateJobs limits: a 1,000,000-job DAG is refused (documented in
# docs/limits.md); 100,000 jobs with 200,000 edges is the size we measure.
MAX_JOBS_PER_CALL = 250_000
MAX_EDGES_PER_CALL = 500_000
MAX_JOBS_PER_DAG = 250_000


@dataclass
class Violations:
    """Collects every violation of a request before raising once."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, path: str, description: str, why: str) -> None:
        self.items.append(FieldViolation(path, description, why))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


def check_slug(v: Violations, path: str, value: str) -> None:
    if not value:
        v.add(path, "required", Why.REQUIRED)
    elif not NAMESPACE_ID_RE.fullmatch(value):
        v.add(
            path,
            f"{_show(value)} must match [a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])? (1-63 chars)",
            Why.INVALID_FORMAT,
        )


def check_pattern(v: Violations, path: str, value: str, pattern: re.Pattern[str], *, required: bool) -> None:
    if not value:
        if required:
            v.add(path, "required", Why.REQUIRED)
    elif not pattern.fullmatch(value):
        v.add(path, f"{_show(value)} must match {pattern.pattern}", Why.INVALID_FORMAT)


def all_match(pattern: re.Pattern[str], values: Sequence[str]) -> bool:
    """True when every value matches `pattern` whole: one regex run over all of
    them. Valid values hold no newline, so joining on it keeps them apart."""
    if not values:
        return True
    joined = "\n".join(values)
    if joined.count("\n") != len(values) - 1:
        return False
    whole = _LINES.get(pattern)
    if whole is None:
        whole = _LINES[pattern] = re.compile(f"(?:{pattern.pattern})(?:\n(?:{pattern.pattern}))*")
    return whole.fullmatch(joined) is not None


_LINES: dict[re.Pattern[str], re.Pattern[str]] = {}


def check_text(v: Violations, path: str, value: str, max_chars: int) -> None:
    if len(value) > max_chars:
        v.add(path, f"at most {max_chars} characters, got {len(value)}", Why.TOO_LONG)
    if "\x00" in value:
        v.add(path, "must not contain NUL characters", Why.INVALID_FORMAT)


def check_range(v: Violations, path: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        v.add(path, f"must be between {lo:g} and {hi:g}, got {value:g}", Why.OUT_OF_RANGE)


def check_duration(
    v: Violations, path: str, value: duration_pb2.Duration, lo: timedelta, hi: timedelta
) -> timedelta:
    if value.nanos % 1000:
        v.add(path, "sub-microsecond precision is not supported", Why.INVALID_FORMAT)
    td = value.ToTimedelta()
    if not lo <= td <= hi:
        v.add(path, f"must be between {_secs(lo)} and {_secs(hi)}, got {_secs(td)}", Why.OUT_OF_RANGE)
    return td


def check_json_object(v: Violations, path: str, value: struct_pb2.Struct) -> None:
    """Size cap and no NUL anywhere: PostgreSQL jsonb rejects \\u0000."""
    size = value.ByteSize()
    if size > MAX_JSON_BYTES:
        v.add(path, f"at most {MAX_JSON_BYTES} bytes, got {size}", Why.TOO_LONG)
        return
    for where in _nul_paths(value, path):
        v.add(where, "must not contain NUL characters", Why.INVALID_FORMAT)
        return


def check_kind_payload(
    v: Violations, path: str, kind: str, payload: dict[str, Any], *, template: bool = False
) -> None:
    """A built-in kind's payload, checked when the work is created by the same
    rule its handler applies at run time (chronosched_worker.kinds); `path`
    names the payload in the request (e.g. `jobs[3].payload`)."""
    problem = payload_problem(kind, payload, template=template)
    if problem is not None:
        v.add(f"{path}.{problem.field}", problem.problem, Why.INVALID_FORMAT)


def page_size(v: Violations, value: int) -> int:
    if value < 0 or value > MAX_PAGE_SIZE:
        v.add("page_size", f"must be between 0 and {MAX_PAGE_SIZE}, got {value}", Why.OUT_OF_RANGE)
    return value or DEFAULT_PAGE_SIZE


def _nul_paths(value: struct_pb2.Struct, path: str) -> Iterator[str]:
    for key, item in value.fields.items():
        if "\x00" in key:
            yield f"{path}.{_show(key)}"
        yield from _nul_value(item, f"{path}.{key}")


def _nul_value(item: struct_pb2.Value, path: str) -> Iterator[str]:
    kind = item.WhichOneof("kind")
    if kind == "string_value" and "\x00" in item.string_value:
        yield path
    elif kind == "struct_value":
        yield from _nul_paths(item.struct_value, path)
    elif kind == "list_value":
        for i, element in enumerate(item.list_value.values):
            yield from _nul_value(element, f"{path}[{i}]")


def _show(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 64 else text[:61] + "...")


def _secs(td: timedelta) -> str:
    return f"{td.total_seconds():g}s"
