"""Server-side state of one connected worker stream."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from chronosched.v1 import worker_pb2


@dataclass(eq=False)
class WorkerStream:
    """One Dequeue stream: what the worker serves and what it is running."""

    worker_id: str
    namespaces: list[str]
    all_namespaces: bool
    kinds: list[str]
    slots: int
    # job_id -> attempt of every attempt pushed on (or adopted by) this stream
    # and not yet reported back; this is what occupies the worker's slots.
    in_flight: dict[uuid.UUID, int] = field(default_factory=dict)
    # None is the end-of-stream marker (the server is stopping).
    outbox: asyncio.Queue[worker_pb2.DequeueResponse | None] = field(default_factory=asyncio.Queue)
    closed: bool = False
    # Slots promised to a claim that is still in its transaction; counting
    # them keeps concurrent cycles from leasing beyond the worker's capacity.
    reserved: int = 0

    @property
    def free(self) -> int:
        return 0 if self.closed else max(0, self.slots - len(self.in_flight) - self.reserved)

    def send(self, message: worker_pb2.DequeueResponse) -> None:
        if not self.closed:
            self.outbox.put_nowait(message)

    def end(self) -> None:
        """Finish the stream after what is queued: the worker reconnects, to
        another server if this one is going away, and resends unacked results."""
        if not self.closed:
            self.outbox.put_nowait(None)
