"""The built-in job kinds: `http` and `command`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from chronosched_worker.context import Handler
from chronosched_worker.kinds._payload import InvalidPayload
from chronosched_worker.kinds.command import CommandKind, parse_command
from chronosched_worker.kinds.http import HttpKind, parse_http

if TYPE_CHECKING:
    from chronosched_worker.sdk import Worker

# Factories rather than instances: each worker gets handlers of its own.
BUILTIN_KINDS: dict[str, Callable[[], Handler]] = {
    "command": CommandKind,
    "http": HttpKind,
}


# The payload rule of each built-in kind: the very parser its handler runs,
# so the server can refuse a payload when the work is created (it calls
# payload_problem) with the same rule that would fail it at run time.
_PARSERS: dict[str, Callable[[dict[str, Any]], object]] = {"command": parse_command, "http": parse_http}
# What a definition's template may leave to each job: stand-ins for the
# required fields, so only the fields a template does set are checked.
_LEFT_TO_JOBS: dict[str, dict[str, Any]] = {
    "command": {"argv": ["true"]},
    "http": {"url": "http://localhost/"},
}


def payload_problem(
    kind: str, payload: Mapping[str, Any], *, template: bool = False
) -> InvalidPayload | None:
    """Why `payload` would fail a job of built-in `kind` (None when it is fine,
    or `kind` is not built in). A `template` may leave the required fields to
    its jobs."""
    parse = _PARSERS.get(kind)
    if parse is None:
        return None
    try:
        parse({**_LEFT_TO_JOBS[kind], **payload} if template else dict(payload))
    except InvalidPayload as exc:
        return exc
    return None


def register_builtin_kinds(worker: Worker, kinds: Iterable[str] | None = None) -> None:
    """Register the built-in kinds on `worker`: all of them, or the named subset."""
    names = list(BUILTIN_KINDS) if kinds is None else list(dict.fromkeys(kinds))
    unknown = [name for name in names if name not in BUILTIN_KINDS]
    if unknown:
        raise ValueError(f"unknown built-in kind(s): {', '.join(unknown)}; known: {', '.join(BUILTIN_KINDS)}")
    for name in names:
        worker.add_handler(name, BUILTIN_KINDS[name]())


__all__ = [
    "BUILTIN_KINDS",
    "CommandKind",
    "HttpKind",
    "InvalidPayload",
    "payload_problem",
    "register_builtin_kinds",
]
