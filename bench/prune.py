"""Dispatch throughput while the retention loop prunes a backlog, against the
same run's throughput without pruning.

A `chronosched server` process (retention 7 days, its loop resting 1 s once
caught up) dispatches no-op jobs to a stream client that answers at once
(bench/throughput.py's), kept supplied with 5,000-job DAGs. Phases, in turn:

    (a) no pruning, for --window seconds;
    backlog: --backlog finished jobs, 30 days old, inserted in ONE transaction
        with `insert ... select generate_series` (half standalone, half in
        --dag-size-job chain DAGs with their edges); not timed;
    (b) from the retention loop's first batch of the backlog (it rests up
        to 1 s before it looks) until it has moved all of it to history;
    (a) again, for --window seconds.

Printed: jobs/s in each phase (mean, and the slowest 1-second sample), the
ratio (b) / (a), and how long the prune of each backlog took.

    python -m bench.prune [--backlog 1000000] [--window 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import psycopg

from bench.common import database, server_process
from bench.throughput import StreamClient, make_jobs, setup

FEED_DAG_JOBS = 5000
# READY jobs kept waiting for the client, so dispatch never runs dry.
FEED_AHEAD = 15_000
SLOTS = 16

_ID = """
create function pg_temp.bench_id(t timestamptz, seed text) returns uuid
language sql immutable as $$
    -- UUIDv7-shaped (time first), as the server makes them: history and
    -- live B-trees see the same insert pattern as with real ids.
    select (lpad(to_hex((extract(epoch from t) * 1000)::bigint), 12, '0') || '7'
            || substr(md5(seed), 1, 3) || '8' || substr(md5(seed), 4, 15))::uuid
$$
"""

_STANDALONE = """
insert into jobs (job_id, namespace_id, dag_id, def_id, key, state, max_attempts,
                  create_time, start_time, end_time, update_time)
select pg_temp.bench_id(t, %(tag)s || ':s' || i), %(ns)s, null, %(def_id)s, 'backlog', 'SUCCEEDED', 3,
       t, t, t, t
from generate_series(1, %(n)s::int) i,
     lateral (select now() - interval '30 days' - i * interval '1 ms' as t) x
"""

_DAGS = """
insert into dags (dag_id, namespace_id, name, state, job_count, unfinished_job_count,
                  create_time, start_time, end_time, update_time)
select pg_temp.bench_id(t, %(tag)s || ':d' || d), %(ns)s, 'backlog', 'SUCCEEDED', %(size)s::int, 0,
       t, t, t, t
from generate_series(1, %(n)s::int) d,
     lateral (select now() - interval '30 days' - d * interval '1 ms' as t) x
"""

_DAG_JOBS = """
insert into jobs (job_id, namespace_id, dag_id, def_id, key, state, max_attempts,
                  create_time, start_time, end_time, update_time)
select pg_temp.bench_id(t, %(tag)s || ':d' || d || ':' || k), %(ns)s,
       pg_temp.bench_id(t, %(tag)s || ':d' || d), %(def_id)s, 'j' || k, 'SUCCEEDED', 3, t, t, t, t
from generate_series(1, %(n)s::int) d,
     lateral (select now() - interval '30 days' - d * interval '1 ms' as t) x,
     generate_series(1, %(size)s::int) k
"""

# A chain per DAG: j1 -> j2 -> ... (ids computed, not looked up).
_DAG_EDGES = """
insert into dependencies (dag_id, parent_job_id, child_job_id)
select pg_temp.bench_id(t, %(tag)s || ':d' || d),
       pg_temp.bench_id(t, %(tag)s || ':d' || d || ':' || k),
       pg_temp.bench_id(t, %(tag)s || ':d' || d || ':' || (k + 1))
from generate_series(1, %(n)s::int) d,
     lateral (select now() - interval '30 days' - d * interval '1 ms' as t) x,
     generate_series(1, %(size)s::int - 1) k
"""

_OLD_LEFT = """
select exists (
    select 1 from jobs
    where dag_id is null and state in ('SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED')
      and end_time < now() - interval '7 days')
    or exists (
    select 1 from dags
    where state in ('SUCCEEDED', 'FAILED', 'CANCELLED') and end_time < now() - interval '7 days')
