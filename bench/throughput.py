"""End-to-end throughput against the raw-SQL baseline, in one run.

(a) baseline: one job per transaction, claim (FOR UPDATE SKIP LOCKED) +
    complete, 4 client connections, on a scratch table in the same database;
(b) chronosched: no-op jobs (one big started DAG without edges) pushed over
    Dequeue to a stream client that answers at once, results applied by the
    server's group commit, with 1, 4 and 16 slots; then the same with the
    SDK's Worker and an async no-op handler at 16 slots. The server runs as its
    own process; the stream client and the Worker run here.

Also printed: database commits per job, frontier latency (parent result sent
-> child assignment received by an idle worker) and the cost of completing a
job in a 100,000-job DAG against a 10-job DAG.

    python -m bench.throughput [--jobs 20000] [--minutes 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import time
from typing import Any

import grpc
import psycopg

from bench.common import database, server_process
from chronosched.v1 import (
    dag_pb2,
    dag_pb2_grpc,
    definition_pb2,
    definition_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from chronosched_worker import JobContext, Worker


async def baseline(url: str, jobs: int, clients: int = 4) -> float:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "create table raw_queue (id bigserial primary key, state text not null, payload jsonb)"
            " with (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 500)"
        )
        await conn.execute("create index raw_queue_ready on raw_queue (id) where state = 'ready'")
        await conn.execute(
            "insert into raw_queue (state, payload) select 'ready', '{}' from generate_series(1, %s::int)",
            (jobs,),
        )

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

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    assert sum(counts) == jobs
    return jobs / elapsed


async def commits(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "select xact_commit from pg_stat_database where datname = current_database()"
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


class StreamClient:
    """A worker that answers every assignment at once with success."""

    def __init__(self, channel: grpc.aio.Channel, ns: str, slots: int, worker_id: str, lookahead: int = 0):
        self.call = worker_pb2_grpc.WorkerServiceStub(channel).Dequeue()
        self.sub = worker_pb2.Subscribe(
            worker_id=worker_id, namespaces=[ns], kinds=["noop"], slots=slots, lookahead=lookahead
        )
        self.done = 0
        self.acked = asyncio.Event()  # set on every ack, for waiters on `done`
        self.assigned: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self.auto = True

    async def run(self, stop_after: int) -> None:
        await self.call.write(worker_pb2.DequeueRequest(subscribe=self.sub))
        acks = 0
        async for msg in self.call:
            now = time.perf_counter()
            results = []
            for assignment in msg.assignments:
                job = assignment.job
                if self.auto:
                    ref = worker_pb2.JobRef(job_id=job.job_id, attempt=job.attempt)
                    results.append(worker_pb2.JobResult(job=ref, success=True))
                else:
                    await self.assigned.put((now, job))
            if results:
                # Everything that arrived together is answered together, as
                # the SDK's writer does.
                await self.call.write(
                    worker_pb2.DequeueRequest(results=worker_pb2.JobResults(results=results))
                )
            acks += len(msg.acks)
            self.done += len(msg.acks)
            if msg.acks:
                self.acked.set()
            if acks >= stop_after:
                break
        self.call.cancel()


async def setup(channel: grpc.aio.Channel, ns: str) -> str:
    await namespace_pb2_grpc.NamespaceServiceStub(channel).CreateNamespace(
        namespace_pb2.CreateNamespaceRequest(namespace_id=ns)
    )
    d = await definition_pb2_grpc.DefinitionServiceStub(channel).CreateDefinition(
        definition_pb2.CreateDefinitionRequest(namespace_id=ns, name="noop", kind="noop")
    )
    return d.def_id


async def make_jobs(
    channel: grpc.aio.Channel, ns: str, def_id: str, n: int, edges: list[tuple[int, int]]
) -> Any:
    return await dag_pb2_grpc.DagServiceStub(channel).CreateDag(
        dag_pb2.CreateDagRequest(
            namespace_id=ns,
            jobs=[dag_pb2.JobSpec(key=f"j{i}", def_id=def_id) for i in range(n)],
            dependencies=[dag_pb2.DagEdge(parent=f"j{p}", child=f"j{c}") for p, c in edges],
            start=True,
        ),
        timeout=300,
    )


async def e2e(
    channel: grpc.aio.Channel, url: str, ns: str, def_id: str, jobs: int, slots: int
) -> tuple[float, float]:
    await make_jobs(channel, ns, def_id, jobs, [])
    before = await commits(url)
    client = StreamClient(channel, ns, slots, f"bench-{slots}")
    t0 = time.perf_counter()
    await client.run(jobs)
    elapsed = time.perf_counter() - t0
    after = await commits(url)
    return jobs / elapsed, (after - before) / jobs


async def sdk_e2e(
    port: int, channel: grpc.aio.Channel, ns: str, def_id: str, jobs: int, slots: int, log_jobs: bool = False
) -> float:
    """(b) with the SDK's Worker and an async no-op handler instead of the raw
    stream client: the path a user's worker takes. Timed until the worker,
    stopped after its last job, has every result acknowledged."""
    dag = await make_jobs(channel, ns, def_id, jobs, [])
    if not log_jobs:
        # The SDK writes two INFO lines per job to stderr when the application
        # configured no logging (its default output); a production worker
        # configures its own, and the peers log nothing per job. --sdk-log
        # measures the default instead.
        logging.getLogger("chronosched.worker").setLevel(logging.WARNING)
    worker = Worker(f"127.0.0.1:{port}", namespaces=[ns], concurrency=slots, worker_id="bench-sdk")
    handled = 0
    all_handled = asyncio.Event()

    async def noop(ctx: JobContext) -> dict[str, Any]:
        nonlocal handled
        handled += 1
        if handled == jobs:
            all_handled.set()
        return {}

    worker.add_handler("noop", noop)
    stop = asyncio.Event()
    t0 = time.perf_counter()
    running = asyncio.create_task(worker.run(stop))
    await all_handled.wait()
    # Stopping drains: the worker returns once its results are acknowledged.
    stop.set()
    await running
    elapsed = time.perf_counter() - t0
    final = await dag_pb2_grpc.DagServiceStub(channel).GetDag(
        dag_pb2.GetDagRequest(namespace_id=ns, dag_id=dag.dag_id)
    )
    assert final.state == dag_pb2.Dag.STATE_SUCCEEDED, final
    return jobs / elapsed


async def frontier_latency(channel: grpc.aio.Channel, ns: str, def_id: str, links: int) -> list[float]:
    await make_jobs(channel, ns, def_id, links + 1, [(i, i + 1) for i in range(links)])
    client = StreamClient(channel, ns, 1, "bench-latency")
    client.auto = False
    runner = asyncio.create_task(client.run(links + 1))
    samples: list[float] = []
    _, job = await client.assigned.get()
    for _ in range(links):
        ref = worker_pb2.JobRef(job_id=job.job_id, attempt=job.attempt)
        sent = time.perf_counter()
        result = worker_pb2.JobResult(job=ref, success=True)
        await client.call.write(worker_pb2.DequeueRequest(results=worker_pb2.JobResults(results=[result])))
        arrived, job = await client.assigned.get()
        samples.append(arrived - sent)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    return samples


async def completion_cost(channel: grpc.aio.Channel, ns: str, def_id: str, size: int, samples: int) -> float:
    """Median unary CompleteJob latency for roots of `size`-job DAGs (each root
    has 1 child); as many DAGs as it takes to time `samples` completions, so
    both sizes get medians of the same number of samples."""
    half = size // 2
    jobs = job_pb2_grpc.JobServiceStub(channel)
    roots: list[Any] = []
    while len(roots) < samples:
        dag = await make_jobs(channel, ns, def_id, size, [(i, half + i) for i in range(half)])
        listing = await dag_pb2_grpc.DagServiceStub(channel).ListDagJobs(
            dag_pb2.ListDagJobsRequest(
                namespace_id=ns, dag_id=dag.dag_id, state=job_pb2.Job.STATE_READY, page_size=1000
            )
        )
        roots += list(listing.jobs)[: samples - len(roots)]
    took = []
    for job in roots:
        t0 = time.perf_counter()
        await jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=job.job_id, attempt=job.attempt))
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument(
        "--minutes", type=float, default=0.0, help="also run a sustained 16-slot run this long"
    )
    parser.add_argument(
        "--sdk-log", action="store_true", help="leave the SDK Worker's default per-job log lines on"
    )
    args = parser.parse_args()
    async with database() as url, server_process(url) as (port, channel):
        base = await baseline(url, args.jobs)
        print(f"(a) raw SQL claim+complete, 1 job/txn, 4 clients: {base:,.0f} jobs/s")
        for slots in (1, 4, 16):
            ns = f"tp-{slots}"
            def_id = await setup(channel, ns)
            rate, per_job = await e2e(channel, url, ns, def_id, args.jobs, slots)
            print(
                f"(b) chronosched e2e, {slots:2d} slots: {rate:,.0f} jobs/s"
                f" = {rate / base:.2f}x baseline; {per_job:.3f} commits/job"
            )
        def_id = await setup(channel, "sdk")
        rate = await sdk_e2e(port, channel, "sdk", def_id, args.jobs, 16, args.sdk_log)
        logged = " (its default per-job INFO lines on)" if args.sdk_log else ""
        print(
            f"(b) the same via the SDK's Worker{logged}, 16 slots: {rate:,.0f} jobs/s"
            f" = {rate / base:.2f}x baseline"
        )
        def_id = await setup(channel, "latency")
        lat = await frontier_latency(channel, "latency", def_id, 300)
        print(
            f"frontier latency over {len(lat)} links: p50 {pct(lat, 0.5) * 1e3:.1f} ms,"
            f" p99 {pct(lat, 0.99) * 1e3:.1f} ms"
        )
        def_id = await setup(channel, "cost")
        small = await completion_cost(channel, "cost", def_id, 10, 200)
        big = await completion_cost(channel, "cost", def_id, 100_000, 200)
        print(
            f"CompleteJob median: 10-job DAG {small * 1e3:.2f} ms,"
            f" 100,000-job DAG {big * 1e3:.2f} ms; ratio {big / small:.2f}"
        )
        if args.minutes:
            await sustained(channel, url, args.minutes, base)


async def sustained(channel: grpc.aio.Channel, url: str, minutes: float, base: float) -> None:
    """16 slots for `minutes`, the backlog kept between 5,000 and 10,000 READY
    jobs by topping up with 5,000-job DAGs; prints the rate of every minute."""
    ns = "soak"
    def_id = await setup(channel, ns)
    client = StreamClient(channel, ns, 16, "bench-soak")
    runner = asyncio.create_task(client.run(10**12))
    end = time.perf_counter() + minutes * 60
    minute_start, minute_done, rates, created = time.perf_counter(), 0, [], 0
    while time.perf_counter() < end:
        if created - client.done < 10_000:
            await make_jobs(channel, ns, def_id, 5000, [])
            created += 5000
            continue
        client.acked.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.acked.wait(), 1.0)
        now = time.perf_counter()
        if now - minute_start >= 60:
            rates.append((client.done - minute_done) / (now - minute_start))
            print(
                f"  minute {len(rates)}: {rates[-1]:,.0f} jobs/s ({rates[-1] / base:.2f}x baseline)",
                flush=True,
            )
            minute_start, minute_done = now, client.done
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    if len(rates) >= 2:
        print(f"sustained: last minute / first minute = {rates[-1] / rates[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
