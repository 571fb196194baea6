"""/metrics of an in-process server, scraped over real HTTP while a raw
Dequeue stream runs jobs through it."""

from __future__ import annotations

import uuid

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from chronosched.v1 import dag_pb2, worker_pb2, worker_pb2_grpc
from tests.support import grpc_helpers
from tests.support.builders import dag, definition, fails, namespace
from tests.support.server import Stubs, serving
from tests.support.waiting import poll

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

DEQUEUE = "/chronosched.v1.WorkerService/Dequeue"
GET_DAG = "/chronosched.v1.DagService/GetDag"
CREATE_NAMESPACE = "/chronosched.v1.NamespaceService/CreateNamespace"


async def scrape(api: Stubs) -> tuple[Samples, dict[str, str]]:
    """The server's /metrics (see `scrape_port`)."""
    assert api.server.metrics_port is not None
    return await scrape_port(api.server.metrics_port)


async def scrape_port(port: int) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, labels), and each family's type, parsed from
    the exposition text at 127.0.0.1:`port`/metrics as Prometheus reads it."""
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(resp.text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_follow_jobs_workers_and_calls(database_url: str) -> None:
    async with serving(database_url, metrics_port=0) as api:
        ns = await namespace(api, "team-m")
        other = await namespace(api, "team-n")
        d = await definition(api, ns)
        d_other = await definition(api, other, kind="other")
        await dag(api, ns, d.def_id, "abcd", [])
        await dag(api, other, d_other.def_id, "x", [])

        first, types = await scrape(api)
        assert types["chronosched_jobs_started"] == "counter"
        assert types["chronosched_connected_workers"] == "gauge"
        assert types["chronosched_frontier_jobs"] == "gauge"
        assert types["chronosched_dispatch_cycle_seconds"] == "histogram"
        assert types["chronosched_rpc_duration_seconds"] == "histogram"
        assert types["chronosched_db_pool_connections"] == "gauge"
        assert value(first, "chronosched_frontier_jobs", namespace=ns, kind="noop") == 4
        assert value(first, "chronosched_frontier_jobs", namespace=other, kind="other") == 1
        assert value(first, "chronosched_connected_workers") == 0
        assert value(first, "chronosched_db_pool_connections", state="idle") >= 1
        assert value(first, "chronosched_rpc_requests_total", method=CREATE_NAMESPACE, code="OK") == 2

        await fails(
            api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=str(uuid.uuid4()))),
            grpc.StatusCode.NOT_FOUND,
        )

        worker = grpc_helpers.RawWorker(
            worker_pb2_grpc.WorkerServiceStub(api.channel),
            worker_id="w1",
            namespaces=[ns],
            kinds=["noop"],
            slots=4,
        )
        await worker.start()
        jobs = [(await worker.next("assignment")).job for _ in range(4)]
        during, _ = await scrape(api)
        assert value(during, "chronosched_connected_workers") == 1
        assert value(during, "chronosched_free_slots") == 0
        batch = worker.results([(job.job_id, job.attempt, {"ok": 1}) for job in jobs[:3]])
        failed = batch.results.results.add(
            job=worker_pb2.JobRef(job_id=jobs[3].job_id, attempt=jobs[3].attempt)
        )
        failed.error, failed.non_retryable = "boom", True
        await worker.call.write(batch)
        for _ in jobs:
            assert (await worker.next("ack")).accepted
        third = jobs[2]
        # A result for an attempt the worker never held: refused as stale.
        await worker.send_result(third.job_id, third.attempt + 5, {})
        assert not (await worker.next("ack")).accepted

        after, _ = await scrape(api)
        assert value(after, "chronosched_jobs_started_total", namespace=ns, kind="noop") == 4
        assert value(after, "chronosched_jobs_started_total", namespace=other, kind="other") == 0
        assert (
            value(after, "chronosched_jobs_finished_total", namespace=ns, kind="noop", outcome="succeeded")
            == 3
        )
        assert (
            value(after, "chronosched_jobs_finished_total", namespace=ns, kind="noop", outcome="failed") == 1
        )
        assert value(after, "chronosched_stale_results_total") == 1
        assert value(after, "chronosched_dispatch_cycle_seconds_count") >= 3
        assert value(after, "chronosched_dispatch_batch_size_sum") == 5
        assert value(after, "chronosched_rpc_requests_total", method=GET_DAG, code="NOT_FOUND") == 1
        assert value(after, "chronosched_rpc_duration_seconds_count", method=GET_DAG) == 1
        assert value(after, "chronosched_connected_workers") == 1
        assert value(after, "chronosched_free_slots") == 4

        await worker.close()

        last: Samples = {}

        async def gone() -> bool:
            nonlocal last
            last, _ = await scrape(api)
            # Counted once when it ends: CANCELLED when the cancel reaches the
            # handler first, OK when its request stream ends first.
            ended = sum(
                value(last, "chronosched_rpc_requests_total", method=DEQUEUE, code=code)
                for code in ("CANCELLED", "OK")
            )
            return value(last, "chronosched_connected_workers") == 0 and ended == 1

        def seen() -> str:
            dequeue = {k: v for k, v in last.items() if ("method", DEQUEUE) in k[1]}
            return (
                f"connected workers {value(last, 'chronosched_connected_workers')}; Dequeue series {dequeue}"
            )

        await poll(gone, within=10.0, what="the worker's stream to end and be counted", detail=seen)


async def test_metrics_are_off_by_default(database_url: str) -> None:
    async with serving(database_url) as api:
        assert api.server.metrics_port is None
