"""chronosched beside the best Python PostgreSQL queues, on one PostgreSQL.

    python -m bench.peers [--jobs 20000] [--rounds 3] [--quick]

One throwaway embedded PostgreSQL (synchronous_commit left on, as shipped)
holds four databases: chronosched's, PgQueuer's, Procrastinate's and a
scratch one for the baseline. Each round runs every contender once, in an
order that rotates from round to round (so a noisy minute on a shared machine
hurts each in turn); the table gives the median over the rounds and their
spread, and every ratio is the median of the same-round ratios.

A round starts with the enqueues that are timed, which make the backlogs
its drains start on: the contenders take turns call by call (1,000 jobs a
call, the order shuffled at each turn) until each has made its backlog, and
each one's rate is over its own calls' time. Timed one after another, each
contender's half second fell on a different moment of a shared machine, and
the same code's ratio moved by a third from run to run. Before a drain its
database gets an untimed VACUUM ANALYZE, so that no drain inherits the dead
rows of the one before it; `--no-vacuum` leaves it out, so each drain starts
on a backlog as a user's first one does, with no statistics yet (rounds
after the first may meet an autovacuum's).

- raw SQL baseline: claim (`FOR UPDATE SKIP LOCKED`) + done, one job per
  transaction, 16 connections (psycopg) on a plain table;
- chronosched: `chronosched server` as its own process; enqueue =
  EnqueueJobs of 1,000 standalone runs per call (the call for independent
  jobs), except in the bare stream client's row, where it is CreateDag
  (start=true) of a 1,000-job DAG without edges; drain = the SDK `Worker`
  with an async no-op handler at 16 slots in its own process, with its
  default prefetch ("auto": a round of 16 more once its runs show short)
  and with prefetch 0, and the bare stream client of bench.throughput
  (answers every assignment at once), without and with a lookahead of 240
  (the server holds up to 240 more jobs for it and sends each as a result
  frees a slot; that row's enqueue is not shown, it is the same call);
- PgQueuer (asyncpg driver): enqueue = `Queries.enqueue` with lists of 1,000;
  drain = a `PgQueuer` worker in drain mode in its own process, entrypoint
  `concurrency_limit=16`, on uvloop as its CLI runs it;
- Procrastinate (psycopg connector): enqueue = `batch_defer_async` of 1,000;
  drain = `run_worker_async(concurrency=16, wait=False)` in its own process.

Latency is enqueue -> handler start on an idle system: one job at a time
(chronosched enqueues it with Tick), the parent stamps the wall time into
the payload just before the enqueue call (so the call's own time counts),
the handler subtracts it from the wall time at its start; a short pause
between samples. Each contender's latency follows its drain, so its
database is VACUUM ANALYZEd first (untimed), as before a drain: otherwise
the samples would meet the drain's dead rows and the autovacuum they start,
which is not an idle system (docs/performance.md, "Latency after a drain").
The one-slot case repeats the
drain with chronosched's SDK at 1 slot against PgQueuer's
`concurrency_limit=1`, with `batch_size=1` (what the ratio is taken
against) and with its default batch of 10, which holds a finished job's slot
until its completion buffer flushes (about ten jobs a second).

Every drain also reports CPU milliseconds per job (from /proc, so Linux
only): the worker process's own (raw SQL's and the stream client's: this
process's), chronosched's server's, and all of PostgreSQL's (the postmaster
and every backend, alive or reaped).

PgQueuer and Procrastinate come from the optional extra
(`pip install -e '.[bench]'`); a missing one is reported and its row left
out. Nothing is installed by this script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
from google.protobuf import struct_pb2

from bench.common import database, postmaster_pid, server_pid, server_process, tree_cpu
from bench.throughput import StreamClient, setup
from chronosched.v1 import dag_pb2, dag_pb2_grpc, definition_pb2, definition_pb2_grpc, job_pb2, job_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1000
CONCURRENCY = 16
# The versions the table names and the `bench` extra pins.
PEERS = {
    "pgqueuer": (("pgqueuer", "1.6.0"), ("asyncpg", "0.32.0")),
    "procrastinate": (("procrastinate", "3.10.0"),),
}

RAW = "raw SQL claim + done (16 connections)"
PGQ = "PgQueuer 1.6 (asyncpg)"
PROC = "Procrastinate 3.10"
SDK = "chronosched, SDK Worker (16 slots, prefetch auto: the default)"
SDK_NO_PREFETCH = "chronosched, SDK Worker (16 slots, prefetch 0)"
STREAM = "chronosched, bare stream client (16 slots; enqueue: CreateDag)"
LOOKAHEAD = 240
STREAM_AHEAD = f"chronosched, bare stream client (16 slots, lookahead {LOOKAHEAD})"
SDK1 = "chronosched, SDK Worker (1 slot, prefetch auto: the default)"
SDK1_NO_PREFETCH = "chronosched, SDK Worker (1 slot, prefetch 0)"
PGQ1 = "PgQueuer 1.6 (concurrency_limit=1, batch_size=1)"
PGQ1_DEFAULT = "PgQueuer 1.6 (concurrency_limit=1, default batch_size=10)"


@dataclass
class Figures:
    """Per-round figures of one contender (jobs/s and seconds)."""

    enqueue: list[float] = field(default_factory=list)
    drain: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    # Same-round drain ratios.
    vs_raw: list[float] = field(default_factory=list)
    vs_pgq: list[float] = field(default_factory=list)
    # Per drain, CPU milliseconds per job.
    cpu: list[Cpu] = field(default_factory=list)


@dataclass(frozen=True)
class Cpu:
    """CPU milliseconds per job of one drain: the worker process (or the
    in-process client), chronosched's server (None for the others: it idles
    then) and every PostgreSQL process."""

    worker: float
    server: float | None
    postgres: float


def missing_peers() -> dict[str, str]:
    """Peer -> why it cannot run (a package missing or at another version)."""
    out: dict[str, str] = {}
    for peer, packages in PEERS.items():
        problems = []
        for package, pinned in packages:
            if importlib.util.find_spec(package) is None:
                problems.append(f"{package} is not installed")
                continue
            found = importlib.metadata.version(package)
            if found != pinned:
                # It still runs; the figures are just not the pinned version's.
                print(f"NOTE: {package} {found} installed, the bench pins {pinned}", flush=True)
        if problems:
            out[peer] = "; ".join(problems)
    return out


def database_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- worker processes ---------------------------------------------------------


class WorkerProcess:
    """A bench.peers_worker process and its line protocol (see that module)."""

    def __init__(self, proc: asyncio.subprocess.Process, what: str) -> None:
        self.proc = proc
        self.what = what

    @classmethod
    async def start(cls, contender: str, mode: str, *args: str) -> WorkerProcess:
        return await cls.spawn(
            f"{contender} {mode} worker", "bench.peers_worker", contender, "--mode", mode, *args
        )

    @classmethod
    async def spawn(cls, what: str, module: str, *args: str) -> WorkerProcess:
        """`python -m module args` speaking this line protocol, once it said
        ready; `what` (with its pid) names it in messages."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(proc, f"{what} {proc.pid}")
        await worker.expect("ready", 120)
        return worker

    async def expect(self, word: str, within: float) -> list[str]:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), within)
            if not raw:
                code = await self.proc.wait()
                raise RuntimeError(f"{self.what} exited ({code}) before saying {word!r}")
            parts = raw.decode().split()
            if parts and parts[0] == word:
                return parts
            # Anything else a library prints on stdout is passed through.
            print(f"  [{self.what}] {raw.decode().rstrip()}", flush=True)

    async def finish(self, within: float) -> tuple[float, int, float]:
        """Drain mode: the worker's own elapsed time, jobs handled and CPU
        seconds."""
        try:
            parts = await self.expect("done", within)
        finally:
            await self.close()
        return float(parts[1]), int(parts[2]), float(parts[3])

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def drain(contender: str, jobs: int, *args: str) -> tuple[float, float]:
    """A drain by a worker process: jobs/s and the worker's CPU seconds."""
    worker = await WorkerProcess.start(contender, "drain", "--jobs", str(jobs), *args)
    elapsed, handled, cpu = await worker.finish(within=max(300.0, jobs / 20))
    if handled != jobs:
        raise RuntimeError(f"{contender} handled {handled} jobs, expected {jobs}")
    return jobs / elapsed, cpu


