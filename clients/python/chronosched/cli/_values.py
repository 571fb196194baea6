"""What the operator CLI reads from flags and YAML files: durations, states,
policies and JSON objects. Pure (no I/O), so the parser can use it without
loading grpc."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any, TypeVar

from chronosched.types import (
    DagState,
    FireStatus,
    JobState,
    MisfirePolicy,
    OverlapPolicy,
    TokenScope,
    WaitingReason,
)

E = TypeVar("E", JobState, DagState, MisfirePolicy, OverlapPolicy, TokenScope)

# One or more number+unit parts: 90s, 5m, 1h30m, 1.5s, 250ms, 7d.
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# A bound that keeps timedelta (and the server's Duration) far from overflowing.
_MAX_SECONDS = 36500 * 86400


def parse_duration(text: str) -> timedelta:
    """`90s`, `5m`, `1h30m`, `1.5s`, `250ms`, `7d` or `0`. A bare number is
    refused: seconds or minutes would be a guess. Raises ValueError."""
    cleaned = text.strip()
    if cleaned == "0":
        return timedelta(0)
    if not _DURATION.fullmatch(cleaned):
        raise ValueError(f"not a duration: {text!r} (use a number with a unit: 90s, 5m, 1h30m, 250ms, 7d)")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(cleaned))
    if seconds > _MAX_SECONDS:
        raise ValueError(f"too long: {text!r} (at most 36500d)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """A short human form that parse_duration reads back: `0`, `250ms`,
    `1.5s`, `1m30s`, `2h`, `7d`."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0"
    sign = "-" if total_ms < 0 else ""
    total_ms = abs(total_ms)
    if total_ms < 1000:
        return f"{sign}{total_ms}ms"
    seconds, ms = divmod(total_ms, 1000)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{seconds}.{ms:03d}".rstrip("0") + "s")
    elif seconds:
        parts.append(f"{seconds}s")
    return sign + "".join(parts)


# The protobuf enum prefix of each client enum, for proto names in and out.
ENUM_PREFIX: dict[type, str] = {
    JobState: "STATE_",
    DagState: "STATE_",
    MisfirePolicy: "MISFIRE_POLICY_",
    OverlapPolicy: "OVERLAP_POLICY_",
    FireStatus: "STATUS_",
    TokenScope: "SCOPE_",
    WaitingReason: "REASON_",
}


def parse_enum(enum: type[E], text: str, what: str) -> E:
    """A member of `enum` from its short name in any case (`running`,
    `fire-once`) or its protobuf name (`STATE_RUNNING`). UNSPECIFIED is not a
    choice. Raises ValueError listing the choices."""
    name = text.strip().upper().replace("-", "_")
    prefix = ENUM_PREFIX[enum]
    if name.startswith(prefix):
        name = name[len(prefix) :]
    member = enum.__members__.get(name)
    if member is None or member.value == 0:
        raise ValueError(f"unknown {what} {text!r} (one of: {', '.join(choices(enum))})")
    return member


def choices(enum: type[E]) -> list[str]:
    """The short names `parse_enum` accepts, in protobuf order."""
    return [member.name.lower() for member in enum if member.value != 0]


def parse_json_object(text: str) -> dict[str, Any]:
    """A JSON object given on the command line. Raises ValueError."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object ({{...}}), got {type(value).__name__}")
    return value
