"""Create one big DAG in one call and compare with the raw baseline.

Baseline (same run, same PostgreSQL): the pure-Python cycle check plus COPY of
the same job and edge rows into scratch tables. Measured: CreateDag over gRPC
against `chronosched server` running as its own process (client serialisation
+ upload + validation + storage) and, with --rest, the same JSON body through
the real Envoy transcoder.

    python -m bench.big_dag [--jobs 100000] [--edges-per-job 2] [--rest]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid

import psycopg

from bench.common import database, server_process
from chronosched.v1 import (
    dag_pb2,
    dag_pb2_grpc,
    definition_pb2,
    definition_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
)
from chronosched_server.graph import find_cycle


def topology(n: int, per_job: int, seed: int = 7) -> list[tuple[int, int]]:
    """A random layered DAG: each job after the first few gets `per_job` earlier parents."""
    rng = random.Random(seed)
    edges: set[tuple[int, int]] = set()
    for child in range(1, n):
        for _ in range(per_job):
            edges.add((rng.randrange(max(0, child - 1000), child), child))
    return sorted(edges, key=lambda e: e[1])


async def baseline(url: str, n: int, edges: list[tuple[int, int]]) -> float:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    t0 = time.perf_counter()
    assert find_cycle(n, edges) is None
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute("create table b_jobs (job_id uuid primary key, key text, payload jsonb)")
        await conn.execute("create table b_edges (p uuid, c uuid, primary key (p, c))")
        async with conn.cursor() as cur:
            async with cur.copy("copy b_jobs from stdin") as copy:
                await copy.write("".join(f"{ids[i]}\tj{i}\t{{}}\n" for i in range(n)).encode())
            async with cur.copy("copy b_edges from stdin") as copy:
                await copy.write("".join(f"{ids[p]}\t{ids[c]}\n" for p, c in edges).encode())
        await conn.commit()
    return time.perf_counter() - t0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--edges-per-job", type=int, default=2)
    parser.add_argument("--rest", action="store_true", help="also through Envoy (needs the envoy binary)")
    args = parser.parse_args()
    n = args.jobs
    edges = topology(n, args.edges_per_job)
    print(f"DAG: {n} jobs, {len(edges)} edges")
    async with database() as url, server_process(url) as (port, channel):
        base = await baseline(url, n, edges)
        print(f"baseline cycle check + COPY: {base:.2f} s")
        await namespace_pb2_grpc.NamespaceServiceStub(channel).CreateNamespace(
            namespace_pb2.CreateNamespaceRequest(namespace_id="bench")
        )
        d = await definition_pb2_grpc.DefinitionServiceStub(channel).CreateDefinition(
            definition_pb2.CreateDefinitionRequest(namespace_id="bench", name="noop", kind="noop")
        )
        t0 = time.perf_counter()
        req = dag_pb2.CreateDagRequest(
            namespace_id="bench",
            name="big",
            jobs=[dag_pb2.JobSpec(key=f"j{i}", def_id=d.def_id) for i in range(n)],
            dependencies=[dag_pb2.DagEdge(parent=f"j{p}", child=f"j{c}") for p, c in edges],
            start=True,
        )
        built = time.perf_counter() - t0
        t1 = time.perf_counter()
        dag = await dag_pb2_grpc.DagServiceStub(channel).CreateDag(req, timeout=120)
        grpc_s = time.perf_counter() - t1
        print(
            f"gRPC CreateDag: {grpc_s:.2f} s (+{built:.2f} s building the request); "
            f"{grpc_s / base:.2f}x baseline; state={dag_pb2.Dag.State.Name(dag.state)} jobs={dag.job_count}"
        )
        if args.rest:
            from bench.rest import create_dag_rest

            body = {
                "name": "big-rest",
                "jobs": [{"key": f"j{i}", "def_id": d.def_id} for i in range(n)],
                "dependencies": [{"parent": f"j{p}", "child": f"j{c}"} for p, c in edges],
                "start": True,
            }
            raw = json.dumps(body).encode()
            rest_s, reply = await create_dag_rest(port, "bench", raw)
            print(
                f"REST CreateDag through Envoy ({len(raw) / 1e6:.1f} MB body): {rest_s:.2f} s; "
                f"{rest_s / base:.2f}x baseline; state={reply.get('state')} jobs={reply.get('job_count')}"
            )


if __name__ == "__main__":
    asyncio.run(main())
