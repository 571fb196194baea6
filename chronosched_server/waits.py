"""Waiting for an event with a timeout, in the one way that never loses a
cancellation.

Python 3.11's `asyncio.wait_for` returns the inner result when the event is
set in the same loop iteration as the task is cancelled, and the cancel is
gone: a background loop built on it then runs on after `task.cancel()`, and
whoever awaits the task at shutdown waits for good. `asyncio.timeout` keeps
the cancellation, so every timed wait goes through here."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passes; True if it was set."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
