"""Whether the database is there, known at once, for the server's health.

A ping through the pool notices an outage only at its next run, and then only
once its wait for a connection has timed out. Instead a session of its own is
held open and waited on: PostgreSQL ends every session when it shuts down or
crashes, so the wait fails the moment that happens. The same session is
pinged every `ping_interval_s` as well, for a database that stops answering
without closing anything (a hung host, a network partition).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

log = logging.getLogger(__name__)

Session = psycopg.AsyncConnection[Any]


class _Watch:
    """The last thing said about the database; changes go to `on_change`."""

    def __init__(self, on_change: Callable[[bool], Awaitable[None]]) -> None:
        self.on_change = on_change
        self.up: bool | None = None

    async def report(self, up: bool, cause: BaseException | None = None) -> None:
        if up == self.up:
            return
        if not up:
            # Why, for the log; the caller says what it does about it.
            log.warning("database health check failed: %s", _why(cause))
        self.up = up
        await self.on_change(up)


async def watch_database(
    url: str,
    on_change: Callable[[bool], Awaitable[None]],
    *,
    ping_interval_s: float,
    timeout_s: float,
    retry_interval_s: float,
) -> None:
    """Run until cancelled, calling `on_change(True)` once a session answers
    and `on_change(False)` the moment it is lost; only on changes, the first
    outcome included. While the database is away a new session is tried every
    `retry_interval_s`, each attempt and each ping bounded by `timeout_s`."""
    watch = _Watch(on_change)
    while True:
        up_since: float | None = None
        try:
            # Bounded here: libpq will not wait less than 2 s for a connection.
            async with asyncio.timeout(timeout_s):
                session = await psycopg.AsyncConnection.connect(url, autocommit=True)
            try:
                await _ping(session, timeout_s, watch)
                up_since = time.monotonic()
                await watch.report(True)
                while True:
                    # Ends after ping_interval_s of quiet; fails as soon as
                    # the server ends the session. Nothing is LISTENed to:
                    # this only waits on the socket.
                    async for _ in session.notifies(timeout=ping_interval_s):
                        pass
                    await _ping(session, timeout_s, watch)
            finally:
                await session.close()
        except Exception as exc:  # whatever it was, the database is not known to answer
            await watch.report(False, exc)
        # A session lost after serving a while (ended by an administrator,
        # say) is replaced at once, which keeps that from showing as an
        # outage for long; anything else waits, so a database that takes
        # sessions and drops them again is not hammered.
        if up_since is None or time.monotonic() - up_since < retry_interval_s:
            await asyncio.sleep(retry_interval_s)


async def _ping(session: Session, timeout_s: float, watch: _Watch) -> None:
    """`select 1`, or TimeoutError after timeout_s: reported at that moment,
    not after psycopg's clean-up of the unanswered query, which asks the
    server to cancel it and may wait on the silent server for seconds."""
    query = asyncio.ensure_future(session.execute(b"select 1"))
    try:
        done, _ = await asyncio.wait({query}, timeout=timeout_s)
        if done:
            query.result()
            return
        late = TimeoutError(f"no answer to a ping within {timeout_s:g}s")
        await watch.report(False, late)
        raise late
    finally:
        # The session is closed next, and must not be while psycopg still
        # waits on its socket.
        if not query.done():
            query.cancel()
            await asyncio.wait({query})
        if not query.cancelled():
            query.exception()  # retrieved, or asyncio would log it


def _why(exc: BaseException | None) -> str:
    # psycopg's messages run over several lines; the first says it.
    lines = str(exc).strip().splitlines() if exc is not None else []
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