"""


async def insert_backlog(
    url: str, ns: str, def_id: str, jobs: int, dag_size: int, tag: str
) -> tuple[int, int]:
    """`jobs` finished, 30-day-old jobs in one transaction: half standalone,
    half in chain DAGs of `dag_size`. Returns (DAGs, edges) inserted."""
    dags = jobs // 2 // dag_size
    standalone = jobs - dags * dag_size
    params = {"ns": ns, "def_id": def_id, "n": dags, "size": dag_size, "tag": tag}
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await conn.execute(_ID)
        await conn.execute(_STANDALONE, {**params, "n": standalone})
        await conn.execute(_DAGS, params)
        await conn.execute(_DAG_JOBS, params)
        await conn.execute(_DAG_EDGES, params)
    return dags, dags * (dag_size - 1)


async def nothing_old_left(url: str) -> bool:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(_OLD_LEFT)
        row = await cur.fetchone()
        assert row is not None
        return not row[0]


async def history_jobs(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("select count(*) from jobs_history")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


@dataclass
class Load:
    """Continuous dispatch: a 16-slot stream client and a feeder that keeps
    FEED_AHEAD jobs READY; `samples` holds the jobs done in each second."""

    channel: grpc.aio.Channel
    ns: str
    def_id: str
    client: StreamClient = field(init=False)
    samples: list[tuple[float, int]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.client = StreamClient(self.channel, self.ns, SLOTS, "bench-prune")
        self._tasks = [
            asyncio.create_task(self.client.run(10**12)),
            asyncio.create_task(self._feed()),
            asyncio.create_task(self._sample()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _feed(self) -> None:
        created = 0
        while True:
            if created - self.client.done < FEED_AHEAD:
                await make_jobs(self.channel, self.ns, self.def_id, FEED_DAG_JOBS, [])
                created += FEED_DAG_JOBS
                continue
            self.client.acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.client.acked.wait(), 1.0)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.samples.append((time.perf_counter(), self.client.done))

    def mark(self) -> tuple[float, int]:
        return time.perf_counter(), self.client.done


@dataclass
class Phase:
    name: str
    start: tuple[float, int]
    end: tuple[float, int]
    per_second: list[float]

    @property
    def seconds(self) -> float:
        return self.end[0] - self.start[0]

    @property
    def rate(self) -> float:
        return (self.end[1] - self.start[1]) / self.seconds

    def line(self) -> str:
        slowest = f", slowest second {min(self.per_second):,.0f}" if self.per_second else ""
        return f"{self.name}: {self.rate:,.0f} jobs/s over {self.seconds:.1f}s{slowest}"


def phase(load: Load, name: str, start: tuple[float, int]) -> Phase:
    end = load.mark()
    inside = [s for s in load.samples if start[0] <= s[0] <= end[0]]
    per_second = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(inside)]
    return Phase(name, start, end, per_second)


async def no_pruning(load: Load, seconds: float) -> Phase:
    start = load.mark()
    await asyncio.sleep(seconds)
    return phase(load, "(a) no pruning", start)


async def oldest_backlog_job(url: str) -> str:
    """The standalone job the loop's first batch moves (the oldest)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "select job_id from jobs where dag_id is null"
            " and state in ('SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED') order by end_time limit 1"
        )
        row = await cur.fetchone()
        assert row is not None
        return str(row[0])


async def in_history(url: str, job_id: str) -> bool:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("select exists (select 1 from jobs_history where job_id = %s)", (job_id,))
        row = await cur.fetchone()
        assert row is not None
        return bool(row[0])


async def pruning(load: Load, url: str, first: str) -> tuple[Phase, float]:
    """(b): from the loop's first batch (the oldest job in history) until no
    old work is left; also returns how long the loop took to start."""
    # The server's loop announces nothing to this process: look at the
    # database (indexed lookups) ten times a second.
    committed = time.perf_counter()
    await until(lambda: in_history(url, first))
    start = load.mark()
    await until(lambda: nothing_old_left(url))
    return phase(load, "(b) while pruning", start), start[0] - committed


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    while True:
        if await check():
            return
        await asyncio.sleep(0.1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=1_000_000, help="finished jobs to prune per round")
    parser.add_argument("--dag-size", type=int, default=10, help="jobs per backlog DAG")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of each (a) phase")
    parser.add_argument("--rounds", type=int, default=1, help="backlogs, each between two (a) phases")
    args = parser.parse_args()
    async with (
        database() as url,
        server_process(url, "--retention", "7d", "--retention-interval", "1s", "--log-level", "INFO") as (
            _,
            channel,
        ),
    ):
        def_id = await setup(channel, "prune")
        load = Load(channel, "prune", def_id)
        await load.start()
        try:
            await asyncio.sleep(5)  # warm-up: the first DAGs, the stream
            phases = [await no_pruning(load, args.window)]
            print(phases[-1].line(), flush=True)
            prune_s: list[float] = []
            for n in range(args.rounds):
                t0 = time.perf_counter()
                dags, edges = await insert_backlog(url, "prune", def_id, args.backlog, args.dag_size, f"r{n}")
                print(
                    f"backlog {n + 1}: {args.backlog:,} jobs ({dags:,} DAGs, {edges:,} edges) inserted"
                    f" in {time.perf_counter() - t0:.1f}s",
                    flush=True,
                )
                during, waited = await pruning(load, url, await oldest_backlog_job(url))
                phases.append(during)
                prune_s.append(during.seconds)
                print(f"the loop's first batch committed {waited:.1f}s after the backlog", flush=True)
                print(phases[-1].line(), flush=True)
                phases.append(await no_pruning(load, args.window))
                print(phases[-1].line(), flush=True)
        finally:
            await load.stop()
        moved = await history_jobs(url)
    a = [p for p in phases if p.name.startswith("(a)")]
    b = [p for p in phases if p.name.startswith("(b)")]
    a_rate = statistics.mean(p.rate for p in a)
    b_rate = statistics.mean(p.rate for p in b)
    a_slowest = min((min(p.per_second) for p in a if p.per_second), default=float("nan"))
    b_slowest = min((min(p.per_second) for p in b if p.per_second), default=float("nan"))
    print()
    print(f"(a) dispatch without pruning: {a_rate:,.0f} jobs/s (slowest second {a_slowest:,.0f})")
    print(f"(b) dispatch while pruning:   {b_rate:,.0f} jobs/s (slowest second {b_slowest:,.0f})")
    print(f"ratio (b) / (a): {b_rate / a_rate:.2f}")
    for n, seconds in enumerate(prune_s, start=1):
        print(
            f"backlog {n}: {args.backlog:,} jobs pruned in {seconds:.1f}s from the first batch"
            f" ({args.backlog / seconds:,.0f} jobs/s)"
        )
    print(f"jobs in history at the end: {moved:,}")


if __name__ == "__main__":
    asyncio.run(main())
