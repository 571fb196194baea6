"""What a handler sees: the job it runs, how to signal failure, and how it
learns that it should stop."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

LEASE_LAPSED = "lease may have lapsed: no heartbeat confirmed in time"


class JobFailed(Exception):
    """Fail the attempt with exactly this message (no exception type prefix).

    The job is retried if it has attempts left. Built-in kinds use it so that
    errors read "HTTP 503: ..." rather than "JobFailed: HTTP 503: ...".
    """


class NonRetryable(JobFailed):
    """Fail the job for good, even if it has attempts left.

    For errors another attempt cannot fix: a malformed payload, a 404, a
    request the remote side refuses.
    """


class CancelSignal:
    """Set when the attempt should stop: the server cancelled it, its
    execution timeout passed, its lease was lost, or the worker is shutting
    down past its grace period.

    Async handlers are cancelled anyway (they see CancelledError) and may
    `await ctx.cancelled.wait()` in a side task; sync handlers run in a thread
    that cannot be interrupted, so they should check `is_set()` (or block in
    `wait_blocking`) at convenient points.

    `is_set()` also turns true by itself once the attempt's lease may have
    lapsed by the worker's clock, even before the worker's own loop gets to
    set it: after a freeze (a stopped process, a paused VM) a handler that
    checks before each step stops at once instead of doing one more.
    """

    def __init__(self) -> None:
        # Two events because neither kind can serve both sides: an
        # asyncio.Event is not thread-safe, a threading.Event cannot be awaited.
        self._async = asyncio.Event()
        self._thread = threading.Event()
        self._reason = ""
        # Called once by set(): how the runner learns of a stop without a
        # task per attempt waiting on the event.
        self._on_set: list[Callable[[], None]] = []
        # Monotonic time from which the lease may have lapsed.
        self._lease_deadline = math.inf
        # How long a stopping handler may take to clean up (None: its own default).
        self.grace_s: float | None = None

    @property
    def reason(self) -> str:
        if not self._thread.is_set() and time.monotonic() >= self._lease_deadline:
            return LEASE_LAPSED
        return self._reason

    def set(self, reason: str, *, grace_s: float | None = None) -> None:
        """Request the stop, giving clean-up at most `grace_s` seconds (for
        instance a command's SIGTERM-to-SIGKILL wait). Call from the event
        loop's thread only."""
        if self._thread.is_set():
            return
        self._reason = reason
        self.grace_s = grace_s
        self._thread.set()
        self._async.set()
        callbacks, self._on_set = self._on_set, []
        for callback in callbacks:
            callback()

    def when_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (on the loop's thread) when set() is first called,
        at once if it already was; returns the function that takes it back.
        The runner uses it to wait for a stop without a task per attempt."""
        if self._thread.is_set():
            callback()
            return lambda: None
        self._on_set.append(callback)

        def forget() -> None:
            with contextlib.suppress(ValueError):
                self._on_set.remove(callback)

        return forget

    def set_lease_deadline(self, deadline: float) -> None:
        """The worker's bound (monotonic) after which the lease may have lapsed."""
        self._lease_deadline = deadline

    def requested(self) -> bool:
        """Whether set() was called (a lease that lapsed by the clock alone
        does not count: the worker's lease loop calls set() for it)."""
        return self._thread.is_set()

    def is_set(self) -> bool:
        return self._thread.is_set() or time.monotonic() >= self._lease_deadline

    async def wait(self) -> None:
        await self._async.wait()

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """For sync handlers: block up to `timeout` seconds; True once set."""
        return self._thread.wait(timeout)


@dataclass(frozen=True)
class JobContext:
    """One attempt of one job, as handed to a handler."""

    job_id: str
    namespace_id: str
    # Empty for standalone jobs (Tick, cron).
    dag_id: str
    key: str
    kind: str
    # Starts at 1; the server's fencing token for this attempt's result.
    attempt: int
    max_attempts: int
    # The definition's payload template merged with the job's own payload.
    payload: dict[str, Any]
    def_id: str
    def_version: int
    cancelled: CancelSignal = field(default_factory=CancelSignal, compare=False, repr=False)

    @property
    def is_last_attempt(self) -> bool:
        return self.max_attempts > 0 and self.attempt >= self.max_attempts


# A handler is `def f(ctx) -> dict | None` (run in a thread) or
# `async def f(ctx) -> dict | None` (run on the worker's event loop).
SyncHandler: TypeAlias = Callable[[JobContext], Any]
AsyncHandler: TypeAlias = Callable[[JobContext], Awaitable[Any]]
Handler: TypeAlias = SyncHandler | AsyncHandler
