"""Publishing this replica's open streams for ListWorkers (docs/workers.md,
"Connected workers").

One task per server process writes every stream it holds in one transaction:
at once when a stream subscribes or closes, and every heartbeat interval to
renew the rows' expiry and counts. Heartbeats themselves cost no statement:
the refresh reads what the streams recorded in memory. A replica that dies
stops renewing, so its rows expire after the silence timeout and the next
refresh of any replica deletes them."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable

from chronosched_server.dispatch.streams import WorkerStream
from chronosched_server.errors import DomainError
from chronosched_server.storage import presence
from chronosched_server.storage.db import Database
from chronosched_server.waits import wait_event

log = logging.getLogger(__name__)


class Presence:
    def __init__(
        self, db: Database, streams: Callable[[], Iterable[WorkerStream]], every_s: float, ttl_s: float
    ):
        self.db = db
        self.streams = streams
        self.every_s = every_s
        self.ttl_s = ttl_s
        # Names this process in the rows it writes.
        self.replica_id = uuid.uuid4().hex
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """A stream subscribed or closed: write the rows now."""
        self._changed.set()

    async def run(self) -> None:
        while True:
            await wait_event(self._changed, self.every_s)
            self._changed.clear()
            try:
                await self.sync()
            except Exception:
                # A bug here must not stop the refreshes for good.
                log.exception("recording the open worker streams failed")

    async def close(self) -> None:
        """Delete this replica's rows (the server is stopping); best effort:
        rows left behind expire."""
        await self.sync(closing=True)

    async def sync(self, *, closing: bool = False) -> None:
        now = time.monotonic()
        rows = [
            presence.OpenStream(
                stream_id=s.stream_id,
                worker_id=s.worker_id,
                namespaces=[] if s.all_namespaces else list(s.namespaces),
                all_namespaces=s.all_namespaces,
                kinds=list(s.kinds),
                slots=s.slots,
                # Held jobs are leased to the worker too.
                jobs_in_flight=len(s.in_flight) + len(s.held),
                silent_s=now - s.last_heard,
                connected_s=now - s.connected,
            )
            for s in self.streams()
            if not s.closed and not closing
        ]
        try:
            async with self.db.transaction() as conn:
                await presence.sync(conn, self.replica_id, rows, self.ttl_s)
        except DomainError as exc:
            # Retried at the next change or interval; until then the rows
            # are stale or expire, which ListWorkers shows as such.
            log.warning("could not record the open worker streams (%s)", exc)
