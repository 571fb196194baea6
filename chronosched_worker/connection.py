"""The gRPC side of a worker: channel settings, reconnect backoff, and one
Dequeue call with an ordered writer."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

import grpc

from chronosched.v1 import worker_pb2

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

ChannelOptions: TypeAlias = Sequence[tuple[str, Any]]

_DEFAULT_OPTIONS: dict[str, Any] = {
    # A worker's stream may sit idle for hours behind NATs and proxies; pings
    # keep it open. Dead peers are found by the stream's own heartbeats and
    # keepalives (Worker: silence_timeout, 15 s at most); these pings are the
    # backstop for the connection underneath. The server permits pings every
    # 10 s, so 20 s never trips its abuse limit.
    "grpc.keepalive_time_ms": 20_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    # Without this the client stops pinging after two pings with no data
    # frames, which is exactly the idle stream keepalive is meant to watch.
    "grpc.http2.max_pings_without_data": 0,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    # The channel's own reconnect backoff defaults to 1 s growing to 120 s;
    # calls made meanwhile fail at once, so after a long outage the worker
    # would only notice a restarted server minutes later. Keep the channel's
    # backoff within ours.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 5_000,
}


def channel_options(overrides: ChannelOptions = ()) -> list[tuple[str, Any]]:
    """The worker's channel options, with `overrides` winning key by key."""
    merged = dict(_DEFAULT_OPTIONS)
    merged.update(dict(overrides))
    return list(merged.items())


class Backoff:
    """Exponential backoff with full jitter: the n-th consecutive failure
    waits a uniform random time in [0, min(maximum, initial * 2**n)].

    Full jitter spreads a fleet of workers that lost the same server, so they
    do not reconnect in lockstep.
    """

    def __init__(
        self, initial: float = 0.1, maximum: float = 5.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self.failures = 0

    def ceiling(self) -> float:
        return min(self.maximum, self.initial * 2.0 ** min(self.failures, 64))

    def next_delay(self) -> float:
        delay = self._rng() * self.ceiling()
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


DequeueCall: TypeAlias = grpc.aio.StreamStreamCall[worker_pb2.DequeueRequest, worker_pb2.DequeueResponse]
OnSent: TypeAlias = Callable[[float], None]

# How long a half-closed stream may take to end before it is cut.
CLOSE_TIMEOUT_S = 2.0


class StreamSilent(Exception):
    """The server has said nothing for longer than it promised: the
    connection is dead even if TCP has not noticed."""


# Results queued together leave in one message while they stay under this
# size (the server's default receive limit is far above it).
RESULTS_FRAME_BYTES = 4 << 20


class DequeueStream:
    """One Dequeue call.

    grpc.aio allows one write at a time, so every message goes through an
    outbox drained by a single writer task, which also keeps them in order:
    Subscribe first, then resent results, then whatever comes later. Results
    that queued up while a write was in progress leave together in one
    message: a gRPC message costs the server about as much as applying a
    result, so this is what lets a busy worker scale.
    """

    def __init__(self, call: DequeueCall) -> None:
        self._call = call
        self._outbox: deque[tuple[worker_pb2.DequeueRequest, OnSent | None] | None] = deque()
        self._queued = asyncio.Event()
        self._closed = False
        self._writer = asyncio.ensure_future(self._write_all())
        self._abandoned = asyncio.Event()
        self._abandon_reason = ""
        self.opened_at = time.monotonic()
        # Monotonic time of the last message from the server.
        self.last_heard = self.opened_at

    def abandon(self, reason: str) -> None:
        """Give up on the call: run() raises StreamSilent(reason)."""
        self._abandon_reason = reason
        self._abandoned.set()

    def send(self, request: worker_pb2.DequeueRequest, on_sent: OnSent | None = None) -> None:
        """Queue `request`; `on_sent(t)` runs once it is written, with the
        monotonic time the write began (a lower bound on when the server got it)."""
        if not self._closed:
            self._outbox.append((request, on_sent))
            self._queued.set()

    def send_results(self, results: Iterable[worker_pb2.JobResult]) -> None:
        self.send(worker_pb2.DequeueRequest(results=worker_pb2.JobResults(results=results)))

    def close_writing(self) -> None:
        """Half-close after everything queued so far; the server then ends the call."""
        if not self._closed:
            self._closed = True
            self._outbox.append(None)
            self._queued.set()

    async def _write_all(self) -> None:
        while True:
            while not self._outbox:
                self._queued.clear()
                await self._queued.wait()
            item = self._outbox.popleft()
            if item is None:
                await self._call.done_writing()
                return
            request, on_sent = item
            if request.HasField("results"):
                self._merge_results(request)
            began = time.monotonic()
            await self._call.write(request)
            if on_sent is not None:
                on_sent(began)

    def _merge_results(self, request: worker_pb2.DequeueRequest) -> None:
        """Fold the results queued right behind `request` into it."""
        size = request.ByteSize()
        while self._outbox:
            following = self._outbox[0]
            if following is None or following[1] is not None or not following[0].HasField("results"):
                return
            extra = following[0].results.ByteSize()
            if size + extra > RESULTS_FRAME_BYTES:
                return
            self._outbox.popleft()
            request.results.results.extend(following[0].results.results)
            size += extra

    async def _read_all(self, on_message: Callable[[worker_pb2.DequeueResponse], None]) -> None:
        while True:
            message = await self._call.read()
            if message is grpc.aio.EOF:
                return
            assert isinstance(message, worker_pb2.DequeueResponse)
            self.last_heard = time.monotonic()
            on_message(message)

    async def run(self, on_message: Callable[[worker_pb2.DequeueResponse], None]) -> None:
        """Deliver server messages until the call ends.

        Returns when the server ends the call cleanly (also after our
        half-close); raises when it fails (grpc.aio.AioRpcError, or the
        writer's error if a write failed first, or StreamSilent once
        abandoned).
        """
        reader = asyncio.ensure_future(self._read_all(on_message))
        abandoned = asyncio.ensure_future(self._abandoned.wait())
        try:
            done, _ = await asyncio.wait(
                {reader, self._writer, abandoned}, return_when=asyncio.FIRST_COMPLETED
            )
            if abandoned in done:
                raise StreamSilent(self._abandon_reason)
            if reader in done:
                reader.result()
                return
            self._writer.result()
            # We half-closed; the server answers by ending the call.
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await reader
        finally:
            for task in (reader, self._writer, abandoned):
                task.cancel()
            self._call.cancel()
            await asyncio.wait({reader, self._writer, abandoned})
            # Retrieve their errors so asyncio logs no "never retrieved" noise;
            # the one that matters was already raised above.
            for task in (reader, self._writer):
                if not task.cancelled():
                    task.exception()