async def in_process(rate: Awaitable[float]) -> tuple[float, float]:
    """A drain run by this process: jobs/s and this process's CPU seconds."""
    started = time.process_time()
    return await rate, time.process_time() - started


async def latency(
    contender: str, enqueue_one: Callable[[], Awaitable[None]], samples: int, gap: float, *args: str
) -> list[float]:
    worker = await WorkerProcess.start(contender, "latency", *args)
    try:
        # The first job also waits for the worker to connect: not a sample.
        await enqueue_one()
        await worker.expect("lat", 120)
        out = []
        for _ in range(samples):
            await asyncio.sleep(gap)
            await enqueue_one()
            out.append(float((await worker.expect("lat", 60))[1]))
        return out
    finally:
        await worker.close()


async def settle(url: str) -> None:
    """VACUUM ANALYZE a contender's database between its enqueue and its
    drain (untimed), so that no drain starts with the previous run's dead rows
    or an autovacuum about to start: the same for every contender."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("vacuum analyze")


# --- raw SQL baseline ---------------------------------------------------------


async def raw_sql(url: str, jobs: int, clients: int = CONCURRENCY) -> float:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("drop table if exists raw_queue")
        await conn.execute(
            "create table raw_queue (id bigserial primary key, state text not null, payload jsonb)"
        )
        await conn.execute("create index raw_queue_ready on raw_queue (id) where state = 'ready'")
        await conn.execute(
            "insert into raw_queue (state, payload) select 'ready', '{}' from generate_series(1, %s::int)",
            (jobs,),
        )
        await conn.execute("vacuum analyze raw_queue")

    async def client() -> int:
        done = 0
        async with await psycopg.AsyncConnection.connect(url) as conn:
            while True:
                async with conn.transaction():
                    cur = await conn.execute(
                        "select id from raw_queue where state = 'ready'"
                        " order by id limit 1 for update skip locked"
                    )
                    row = await cur.fetchone()
                    if row is None:
                        return done
                    await conn.execute("update raw_queue set state = 'done' where id = %s", (row[0],))
                done += 1

    started = time.perf_counter()
    counts = await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    assert sum(counts) == jobs, counts
    return jobs / elapsed


Enqueue = Callable[[int], Awaitable[None]]


async def batches(jobs: int, call: Enqueue) -> None:
    """Enqueue `jobs` in calls of BATCH (`call(count)` makes `count`), untimed."""
    for first in range(0, jobs, BATCH):
        await call(min(BATCH, jobs - first))


async def interleaved(jobs: int, calls: dict[str, Enqueue], seed: int) -> dict[str, float]:
    """Enqueue `jobs` with each of `calls` in calls of BATCH, taking turns
    call by call, and return each one's jobs/s over its own calls' time.
    Compared this way, a noisy second on a shared machine or a checkpoint
    under way falls on every contender alike: timed one after the other,
    20,000 jobs are half a second each, and a contender's figure moved by a
    third from run to run. The order is shuffled at each turn (seeded, so a
    run repeats): rotated, each contender always came right after the same
    other one, and the same EnqueueJobs call ran 2% to 12% faster in the
    place after another EnqueueJobs than in the place after Procrastinate's
    batch_defer (all seven runs that rotated)."""
    spent = dict.fromkeys(calls, 0.0)
    names = list(calls)
    shuffle = random.Random(seed).shuffle
    for first in range(0, jobs, BATCH):
        count = min(BATCH, jobs - first)
        shuffle(names)
        for name in names:
            started = time.perf_counter()
            await calls[name](count)
            spent[name] += time.perf_counter() - started
    return {name: jobs / seconds for name, seconds in spent.items()}


# --- chronosched --------------------------------------------------------------


class Chronosched:
    def __init__(self, port: int, channel: grpc.aio.Channel) -> None:
        self.server = f"127.0.0.1:{port}"
        self.channel = channel
        self.dags = dag_pb2_grpc.DagServiceStub(channel)
        self.jobs = job_pb2_grpc.JobServiceStub(channel)
        self.defs_stub = definition_pb2_grpc.DefinitionServiceStub(channel)
        self.defs: dict[str, str] = {}

    async def namespace(self, ns: str) -> None:
        self.defs[ns] = await setup(self.channel, ns)

    def runs(self, ns: str) -> Enqueue:
        """One EnqueueJobs call of `count` standalone runs."""
        def_id = self.defs[ns]

        async def call(count: int) -> None:
            runs = [job_pb2.JobRun(def_id=def_id) for _ in range(count)]
            await self.jobs.EnqueueJobs(job_pb2.EnqueueJobsRequest(namespace_id=ns, jobs=runs), timeout=120)

        return call

    async def enqueue(self, ns: str, jobs: int) -> None:
        """`jobs` standalone runs by EnqueueJobs, untimed."""
        await batches(jobs, self.runs(ns))

    def dag(self, ns: str) -> Enqueue:
        """One CreateDag call: a started `count`-job DAG without edges."""
        def_id = self.defs[ns]

        async def call(count: int) -> None:
            specs = [dag_pb2.JobSpec(key=f"j{i}", def_id=def_id) for i in range(count)]
            await self.dags.CreateDag(
                dag_pb2.CreateDagRequest(namespace_id=ns, jobs=specs, start=True), timeout=120
            )

        return call

    async def enqueue_stamped(self, ns: str) -> None:
        # One job is enqueued with Tick (run a definition once now), the call
        # that matches the peers' one-job enqueue; a DAG of one job costs a
        # DAG row besides (bench.unary has both).
        payload = struct_pb2.Struct()
        payload.update({"t": time.time()})
        await self.defs_stub.Tick(
            definition_pb2.TickRequest(namespace_id=ns, def_id=self.defs[ns], payload=payload),
            timeout=30,
        )

    def worker_args(self, ns: str, slots: int) -> tuple[str, ...]:
        return ("--server", self.server, "--namespace", ns, "--concurrency", str(slots))

    async def stream_drain(self, ns: str, jobs: int, lookahead: int = 0) -> float:
        worker_id = f"peers-stream-{os.getpid()}-{lookahead}"
        client = StreamClient(self.channel, ns, CONCURRENCY, worker_id, lookahead)
        started = time.perf_counter()
        await client.run(jobs)
        return jobs / (time.perf_counter() - started)


# --- the peers ----------------------------------------------------------------


class PgQueuer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.asyncpg: Any = importlib.import_module("asyncpg")
        self.pgqueuer: Any = importlib.import_module("pgqueuer")
        self.conn: Any = None
        self.queries: Any = None

    async def open(self) -> None:
        self.conn = await self.asyncpg.connect(self.url)
        self.queries = self.pgqueuer.Queries(self.pgqueuer.AsyncpgDriver(self.conn))
        await self.queries.install()

    async def close(self) -> None:
        await self.conn.close()

    async def enqueue(self, count: int) -> None:
        await self.queries.enqueue(["noop"] * count, [None] * count, [0] * count)

    async def enqueue_stamped(self) -> None:
        await self.queries.enqueue("noop", repr(time.time()).encode())

    def worker_args(self, concurrency: int, batch_size: int = 10) -> tuple[str, ...]:
        # 10 is its own default dequeue batch; its completion buffer flushes
        # when it holds a batch's worth or after 0.1 s.
        return ("--url", self.url, "--concurrency", str(concurrency), "--batch-size", str(batch_size))


class Procrastinate:
    QUEUE = "peers"

    def __init__(self, url: str) -> None:
        self.url = url
        procrastinate: Any = importlib.import_module("procrastinate")
        self.app: Any = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
        self.opened: contextlib.AbstractAsyncContextManager[Any] | None = None
        self.deferrer: Any = None

    async def open(self) -> None:
        self.opened = self.app.open_async()
        await self.opened.__aenter__()
        await self.app.schema_manager.apply_schema_async()
        self.deferrer = self.app.configure_task("noop", queue=self.QUEUE)

    async def close(self) -> None:
        assert self.opened is not None
        await self.opened.__aexit__(None, None, None)

    async def enqueue(self, count: int) -> None:
        await self.deferrer.batch_defer_async(*({} for _ in range(count)))

    async def enqueue_stamped(self) -> None:
        await self.deferrer.defer_async(t=time.time())

    def worker_args(self) -> tuple[str, ...]:
        return ("--url", self.url, "--queue", self.QUEUE, "--concurrency", str(CONCURRENCY))


# --- the run --------------------------------------------------------------------


@dataclass
class Plan:
    jobs: int
    rounds: int
    samples: int
    one_slot_jobs: int
    gap: float
    # False (--no-vacuum): drains start on the backlog as enqueued, before
    # any ANALYZE, as a user's first backlog does.
    settle: bool = True


async def run(plan: Plan, missing: dict[str, str]) -> dict[str, Figures]:
    figures: dict[str, Figures] = {}

    def fig(name: str) -> Figures:
        return figures.setdefault(name, Figures())

    async def settle_unless_fresh(url: str) -> None:
        if plan.settle:
            await settle(url)

    async with database() as url, server_process(url) as (port, channel):
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for name in ("peers_raw", "peers_pgqueuer", "peers_pgqueuer1", "peers_procrastinate"):
                await conn.execute(f"create database {name}")
            row = await (await conn.execute("show server_version")).fetchone()
            sync = await (await conn.execute("show synchronous_commit")).fetchone()
        assert row is not None and sync is not None
        print(
            f"PostgreSQL {row[0]} (embedded, throwaway), synchronous_commit={sync[0]};"
            f" {os.cpu_count()} cores; {plan.jobs:,} jobs, {plan.rounds} rounds,"
            f" {plan.samples} latency samples per contender and round;"
            f" {'VACUUM ANALYZE before each drain' if plan.settle else 'no VACUUM ANALYZE (--no-vacuum)'};"
            f" load average {os.getloadavg()[0]:.1f} at the start",
            flush=True,
        )
        chrono = Chronosched(port, channel)
        for ns in ("peers16", "peers16pf", "peers1", "peerslat", "peersstream", "peersahead"):
            await chrono.namespace(ns)
        pgq = PgQueuer(database_url(url, "peers_pgqueuer")) if "pgqueuer" not in missing else None
        # Its one-slot drains have a database of their own: the 16-slot
        # backlog (made at the round's start) may still wait in the other.
        pgq_one = PgQueuer(database_url(url, "peers_pgqueuer1")) if "pgqueuer" not in missing else None
        proc = (
            Procrastinate(database_url(url, "peers_procrastinate"))
            if "procrastinate" not in missing
            else None
        )
        if pgq:
            await pgq.open()
        if pgq_one:
            await pgq_one.open()
        if proc:
            await proc.open()
        raw_url = database_url(url, "peers_raw")
        server, postmaster = server_pid(port), await postmaster_pid(url)

        async def drained(f: Figures, drain: Awaitable[tuple[float, float]], ours: bool) -> None:
            """Record a drain of plan.jobs: its rate, and the CPU per job of
            its worker, the server (ours only) and PostgreSQL."""
            before = (tree_cpu([server]), tree_cpu([postmaster]))
            rate, worker = await drain
            server_s, pg_s = tree_cpu([server]) - before[0], tree_cpu([postmaster]) - before[1]
            f.drain.append(rate)
            per_job = 1e3 / plan.jobs
            f.cpu.append(Cpu(worker * per_job, server_s * per_job if ours else None, pg_s * per_job))

        async def do_raw() -> None:
            await drained(fig(RAW), in_process(raw_sql(raw_url, plan.jobs)), ours=False)

        async def do_sdk() -> None:
            f = fig(SDK)
            await settle_unless_fresh(url)
            await drained(
                f, drain("chronosched", plan.jobs, *chrono.worker_args("peers16", CONCURRENCY)), ours=True
            )
            await settle_unless_fresh(url)
            lat = await latency(
                "chronosched",
                lambda: chrono.enqueue_stamped("peerslat"),
                plan.samples,
                plan.gap,
                *chrono.worker_args("peerslat", CONCURRENCY),
            )
            f.p50.append(pct(lat, 0.5))
            f.p99.append(pct(lat, 0.99))

        async def do_sdk_no_prefetch() -> None:
            f = fig(SDK_NO_PREFETCH)
            await settle_unless_fresh(url)
            args = (*chrono.worker_args("peers16pf", CONCURRENCY), "--prefetch", "0")
            await drained(f, drain("chronosched", plan.jobs, *args), ours=True)

        async def do_stream() -> None:
            f = fig(STREAM)
            await settle_unless_fresh(url)
            await drained(f, in_process(chrono.stream_drain("peersstream", plan.jobs)), ours=True)

        async def do_stream_ahead() -> None:
            # Enqueued as the bare stream client's row is, but not timed again.
            await batches(plan.jobs, chrono.dag("peersahead"))
            await settle_unless_fresh(url)
            drain = chrono.stream_drain("peersahead", plan.jobs, LOOKAHEAD)
            await drained(fig(STREAM_AHEAD), in_process(drain), ours=True)

        async def do_pgq() -> None:
            assert pgq is not None
            f = fig(PGQ)
            await settle_unless_fresh(pgq.url)
            await drained(f, drain("pgqueuer", plan.jobs, *pgq.worker_args(CONCURRENCY)), ours=False)
            await settle_unless_fresh(pgq.url)
            lat = await latency(
                "pgqueuer", pgq.enqueue_stamped, plan.samples, plan.gap, *pgq.worker_args(CONCURRENCY)
            )
            f.p50.append(pct(lat, 0.5))
            f.p99.append(pct(lat, 0.99))

        async def do_proc() -> None:
            assert proc is not None
            f = fig(PROC)
            await settle_unless_fresh(proc.url)
            await drained(f, drain("procrastinate", plan.jobs, *proc.worker_args()), ours=False)
            await settle_unless_fresh(proc.url)
            lat = await latency(
                "procrastinate", proc.enqueue_stamped, plan.samples, plan.gap, *proc.worker_args()
            )
            f.p50.append(pct(lat, 0.5))
            f.p99.append(pct(lat, 0.99))

        async def do_one_slot() -> None:
            if plan.one_slot_jobs <= 0:
                return
            n = plan.one_slot_jobs
            contenders: list[tuple[str, Callable[[], Awaitable[float]]]] = []

            async def sdk1() -> float:
                await chrono.enqueue("peers1", n)
                await settle_unless_fresh(url)
                return (await drain("chronosched", n, *chrono.worker_args("peers1", 1)))[0]

            async def sdk1_no_prefetch() -> float:
                await chrono.enqueue("peers1", n)
                await settle_unless_fresh(url)
                return (await drain("chronosched", n, *chrono.worker_args("peers1", 1), "--prefetch", "0"))[0]

            contenders += [(SDK1, sdk1), (SDK1_NO_PREFETCH, sdk1_no_prefetch)]
            if pgq_one:
                peer = pgq_one

                async def pgq1() -> float:
                    await batches(n, peer.enqueue)
                    await settle_unless_fresh(peer.url)
                    return (await drain("pgqueuer", n, *peer.worker_args(1, batch_size=1)))[0]

                async def pgq1_default() -> float:
                    # About ten jobs a second: a few are enough.
                    await batches(min(n, 50), peer.enqueue)
                    await settle_unless_fresh(peer.url)
                    return (await drain("pgqueuer", min(n, 50), *peer.worker_args(1)))[0]

                contenders += [(PGQ1, pgq1), (PGQ1_DEFAULT, pgq1_default)]
            shift = rnd % len(contenders)
            for name, step in contenders[shift:] + contenders[:shift]:
                fig(name).drain.append(await step())

        # Rotating keeps this cyclic order, so no two drains of chronosched's
        # at 16 slots follow each other (none starts in another's aftermath).
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [(RAW, do_raw), (SDK, do_sdk)]
        if pgq:
            steps.append((PGQ, do_pgq))
        steps.append((STREAM, do_stream))
        if proc:
            steps.append((PROC, do_proc))
        steps.append((SDK_NO_PREFETCH, do_sdk_no_prefetch))
        steps.append(("one slot", do_one_slot))
        steps.append((STREAM_AHEAD, do_stream_ahead))
        # The backlogs the drains below start on, made by the enqueue calls
        # that are timed: each contender's, in turns (`interleaved`).
        enqueues: dict[str, Enqueue] = {
            SDK: chrono.runs("peers16"),
            SDK_NO_PREFETCH: chrono.runs("peers16pf"),
            STREAM: chrono.dag("peersstream"),
        }
        if pgq:
            enqueues[PGQ] = pgq.enqueue
        if proc:
            enqueues[PROC] = proc.enqueue
        for rnd in range(plan.rounds):
            order = steps[rnd % len(steps) :] + steps[: rnd % len(steps)]
            print(f"round {rnd + 1}/{plan.rounds}: {', '.join(name for name, _ in order)}", flush=True)
            started = time.monotonic()
            for name, jobs_per_s in (await interleaved(plan.jobs, enqueues, seed=rnd)).items():
                fig(name).enqueue.append(jobs_per_s)
            print(f"  enqueue, in turns: {time.monotonic() - started:.1f} s", flush=True)
            for name, step in order:
                started = time.monotonic()
                await step()
                print(f"  {name}: {time.monotonic() - started:.1f} s", flush=True)
            for name in (SDK, SDK_NO_PREFETCH, STREAM, STREAM_AHEAD, PGQ, PROC):
                f = figures.get(name)
                if f and len(f.drain) == rnd + 1:
                    f.vs_raw.append(f.drain[rnd] / figures[RAW].drain[rnd])
                    if PGQ in figures:
                        f.vs_pgq.append(f.drain[rnd] / figures[PGQ].drain[rnd])
            if SDK1 in figures and PGQ1 in figures and len(figures[PGQ1].drain) == rnd + 1:
                for ours in (SDK1, SDK1_NO_PREFETCH):
                    figures[ours].vs_pgq.append(figures[ours].drain[rnd] / figures[PGQ1].drain[rnd])
                default = figures[PGQ1_DEFAULT]
                default.vs_pgq.append(default.drain[rnd] / figures[PGQ1].drain[rnd])
        if pgq:
            await pgq.close()
        if pgq_one:
            await pgq_one.close()
        if proc:
            await proc.close()
    # Others' work on a shared machine shows here, not in the ratios alone.
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)
    return figures


# --- the table ------------------------------------------------------------------


def rate(values: list[float]) -> str:
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.0f}"
    return f"{med:,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f}" if values else "—"


def times(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x" if values else "—"


def report(figures: dict[str, Figures], plan: Plan) -> None:
    print(
        f"\nMedians over {plan.rounds} interleaved rounds, (min-max) over the rounds;"
        f" {plan.jobs:,} no-op jobs per drain; ratios are medians of same-round ratios.\n"
    )
    print(
        "| | enqueue, batches of 1,000 (jobs/s) | drain, 16 concurrent (jobs/s)"
        " | x raw SQL | x PgQueuer | enqueue → handler start p50 / p99 (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in (RAW, PGQ, PROC, SDK, SDK_NO_PREFETCH, STREAM, STREAM_AHEAD):
        f = figures.get(name)
        if f is None:
            continue
        lat = f"{ms(f.p50)} / {ms(f.p99)}" if f.p50 else "—"
        vs_raw = "1.00x" if name == RAW else times(f.vs_raw)
        vs_pgq = "1.00x" if name == PGQ else times(f.vs_pgq)
        print(f"| {name} | {rate(f.enqueue)} | {rate(f.drain)} | {vs_raw} | {vs_pgq} | {lat} |")
    print(
        "\nCPU milliseconds per job over the drains above (medians): the worker process"
        " (raw SQL and the stream client: this process) / chronosched's server /"
        " PostgreSQL (every backend) = all.\n"
    )
    print("| | worker | server | PostgreSQL | all |\n|---|---:|---:|---:|---:|")
    for name in (RAW, PGQ, PROC, SDK, SDK_NO_PREFETCH, STREAM, STREAM_AHEAD):
        f = figures.get(name)
        if f is None or not f.cpu:
            continue
        worker = statistics.median(c.worker for c in f.cpu)
        pg = statistics.median(c.postgres for c in f.cpu)
        servers = [c.server for c in f.cpu if c.server is not None]
        server = statistics.median(servers) if servers else 0.0
        shown = f"{server:.3f}" if servers else "—"
        print(f"| {name} | {worker:.3f} | {shown} | {pg:.3f} | {worker + server + pg:.3f} |")
    if SDK1 in figures:
        print(f"\nOne slot, {plan.one_slot_jobs:,} jobs per drain:\n")
        print("| | drain (jobs/s) | x PgQueuer |\n|---|---:|---:|")
        for name in (PGQ1, PGQ1_DEFAULT, SDK1, SDK1_NO_PREFETCH):
            f = figures.get(name)
            if f is not None:
                vs = "1.00x" if name == PGQ1 else times(f.vs_pgq)
                print(f"| {name} | {rate(f.drain)} | {vs} |")
        print(f"\n(PgQueuer's default-batch row drains {min(plan.one_slot_jobs, 50)} jobs per round.)")
    bars(figures)


def bars(figures: dict[str, Figures]) -> None:
    """The issue's bars, each against this run's figures."""
    lines: list[str] = []

    def bar(text: str, value: float, met: bool) -> None:
        lines.append(f"- {text}: {value:.2f} — {'met' if met else 'NOT met'}")

    sdk, stream, pgq = figures.get(SDK), figures.get(STREAM), figures.get(PGQ)
    if sdk and sdk.vs_pgq:
        v = statistics.median(sdk.vs_pgq)
        bar("SDK Worker at 16 slots ≥ 1.0x PgQueuer (target 1.5x)", v, v >= 1.0)
    if stream and stream.vs_raw:
        v = statistics.median(stream.vs_raw)
        bar("bare stream client ≥ 1.5x raw SQL", v, v >= 1.5)
    ahead = figures.get(STREAM_AHEAD)
    if ahead and ahead.vs_raw:
        v = statistics.median(ahead.vs_raw)
        bar(f"the same with lookahead {LOOKAHEAD} (Subscribe.lookahead) ≥ 1.5x raw SQL", v, v >= 1.5)
    if sdk and pgq and sdk.p50 and pgq.p50:
        p50, theirs = statistics.median(sdk.p50) * 1e3, statistics.median(pgq.p50) * 1e3
        lines.append(
            f"- latency p50 ≤ PgQueuer's: {p50:.1f} ms against {theirs:.1f} ms"
            f" — {'met' if p50 <= theirs else 'NOT met'}"
        )
    if sdk and sdk.p99:
        p99 = statistics.median(sdk.p99) * 1e3
        lines.append(f"- latency p99 ≤ 15 ms: {p99:.1f} ms — {'met' if p99 <= 15 else 'NOT met'}")
    if sdk and pgq and sdk.enqueue and pgq.enqueue:
        v = statistics.median(a / b for a, b in zip(sdk.enqueue, pgq.enqueue, strict=True))
        bar("enqueue (batches of 1,000, EnqueueJobs) ≥ 1.0x PgQueuer", v, v >= 1.0)
    if stream and pgq and stream.enqueue and pgq.enqueue:
        v = statistics.median(a / b for a, b in zip(stream.enqueue, pgq.enqueue, strict=True))
        lines.append(f"- (not a bar) a 1,000-job DAG per CreateDag call: {v:.2f}x PgQueuer's enqueue")
    one = figures.get(SDK1)
    if one and one.vs_pgq:
        v = statistics.median(one.vs_pgq)
        bar("one slot ≥ 1.5x PgQueuer concurrency_limit=1 (batch_size=1, its faster setting)", v, v >= 1.5)
    # The bar is for the worker as it comes; without prefetch is for the record.
    one = figures.get(SDK1_NO_PREFETCH)
    if one and one.vs_pgq:
        v = statistics.median(one.vs_pgq)
        lines.append(f"- (not a bar) one slot, SDK with prefetch 0: {v:.2f}x PgQueuer concurrency_limit=1")
    if lines:
        print("\nThe performance bars (docs/performance.md), this run:\n\n" + "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, help="jobs per drain (default 20,000; --quick 2,000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median over them)")
    parser.add_argument("--samples", type=int, help="latency samples per contender and round")
    parser.add_argument(
        "--one-slot-jobs",
        type=int,
        help="jobs per one-slot drain (default 500; --quick 100; 0 to skip)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, about two minutes")
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="no VACUUM ANALYZE between enqueue and drain: drains start on backlogs without statistics",
    )
    args = parser.parse_args()
    jobs = args.jobs or (2_000 if args.quick else 20_000)
    plan = Plan(
        jobs=jobs,
        rounds=args.rounds,
        samples=args.samples or (50 if args.quick else 200),
        # One slot is bound by round trips, not by the machine: a few hundred
        # jobs give a stable rate.
        one_slot_jobs=(100 if args.quick else 500) if args.one_slot_jobs is None else args.one_slot_jobs,
        gap=0.02,
        settle=not args.no_vacuum,
    )
    if plan.jobs % BATCH and plan.jobs > BATCH:
        parser.error(f"--jobs must be a multiple of {BATCH} (batches of {BATCH})")
    missing = missing_peers()
    for peer, why in missing.items():
        banner = "!" * 78
        print(
            f"{banner}\n!!! {peer} left out: {why}.\n"
            f"!!! Install the peers with: pip install -e '.[bench]'\n{banner}",
            file=sys.stderr,
            flush=True,
        )
    # Procrastinate warns that an App made in a __main__ module cannot be
    # found by its CLI; we never use its CLI.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    figures = asyncio.run(run(plan, missing))
    report(figures, plan)
    if missing:
        print(f"\nLeft out (not installed): {', '.join(missing)}; pip install -e '.[bench]'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
