"""Request-reading helpers shared by the servicers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2

from chronosched_server import ids
from chronosched_server.errors import Why
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
