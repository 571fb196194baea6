"""The cron scheduler in real time: an every-second schedule run by an SDK
worker, and two real server processes on one database (one of them SIGKILLed
in the second test) firing each second exactly once. No timing assertions:
only what was fired, how often, and what became of it."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from chronosched.v1 import (
    definition_pb2,
    definition_pb2_grpc,
    job_pb2,
    namespace_pb2,
    namespace_pb2_grpc,
    schedule_pb2,
)
from chronosched_server.cron import parse_schedule
from chronosched_worker import JobContext, Worker
from tests.support.builders import definition, namespace
from tests.support.processes import clean_env, free_port, server_argv
from tests.support.server import Stubs
from tests.support.waiting import poll
from tests.support.worker import running

pytestmark = pytest.mark.slow

J = job_pb2.Job
F = schedule_pb2.Fire
S = timedelta(seconds=1)


def when(ts: Any) -> datetime:
    value: datetime = ts.ToDatetime(tzinfo=UTC)
    return value


def assert_consecutive_seconds(times: list[datetime]) -> None:
    assert times == sorted(times)
    assert all(t.microsecond == 0 for t in times)
    gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a != S]
    assert gaps == [], f"not one fire per second: {gaps}"


@pytest.mark.timeout(40)
async def test_every_second_schedule_is_run_by_a_worker(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(
        api, ns, "heartbeat", kind="beat", cron_spec="*/1 * * * * *", payload_template={"n": 1}
    )
    ran: list[str] = []
    worker = Worker(f"127.0.0.1:{api.server.port}", namespaces=[ns], worker_id="cron-realtime")

    @worker.handler("beat")
    async def beat(ctx: JobContext) -> dict[str, Any]:
        ran.append(ctx.job_id)
        return {"n": ctx.payload["n"]}

    async def ledger() -> list[schedule_pb2.Fire]:
        page = await api.schedules.ListFires(
            schedule_pb2.ListFiresRequest(namespace_id=ns, def_id=d.def_id, page_size=1000)
        )
        return list(reversed(page.fires))

    async def five_fires() -> bool:
        return len(await ledger()) >= 5

    async with running(worker):
        await poll(five_fires, within=15, what="five fires", every=0.1)
        # A version without a spec stops the schedule: no tick after its
        # creation fires, without a restart.
        stop = await definition(api, ns, "heartbeat", kind="beat")
        scheduler = api.server.scheduler
        assert scheduler is not None

        async def dropped() -> bool:
            return (ns, "heartbeat") not in scheduler.active

        # The scheduler reloads on the new version's NOTIFY (or its reload a
        # second later). Its passes and reloads take turns in one task, so
        # once the schedule is out of its set every fire it made is committed
        # and no more can come: the ledger read next is final.
        await poll(dropped, within=10, what="the scheduler to drop the schedule", every=0.02)
        fires = await ledger()

        async def all_done() -> bool:
            states = [
                (await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=f.job_id))).state
                for f in fires
            ]
            return all(s == J.STATE_SUCCEEDED for s in states)

        await poll(all_done, within=15, what="every fired job to succeed", every=0.1)

    assert len(fires) >= 5
    assert {F.Status.Name(f.status) for f in fires} == {"STATUS_FIRED"}
    assert {(f.def_id, f.def_version) for f in fires} == {(d.def_id, 1)}
    times = [when(f.scheduled_time) for f in fires]
    assert_consecutive_seconds(times)
    # The new definition was picked up for its very first tick (NOTIFY or the
    # once-a-second reload, within the grace), and the new version stopped it.
    assert times[0] == parse_schedule(d.cron_spec).next_after(when(d.create_time))
    assert times[-1] < when(stop.create_time)
    jobs = await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, page_size=1000))
    assert sorted(j.job_id for j in jobs.jobs) == sorted(f.job_id for f in fires) == sorted(ran)


# --- two real server processes ----------------------------------------------------------


class ServerProcess:
    """`python -m chronosched_server server` on a port of its own."""

    def __init__(self, database_url: str, log: Path):
        self.port = free_port()
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                server_argv(database_url, self.port, "--log-level", "WARNING"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
            )

    async def ready(self) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def two_servers(database_url: str, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    servers = [ServerProcess(database_url, tmp_path / f"server-{i}.log") for i in range(2)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        yield conn


async def fired_times(db: psycopg.AsyncConnection[tuple[Any, ...]]) -> list[datetime]:
    cur = await db.execute("select scheduled_time from cron_fires where status = 'FIRED' order by 1")
    return [row[0] for row in await cur.fetchall()]


async def run_two_replicas(
    servers: list[ServerProcess], db: psycopg.AsyncConnection[tuple[Any, ...]], *, kill_after: int | None
) -> None:
    """Start an every-second schedule through the second server, let both fire
    it for ~9 s (SIGKILLing the first after `kill_after` fires), then stop it
    and both servers."""
    await asyncio.gather(*(s.ready() for s in servers))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{servers[1].port}") as channel:
        await namespace_pb2_grpc.NamespaceServiceStub(channel).CreateNamespace(
            namespace_pb2.CreateNamespaceRequest(namespace_id="replicas")
        )
        definitions = definition_pb2_grpc.DefinitionServiceStub(channel)
        request = definition_pb2.CreateDefinitionRequest(namespace_id="replicas", name="tick", kind="noop")
        request.cron_spec = "* * * * * *"
        await definitions.CreateDefinition(request)

        def fires_at_least(n: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return len(await fired_times(db)) >= n

            return check

        if kill_after is not None:
            await poll(fires_at_least(kill_after), within=15, what=f"{kill_after} fires", every=0.1)
            servers[0].stop(signal.SIGKILL)
            assert servers[0].proc.returncode == -signal.SIGKILL
        await poll(fires_at_least(9), within=20, what="nine fires", every=0.1)
        request.cron_spec = ""
        await definitions.CreateDefinition(request)
    # Both replicas stopped (SIGTERM, and their exit waited for): nothing can
    # add to the ledger while check_ledger reads it.
    await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))


async def check_ledger(db: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
    """One FIRED row per second, consecutive, each with its own job, and nothing else."""
    cur = await db.execute("select status, count(*) from cron_fires group by status")
    assert dict(await cur.fetchall()).keys() == {"FIRED"}
    times = await fired_times(db)
    assert len(times) >= 9
    assert_consecutive_seconds(times)  # (the primary key rules out duplicates)
    cur = await db.execute("select job_id from cron_fires order by job_id")
    fired_jobs = [row[0] for row in await cur.fetchall()]
    cur = await db.execute("select job_id from jobs order by job_id")
    assert [row[0] for row in await cur.fetchall()] == fired_jobs


@pytest.mark.timeout(60)
async def test_two_server_processes_fire_each_second_once(
    two_servers: list[ServerProcess], db: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    await run_two_replicas(two_servers, db, kill_after=None)
    await check_ledger(db)


@pytest.mark.timeout(60)
async def test_a_sigkilled_replica_leaves_no_gap(
    two_servers: list[ServerProcess], db: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    await run_two_replicas(two_servers, db, kill_after=3)
    await check_ledger(db)
