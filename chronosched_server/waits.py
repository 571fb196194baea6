"""Waiting for an event with a timeout, in the one way that never loses a
cancellation.

Python 3.11's `asyncio.wait_for` returns the inner result when the event is
set in the same loop iteration as the task is cancelled, and the cancel is
gone: a background loop built on it then runs on after `task.cancel()`, and
whoever awaits the task at shutdown waits for good. `asyncio.timeout` keeps
the cancellation, so every timed wait goes through here; and background
tasks are stopped through `cancel_all`, which cannot hang a stopping server
(it logs a task that ignores its cancel instead)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passes; True if it was set."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


# How long a stopping server waits for a cancelled background task.
STOP_TIMEOUT_S = 10.0


async def cancel_all(tasks: Sequence[asyncio.Task[Any]], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel `tasks` and wait for them to end, at most `timeout_s`. A task
    that ignores its cancel is logged with where it is stuck and left
    behind: a stopping server must stop, and the log names the culprit."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=timeout_s)
    for task in stuck:
        where = io.StringIO()
        task.print_stack(limit=8, file=where)
        log.error(
            "background task %s did not stop within %.0fs of its cancel; leaving it behind:\n%s",
            task.get_name(),
            timeout_s,
            where.getvalue(),
            extra={"event": "task_stuck"},
        )
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error(
                "background task %s had failed",
                task.get_name(),
                exc_info=task.exception(),
                extra={"event": "task_failed"},
            )
