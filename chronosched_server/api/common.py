"""Request-reading helpers shared by the servicers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2

from chronosched.v1 import dag_pb2, job_pb2
from chronosched_server import ids, validation
from chronosched_server.errors import Why
from chronosched_server.storage.dags import NewJob
from chronosched_server.validation import Violations

R = TypeVar("R")


def uuid_field(v: Violations, path: str, value: str, *, required: bool = True) -> uuid.UUID | None:
    if not value:
        if required:
            v.add(path, "required", Why.REQUIRED)
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        v.add(path, f"{value[:64]!r} is not a UUID", Why.INVALID_FORMAT)
        return None


def state_filter(v: Violations, path: str, value: int, enum_name: Callable[[Any], str]) -> str | None:
    """Enum filter -> stored state text; UNSPECIFIED (0) means no filter."""
    if value == 0:
        return None
    try:
        return enum_name(value).removeprefix("STATE_")
    except ValueError:
        v.add(path, f"unknown state {value}", Why.UNKNOWN_VALUE)
        return None


def uuid_token(v: Violations, token: str) -> uuid.UUID | None:
    raw = ids.decode_page_token(token)
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        v.add("page_token", "malformed page token", Why.INVALID_FORMAT)
        return None


def to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


def paginate(rows: Sequence[R], limit: int, cursor: Callable[[R], str]) -> tuple[Sequence[R], str]:
    """One page of a list read with `limit + 1` rows, and the token of the
    next page: the cursor of the page's last row, or "" on the last page."""
    page = rows[:limit]
    return page, ids.encode_page_token(cursor(page[-1])) if len(rows) > limit else ""


def within_job_limit(v: Violations, count: int) -> bool:
    """Whether a call's `jobs` fit the per-call limit; a violation if not."""
    if count <= validation.MAX_JOBS_PER_CALL:
        return True
    v.add("jobs", f"at most {validation.MAX_JOBS_PER_CALL} jobs per call, got {count}", Why.TOO_MANY)
    return False


def read_runs(
    v: Violations, specs: Sequence[dag_pb2.JobSpec | job_pb2.JobRun], keys: Sequence[str]
) -> list[NewJob]:
    """The definition, payload and priority of each of `specs` (JobSpecs or
    JobRuns), with `keys[i]` as the i-th job's key; the few distinct def_id
    strings are parsed once each."""
    parsed: dict[str, uuid.UUID | None] = {}
    out: list[NewJob] = []
    for i, spec in enumerate(specs):
        raw = spec.def_id
        try:
            def_id = parsed[raw]
        except KeyError:
            def_id = parsed[raw] = uuid_field(v, f"jobs[{i}].def_id", raw)
        payload = None
        if spec.HasField("payload"):
            validation.check_json_object(v, f"jobs[{i}].payload", spec.payload)
            payload = to_dict(spec.payload)
        priority = None
        if spec.HasField("priority"):
            priority = spec.priority
            validation.check_range(
                v, f"jobs[{i}].priority", priority, validation.MIN_PRIORITY, validation.MAX_PRIORITY
            )
        if def_id is not None:
            out.append(NewJob(keys[i], def_id, payload, priority))
    return out
