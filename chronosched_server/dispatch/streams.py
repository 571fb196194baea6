"""Server-side state of one connected worker stream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import NamedTuple

from chronosched.v1 import worker_pb2
from chronosched_server.storage.leases import ClaimSpec, Holder
from chronosched_server.storage.records import Job

# Frames queued for a worker are merged while they stay under this size: one
# gRPC message costs about as much CPU as a job's database work, so a worker
# that fell behind gets one message, not one per ack and assignment. The cap
# keeps merged frames far below the workers' 64 MiB receive limit.
FRAME_BYTES = 4 << 20


class Held(NamedTuple):
    """A job claimed for a stream's lookahead, not sent yet."""

    job: Job
    # The heartbeat its claim named (Assignment.heartbeat_sequence).
    seq: int
    # Monotonic time of the claim, for the give-back of jobs held too long.
    since: float


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
    closed: bool = False
    # The one namespace the stream's token is limited to (None: every
    # namespace). Its results, heartbeats and take-backs are held to it.
    namespace_limit: str | None = None
    # Slots promised to a claim that is still in its transaction; counting
    # them keeps concurrent cycles from leasing beyond the worker's capacity.
    reserved: int = 0
    # The newest heartbeat sequence received (0: only the Subscribe so far);
    # a claim made after reading it tells the worker so (Assignment.heartbeat_sequence).
    heartbeat_seq: int = 0
    # Heartbeats received and not yet answered: (sequence, attempts named).
    unanswered: list[tuple[int, list[tuple[uuid.UUID, int]]]] = field(default_factory=list)
    # Monotonic time anything last arrived from the worker.
    last_heard: float = field(default_factory=time.monotonic)
    # Names the stream in ListWorkers (a reconnect is a new stream).
    stream_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # Monotonic time the stream subscribed.
    connected: float = field(default_factory=time.monotonic)
    # Jobs the server may hold for the worker beyond its free slots
    # (Subscribe.lookahead), and those it holds, oldest first.
    lookahead: int = 0
    held: OrderedDict[uuid.UUID, Held] = field(default_factory=OrderedDict)
    # Cleared when held jobs waited too long and went back (the worker's runs
    # are long): nothing more is held until one of its results comes in.
    holding: bool = True
    # Frames not yet written, and the size of the last one (still mergeable).
    _frames: deque[worker_pb2.DequeueResponse] = field(default_factory=deque)
    _last_bytes: int = 0
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _ending: bool = False

    @property
    def holder(self) -> Holder:
        """Whose leases this stream may renew, settle and give back."""
        return Holder(self.worker_id, self.namespace_limit)

    @property
    def claim_spec(self) -> ClaimSpec:
        return ClaimSpec(self.worker_id, self.namespaces, self.all_namespaces, self.kinds)

    def serves(self, namespace_id: str, kind: str) -> bool:
        """Whether a claim for this stream could take a job of (namespace, kind)."""
        return (self.all_namespaces or namespace_id in self.namespaces) and kind in self.kinds

    @property
    def free(self) -> int:
        """Slots nothing is promised to: not running, not reserved by a claim
        in progress, not to be filled by a held job."""
        if self.closed:
            return 0
        return max(0, self.slots - len(self.in_flight) - len(self.held) - self.reserved)

    @property
    def room(self) -> int:
        """How many jobs a claim may take for the stream: its free slots and
        what its lookahead may still hold. A worker with no slots holds none."""
        if self.closed or self.slots == 0:
            return 0
        ahead = self.lookahead if self.holding else 0
        return max(0, self.slots + ahead - len(self.in_flight) - len(self.held) - self.reserved)

    def take_held(self, n: int) -> list[Held]:
        """Up to `n` held jobs, oldest first, no longer held."""
        return [self.held.popitem(last=False)[1] for _ in range(min(n, len(self.held)))]

    def send(self, frame: worker_pb2.DequeueResponse) -> None:
        """Queue a frame, merged into the last unwritten one when it fits."""
        if self.closed or self._ending:
            return
        size = frame.ByteSize()
        if self._frames and self._last_bytes + size <= FRAME_BYTES:
            self._frames[-1].MergeFrom(frame)
            self._last_bytes += size
        else:
            self._frames.append(frame)
            self._last_bytes = size
        self._ready.set()

    async def next_frame(self) -> worker_pb2.DequeueResponse | None:
        """The next frame to write; None once the stream is to end."""
        while not self._frames:
            if self._ending:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def end(self) -> None:
        """Finish the stream after what is queued, and queue nothing more:
        the worker closed its side, or the server ends the stream (the
        worker then reconnects, to another server if this one is going away,
        and resends unacked results)."""
        self._ending = True
        self._ready.set()
