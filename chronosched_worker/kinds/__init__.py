"""The built-in job kinds: `http` and `command`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from chronosched_worker.context import Handler
from chronosched_worker.kinds.command import CommandKind
from chronosched_worker.kinds.http import HttpKind

if TYPE_CHECKING:
    from chronosched_worker.sdk import Worker

# Factories rather than instances: each worker gets handlers of its own.
BUILTIN_KINDS: dict[str, Callable[[], Handler]] = {
    "command": CommandKind,
    "http": HttpKind,
}


def register_builtin_kinds(worker: Worker, kinds: Iterable[str] | None = None) -> None:
    """Register the built-in kinds on `worker`: all of them, or the named subset."""
    names = list(BUILTIN_KINDS) if kinds is None else list(dict.fromkeys(kinds))
    unknown = [name for name in names if name not in BUILTIN_KINDS]
    if unknown:
        raise ValueError(f"unknown built-in kind(s): {', '.join(unknown)}; known: {', '.join(BUILTIN_KINDS)}")
    for name in names:
        worker.add_handler(name, BUILTIN_KINDS[name]())


__all__ = ["BUILTIN_KINDS", "CommandKind", "HttpKind", "register_builtin_kinds"]
