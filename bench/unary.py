"""The unary calls people put on their hot path, against one plain insert.

Each call is made one at a time from one client (so its latency is the
server's, not a queue's) on a `chronosched server` process of its own:
Tick, a one-job CreateDag (start=true), each also with a request_id (as
the Python client sends every create), CompleteJob, FailJob (a retry),
GetJob and a 50-job ListJobs page. The baseline, measured in the same run on
the same PostgreSQL, is one `insert ... ; commit` of a JSON row from a
psycopg connection in this process: the least a durable enqueue can cost;
beside it, a gRPC health check shows what the RPC alone costs.
Rounds interleave the calls (each round measures every one in turn), and the
table gives medians over all samples, p99, and writing transactions
(durable commits) per call.

    python -m bench.unary [--calls 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import database, server_process
from bench.throughput import pct, setup
from chronosched.v1 import dag_pb2, dag_pb2_grpc, definition_pb2, definition_pb2_grpc, job_pb2, job_pb2_grpc

NS = "unary"

Call = Callable[[], Awaitable[Any]]


class Calls:
    """Every measured call, each making what it needs on the way."""

    def __init__(self, channel: grpc.aio.Channel, url: str, def_id: str, retry_def_id: str) -> None:
        self.url = url
        self.defs = definition_pb2_grpc.DefinitionServiceStub(channel)
        self.dags = dag_pb2_grpc.DagServiceStub(channel)
        self.jobs = job_pb2_grpc.JobServiceStub(channel)
        # grpc_health ships no type stubs for its client.
        self.health_stub: Any = health_pb2_grpc.HealthStub(channel)
        self.def_id = def_id
        self.retry_def_id = retry_def_id
        self.ready: list[str] = []
        self.retryable: list[str] = []
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def tick(self) -> None:
        job = await self.defs.Tick(definition_pb2.TickRequest(namespace_id=NS, def_id=self.def_id))
        self.ready.append(job.job_id)

    async def tick_idempotent(self) -> None:
        # As the Python client sends it: every create carries a request_id.
        await self.defs.Tick(
            definition_pb2.TickRequest(namespace_id=NS, def_id=self.def_id, request_id=str(uuid.uuid4()))
        )

    async def create_dag(self) -> None:
        await self.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=NS, jobs=[dag_pb2.JobSpec(key="only", def_id=self.def_id)], start=True
            )
        )

    async def create_dag_idempotent(self) -> None:
        await self.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=NS,
                jobs=[dag_pb2.JobSpec(key="only", def_id=self.def_id)],
                start=True,
                request_id=str(uuid.uuid4()),
            )
        )

    async def complete(self) -> None:
        await self.jobs.CompleteJob(job_pb2.CompleteJobRequest(namespace_id=NS, job_id=self.ready.pop()))

    async def fail(self) -> None:
        await self.jobs.FailJob(
            job_pb2.FailJobRequest(namespace_id=NS, job_id=self.retryable.pop(), error="bench")
        )

    async def get(self) -> None:
        await self.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=NS, job_id=self.ready[-1]))

    async def list_page(self) -> None:
        await self.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=NS, page_size=50))

    async def health(self) -> None:
        await self.health_stub.Check(health_pb2.HealthCheckRequest())

    async def insert(self) -> None:
        assert self.conn is not None
        await self.conn.execute("insert into bench_plain (payload) values ('{}')")

    async def prepare(self, n: int) -> None:
        """Jobs for the calls that consume one: complete takes Tick's, fail
        takes jobs of a definition with retries left."""
        for _ in range(n):
            job = await self.defs.Tick(definition_pb2.TickRequest(namespace_id=NS, def_id=self.retry_def_id))
            self.retryable.append(job.job_id)
        for _ in range(n):
            await self.tick()


async def next_xid(conn: psycopg.AsyncConnection[Any]) -> int:
    """The next transaction id PostgreSQL will hand out: only writing
    transactions take one, so the difference counts durable commits (the
    commit counter of pg_stat_database is flushed up to seconds late)."""
    cur = await conn.execute("select pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def sample(call: Call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    async with database() as url, server_process(url) as (_, channel):
        def_id = await setup(channel, NS)
        retry = await definition_pb2_grpc.DefinitionServiceStub(channel).CreateDefinition(
            definition_pb2.CreateDefinitionRequest(namespace_id=NS, name="retry", kind="noop", max_attempts=2)
        )
        calls = Calls(channel, url, def_id, retry.def_id)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("create table bench_plain (id bigserial primary key, payload jsonb not null)")
            calls.conn = conn
            measured: dict[str, Call] = {
                "insert + commit (baseline)": calls.insert,
                "gRPC call, no database": calls.health,
                "Tick": calls.tick,
                "Tick, request_id": calls.tick_idempotent,
                "CreateDag, 1 job, start": calls.create_dag,
                "CreateDag, ..., request_id": calls.create_dag_idempotent,
                "CompleteJob": calls.complete,
                "FailJob (a retry)": calls.fail,
                "GetJob": calls.get,
                "ListJobs, 50 a page": calls.list_page,
            }
            samples: dict[str, list[float]] = {name: [] for name in measured}
            commit_counts: dict[str, list[float]] = {name: [] for name in measured}
            for _ in range(args.rounds):
                await calls.prepare(args.calls)
                for name, call in measured.items():
                    before = await next_xid(conn)
                    samples[name] += await sample(call, args.calls)
                    commit_counts[name].append((await next_xid(conn) - before) / args.calls)
    base = statistics.median(samples["insert + commit (baseline)"])
    print(f"{args.calls} calls of each kind x {args.rounds} rounds, one at a time, interleaved")
    print(f"{'call':<28} {'p50 ms':>8} {'p99 ms':>8} {'x baseline':>11} {'commits/call':>13}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(
            f"{name:<28} {p50:8.2f} {pct(values, 0.99):8.2f} {p50 / base:10.1f}x "
            f"{statistics.median(commit_counts[name]):13.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
