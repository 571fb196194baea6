"""Payload checks shared by the built-in kinds.

A malformed payload fails the job for good (NonRetryable): no later attempt
can fix it. Every message names the offending field as `payload.<path>`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from chronosched_worker.context import NonRetryable

_MISSING = object()


class InvalidPayload(NonRetryable):
    """A malformed payload; `field` is its path inside the payload."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid payload: payload.{field} {problem}")
        self.field = field
        self.problem = problem


def invalid(field: str, problem: str) -> InvalidPayload:
    return InvalidPayload(field, problem)


def required_str(payload: Mapping[str, Any], field: str) -> str:
    value = payload.get(field, _MISSING)
    if value is _MISSING or value is None:
        raise invalid(field, "is required")
    if not isinstance(value, str) or not value:
        raise invalid(field, "must be a non-empty string")
    return value


def optional_str(payload: Mapping[str, Any], field: str) -> str | None:
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise invalid(field, "must be a non-empty string")
    return value


def optional_seconds(payload: Mapping[str, Any], field: str) -> float | None:
    value = payload.get(field)
    if value is None:
        return None
    # bool is an int in Python, but `true` is no number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, "must be a number of seconds")
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise invalid(field, "must be a positive number of seconds")
    return seconds


def str_list(payload: Mapping[str, Any], field: str) -> list[str]:
    """A required, non-empty list of strings."""
    value = payload.get(field, _MISSING)
    if value is _MISSING or value is None:
        raise invalid(field, "is required")
    if not isinstance(value, list) or not value:
        raise invalid(field, "must be a non-empty list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"{field}[{i}]", "must be a string")
    if not value[0]:
        raise invalid(f"{field}[0]", "must not be empty")
    return list(value)


def str_dict(payload: Mapping[str, Any], field: str) -> dict[str, str]:
    """An optional object whose values are all strings."""
    value = payload.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(field, "must be an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid(f"{field}.{key}", "must be a string")
    return dict(value)
