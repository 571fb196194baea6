"""The event loop `chronosched server` runs on.

uvloop where it is installed (a dependency on Linux and macOS), else
asyncio's own. On the dispatcher's hot path the loop's callbacks, timers
and socket waits are a large share of the server's CPU, and uvloop does
them in C (docs/performance.md, "The server on uvloop").
`CHRONOSCHED_EVENT_LOOP=asyncio` picks asyncio's loop anyway, for a
platform or a debugger that wants it.

Workers stay on asyncio's loop: uvloop's subprocess_exec has no
`process_group`, which the command kind needs to stop a job's whole
process group.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

ENV = "CHRONOSCHED_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")

T = TypeVar("T")


def chosen() -> str:
    """The loop `run` will use; ValueError (naming the variable) for a value
    it does not know or for uvloop where it is not installed."""
    value = os.environ.get(ENV, "").strip().lower()
    installed = importlib.util.find_spec("uvloop") is not None
    if not value:
        return "uvloop" if installed else "asyncio"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(CHOICES)}")
    if value == "uvloop" and not installed:
        raise ValueError(f"{ENV}=uvloop, but uvloop is not installed (pip install uvloop)")
    return value


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on the chosen loop."""
    try:
        name = chosen()
    except ValueError:
        main.close()  # never to be awaited: closed, so no RuntimeWarning
        raise
    if name == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def running() -> str:
    """The name of the running loop's kind, for logs: uvloop or asyncio."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
