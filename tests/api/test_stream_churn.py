"""Hundreds of Dequeue streams opened and dropped leave nothing behind on the
server: no task, no file descriptor, no registered stream, and no "Task was
destroyed but it is pending!" from asyncio."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc
import pytest

from chronosched.v1 import worker_pb2, worker_pb2_grpc
from chronosched_server.app import Server
from tests.api.conftest import Stubs

STREAMS = 500
# Streams open at once: enough that connects and disconnects overlap, as when
# a fleet of workers reconnects.
CONCURRENCY = 25
SETTLE_S = 10.0
T = TypeVar("T")

if TYPE_CHECKING:  # generic only in the stubs
    Call = grpc.aio.StreamStreamCall[worker_pb2.DequeueRequest, worker_pb2.DequeueResponse]
    Stub = worker_pb2_grpc.WorkerServiceAsyncStub


def subscribe(worker_id: str) -> worker_pb2.DequeueRequest:
    return worker_pb2.DequeueRequest(
        subscribe=worker_pb2.Subscribe(worker_id=worker_id, namespaces=["churn"], kinds=["noop"], slots=1)
    )


async def opened(stub: Stub, worker_id: str) -> Call:
    """A subscribed stream the server has registered and now waits on for its
    next frame (the wait a dropped stream used to leave behind); the settings
    frame it sends at registration tells the client so."""
    call: Call = stub.Dequeue()
    await call.write(subscribe(worker_id))
    first = await call.read()
    assert isinstance(first, worker_pb2.DequeueResponse) and first.HasField("settings"), first
    return call


async def cancel_mid_stream(stub: Stub, worker_id: str) -> None:
    call = await opened(stub, worker_id)
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED


async def cancel_at_once(stub: Stub, worker_id: str) -> None:
    # Lands anywhere in the server's start of the stream, its database check
    # of the worker's leases included.
    call: Call = stub.Dequeue()
    await call.write(subscribe(worker_id))
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED


async def half_close(stub: Stub, worker_id: str) -> None:
    call = await opened(stub, worker_id)
    await call.done_writing()
    # gRPC hands the client the status only once every frame has been read.
    while await call.read() is not grpc.aio.EOF:
        pass
    assert await call.code() == grpc.StatusCode.OK


async def invalid_first(stub: Stub, worker_id: str) -> None:
    call: Call = stub.Dequeue()
    await call.write(worker_pb2.DequeueRequest(heartbeat=worker_pb2.Heartbeat()))
    assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT


DROPS: list[Callable[[Stub, str], Awaitable[None]]] = [
    cancel_mid_stream,
    cancel_at_once,
    half_close,
    invalid_first,
]


async def churn(api: Stubs, count: int, prefix: str) -> None:
    stub = worker_pb2_grpc.WorkerServiceStub(api.channel)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with slots:
            await DROPS[n % len(DROPS)](stub, f"{prefix}-{n}")

    await asyncio.gather(*(one(n) for n in range(count)))


def tasks_by_name() -> Counter[str]:
    # Collected first: a task dropped while pending is reported (and leaves
    # all_tasks()) only when the garbage collector destroys it.
    gc.collect()
    return Counter(getattr(t.get_coro(), "__qualname__", repr(t.get_coro())) for t in asyncio.all_tasks())


def fds_beyond_pool(server: Server) -> int | None:
    """Open descriptors less the pool's connections: the pool may grow to
    serve the streams' lease checks and keeps what it opened (a socket each)
    until it idles out, which is no leak. None while the pool is opening or
    lending a connection, when its count and its sockets may disagree."""
    stats = server.db.pool.get_stats()
    if stats["pool_available"] != stats["pool_size"]:
        return None
    return len(os.listdir("/proc/self/fd")) - stats["pool_size"]


async def settled(probe: Callable[[], T | None], what: Callable[[], str], within_s: float = SETTLE_S) -> T:
    """Poll `probe` until it returns something other than None; `what` says
    what was awaited, and how things stand, if it never does."""
    deadline = time.monotonic() + within_s
    while (value := probe()) is None:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within_s:g}s waiting for {what()}")
        await asyncio.sleep(0.005)
    return value


async def until(condition: Callable[[], bool], what: Callable[[], str]) -> None:
    await settled(lambda: True if condition() else None, what)


async def idle(server: Server) -> int:
    """Once no stream is registered, no dispatch cycle runs (each is a task,
    woken by every registration) and the pool is at rest: the descriptors
    beyond the pool's."""
    d = server.dispatcher
    await until(
        lambda: not d.streams and not d.owner and not d._running,
        lambda: f"the dispatcher to be idle: {len(d.streams)} streams left, {len(d._running)} cycles",
    )
    return await settled(
        lambda: fds_beyond_pool(server), lambda: f"the pool to rest: {server.db.pool.get_stats()}"
    )


async def test_dropped_streams_leave_no_tasks_fds_or_registrations(
    api: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    # A first round puts the channel's connection and what gRPC opens lazily
    # into the baseline.
    await churn(api, 2 * len(DROPS), "warm")
    fds = await idle(api.server)
    tasks = tasks_by_name()

    started = time.monotonic()
    await churn(api, STREAMS, "w")
    churned_s = time.monotonic() - started

    # The client has seen every call end; the server may still be unwinding
    # its side of the last ones. Background loops come and go as tasks of
    # their own (the pool's and the scheduler's timed waits, the health
    # ping), so "back where it started" is: no more tasks of any kind than
    # at the start, seen once the server is quiet.
    await idle(api.server)
    await until(
        lambda: not tasks_by_name() - tasks,
        lambda: f"the tasks to return to where they started; extra: {dict(tasks_by_name() - tasks)}",
    )
    await until(
        lambda: (n := fds_beyond_pool(api.server)) is not None and n <= fds,
        lambda: f"the descriptors besides the pool's to return to {fds}: {fds_beyond_pool(api.server)}",
    )
    destroyed = [
        message
        for r in caplog.records
        if r.name == "asyncio"
        and ("Task was destroyed" in (message := r.getMessage()) or "never retrieved" in message)
    ]
    assert not destroyed, f"{len(destroyed)} tasks dropped while pending, the first: {destroyed[0]}"
    after = tasks_by_name()
    print(
        f"\n{STREAMS} streams opened and dropped in {churned_s:.1f}s; tasks {tasks.total()} before,"
        f" {after.total()} after; {fds} descriptors besides the pool's before, at most that after"
    )
