"""LISTEN on a connection of its own, reconnecting with backoff.

Notifications are only wake-ups: whoever listens also polls as a safety net,
and is told (`on_connect`) each time the connection is (re)made, since
anything may have happened while nobody was listening. A connection of its
own because waiting for notifications on a connection that also runs queries
showed a ~50 ms latency tail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import psycopg

log = logging.getLogger(__name__)


async def listen_forever(
    url: str,
    channels: Sequence[str],
    on_notify: Callable[[str, str], None],
    on_connect: Callable[[], None],
    *,
    name: str,
) -> None:
    """Run until cancelled, calling `on_notify(channel, payload)` for each
    notification; connection failures are logged and retried (0.1 s doubling to 5 s)."""
    delay = 0.1
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                for channel in channels:
                    # Channels are our own constant identifiers, never input.
                    await conn.execute(f"listen {channel}".encode())
                delay = 0.1
                on_connect()
                async for note in conn.notifies():
                    on_notify(note.channel, note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s listener lost (%s); reconnecting in %.1fs", name, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
