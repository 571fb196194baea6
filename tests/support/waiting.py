"""Waiting with deadlines: every wait in the tests ends on a condition, not
after a fixed sleep. A wait that runs out fails with what it waited for.

- `poll`: await an async check until it returns a value (not None/False).
- `eventually`: the same for a plain predicate, in async tests (a file
  appearing, a process vanishing: conditions no event announces).
- `wait_until`: the blocking form, for sync tests.
- `stays` / `stays_blocking`: the opposite, a bounded check that something
  does NOT happen for a while; it fails as soon as it does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(within: float, what: str, detail: Callable[[], str] | None) -> AssertionError:
    extra = f"\n{detail()}" if detail is not None else ""
    return AssertionError(f"timed out after {within:g}s waiting for {what}{extra}")


async def poll(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float,
    what: str,
    every: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> T:
    """Await `check()` until it returns something other than None/False and
    return that; fail after `within` s (adding `detail()` to the message)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(within, what, detail)
        await asyncio.sleep(every)


async def eventually(
    check: Callable[[], bool], *, within: float = 5.0, what: str = "condition", every: float = 0.02
) -> None:
    """Wait (without blocking the event loop) until the predicate `check()` holds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise _timed_out(within, what, None)
        await asyncio.sleep(every)


def wait_until(
    check: Callable[[], T | None],
    *,
    within: float,
    what: str,
    every: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> T:
    """Blocking `poll` for sync tests: call `check()` until it returns
    something other than None/False and return that."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(within, what, detail)
        time.sleep(every)


async def stays(check: Callable[[], bool], *, for_s: float, what: str, every: float = 0.02) -> None:
    """Show that `check()` holds throughout the next `for_s` seconds, for
    tests whose point is that something does not happen; fails at the first
    look that finds it false."""
    end = time.monotonic() + for_s
    while True:
        assert check(), f"{what} stopped holding {for_s - (end - time.monotonic()):.2f}s in"
        if time.monotonic() >= end:
            return
        await asyncio.sleep(min(every, max(0.0, end - time.monotonic())))


def stays_blocking(check: Callable[[], bool], *, for_s: float, what: str, every: float = 0.1) -> None:
    """Blocking `stays`, for sync tests."""
    end = time.monotonic() + for_s
    while True:
        assert check(), f"{what} stopped holding {for_s - (end - time.monotonic()):.2f}s in"
        if time.monotonic() >= end:
            return
        time.sleep(min(every, max(0.0, end - time.monotonic())))
