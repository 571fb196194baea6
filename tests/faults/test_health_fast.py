"""gRPC health follows PostgreSQL within a second, both ways.

A server process runs on a PostgreSQL of its own. Stopping PostgreSQL must
turn grpc.health.v1 NOT_SERVING (the overall service "" and every named
service) within a second of the stop returning, and starting it again must
turn it SERVING within a second of the start returning. A PostgreSQL that
hangs (every process of it SIGSTOPped: nothing closes, nothing answers) must
show too, by the health checker's ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from chronosched_server.app import SERVICE_NAMES
from chronosched_server.local.embedded import EmbeddedPostgres
from tests.faults.test_infra_faults import (
    NOT_SERVING,
    SERVING,
    Harness,
    Proc,
    server_on_own_postgres,
)

pytestmark = pytest.mark.slow

POLL_S = 0.05
WITHIN_S = 1.0
# A hang shows only by the ping: the next is due at most an interval after
# the last and is given up on after its timeout (0.5 s each by default),
# plus a poll.
HUNG_WITHIN_S = 1.5
# How long a poll keeps going before it gives up, well past WITHIN_S, so a
# miss is reported with the delay it actually took.
GIVE_UP_S = 15.0
NAMES = ["", *SERVICE_NAMES]
# A status, or the name of the code a Check failed with: NOT_FOUND for a
# service not set yet, DEADLINE_EXCEEDED for an answer slower than a poll.
Seen = int | str
Status = dict[str, Seen]


class Health:
    """Every service's status through one channel, held across the outage."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        # The typeshed HealthStub declares no methods: call it by path.
        self.check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    async def one(self, service: str) -> Seen:
        try:
            response = await self.check(health_pb2.HealthCheckRequest(service=service), timeout=POLL_S * 4)
        except grpc.aio.AioRpcError as e:
            return str(e.code().name)
        assert isinstance(response, health_pb2.HealthCheckResponse)
        status: int = response.status
        return status

    async def statuses(self) -> Status:
        return dict(zip(NAMES, await asyncio.gather(*(self.one(n) for n in NAMES)), strict=True))

    async def first_seen(self, want: int, server: Proc) -> float:
        """Poll every POLL_S until every service reports `want`; the
        monotonic time that was first seen."""
        deadline = time.monotonic() + GIVE_UP_S
        last: Status = {}
        while True:
            assert server.popen.poll() is None, f"the server exited\n{server.tail()}"
            asked = time.monotonic()
            last = await self.statuses()
            if all(status == want for status in last.values()):
                return asked
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {name(want)} within {GIVE_UP_S:g}s; last seen {last}")
            await asyncio.sleep(POLL_S)


def name(status: int) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


@contextlib.asynccontextmanager
async def serving_on_own_postgres() -> AsyncIterator[tuple[EmbeddedPostgres, Harness, Proc, Health]]:
    async with server_on_own_postgres() as own, grpc.aio.insecure_channel(own.target) as channel:
        health = Health(channel)
        # The harness waited for "" alone. Each Check has a poll's deadline,
        # which a loaded CI machine can miss on a new channel, so every
        # service is polled until SERVING rather than read once.
        await health.first_seen(SERVING, own.server)
        yield own.pg, own.h, own.server, health


@pytest.mark.timeout(90)
async def test_health_follows_postgres_stop_and_start_within_a_second() -> None:
    async with serving_on_own_postgres() as (pg, _, server, health):
        # Polled only once pg_ctl is done: it runs as PostgreSQL's user, so
        # it is forked (not vforked), and forking while this process has
        # gRPC calls in flight crashed the child now and then (SIGSEGV).
        url = pg.url
        stopping = time.monotonic()
        await asyncio.to_thread(pg.stop)
        stopped = time.monotonic()
        down_s = await health.first_seen(NOT_SERVING, server) - stopped

        starting = time.monotonic()
        again = await asyncio.to_thread(pg.start)
        started = time.monotonic()
        up_s = await health.first_seen(SERVING, server) - started
        # pgserver keeps the socket in the data directory, so the URL the
        # server has still leads to the database.
        assert again == url

        print(
            f"\nNOT_SERVING seen {down_s:.3f}s after `pg_ctl stop -m fast` returned"
            f" (the stop took {stopped - stopping:.3f}s); SERVING seen {up_s:.3f}s after the start"
            f" returned (it took {started - starting:.3f}s)"
        )
        assert down_s <= WITHIN_S, f"NOT_SERVING only {down_s:.3f}s after PostgreSQL stopped"
        assert up_s <= WITHIN_S, f"SERVING only {up_s:.3f}s after PostgreSQL started"


def postgres_pids(postmaster: int) -> list[int]:
    """The postmaster and its children (backends and auxiliary processes)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


@contextlib.contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.timeout(90)
async def test_health_notices_a_hung_postgres_by_its_ping() -> None:
    async with serving_on_own_postgres() as (pg, _, server, health):
        postmaster = pg.pid
        assert postmaster is not None
        pids = postgres_pids(postmaster)
        with frozen(pids):
            hung_at = time.monotonic()
            down_s = await health.first_seen(NOT_SERVING, server) - hung_at
        thawed_at = time.monotonic()
        up_s = await health.first_seen(SERVING, server) - thawed_at
        print(
            f"\nhung PostgreSQL: NOT_SERVING seen after {down_s:.3f}s; SERVING {up_s:.3f}s after it resumed"
        )
        assert down_s <= HUNG_WITHIN_S, f"NOT_SERVING only {down_s:.3f}s after PostgreSQL hung"
        assert up_s <= WITHIN_S, f"SERVING only {up_s:.3f}s after PostgreSQL resumed"
