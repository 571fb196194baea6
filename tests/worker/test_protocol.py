"""The worker against a REAL chronosched server (in-process, fresh database):
jobs are created through the public API, run by an in-process Worker over
Dequeue, and their end states read back with JobService.GetJob."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2, job_pb2_grpc
from chronosched_server.app import Server
from chronosched_server.config import Config
from chronosched_worker import JobContext, NonRetryable, Worker
from tests.support.builders import dag, dag_jobs, definition, namespace
from tests.support.grpc_helpers import seconds, struct
from tests.support.server import Stubs
from tests.support.waiting import poll
from tests.support.worker import Gates, running

pytestmark = pytest.mark.timeout(120)

J = job_pb2.Job
TERMINAL = {J.STATE_SUCCEEDED, J.STATE_FAILED, J.STATE_CANCELLED, J.STATE_SKIPPED}
_ids = itertools.count()


async def tick(api: Stubs, ns: str, def_id: str, **payload: Any) -> str:
    job = await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=ns, def_id=def_id, payload=struct(payload))
    )
    return job.job_id


async def finished(jobs: job_pb2_grpc.JobServiceAsyncStub, ns: str, job_id: str, within: float = 30) -> J:
    """Poll GetJob until the job is terminal; the caller asserts which state."""
    last: list[J] = []

    async def check() -> J | None:
        job = await jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=job_id))
        last[:] = [job]
        return job if job.state in TERMINAL else None

    return await poll(
        check,
        within=within,
        what=f"job {job_id} to finish",
        detail=lambda: f"still {J.State.Name(last[0].state)}" if last else "",
    )


def make_worker(port: int, ns: str, **kwargs: Any) -> Worker:
    return Worker(f"127.0.0.1:{port}", namespaces=[ns], worker_id=f"it-{next(_ids)}", **kwargs)


async def test_worker_runs_ticked_jobs_to_success(api: Stubs) -> None:
    ns = await namespace(api)
    echo_def = await definition(api, ns, name="echo", kind="echo")
    calls: list[tuple[str, int]] = []
    worker = make_worker(api.server.port, ns, concurrency=4)

    @worker.handler("echo")
    async def echo(ctx: JobContext) -> dict[str, Any]:
        calls.append((ctx.job_id, ctx.attempt))
        assert (ctx.namespace_id, ctx.def_id, ctx.kind, ctx.dag_id) == (ns, echo_def.def_id, "echo", "")
        return {"i": ctx.payload["i"], "attempt": ctx.attempt}

    job_ids = [await tick(api, ns, echo_def.def_id, i=i) for i in range(20)]
    async with running(worker):
        jobs = [await finished(api.jobs, ns, job_id) for job_id in job_ids]
    assert [J.State.Name(j.state) for j in jobs] == ["STATE_SUCCEEDED"] * 20
    assert [dict(j.result) for j in jobs] == [{"i": i, "attempt": 1} for i in range(20)]
    assert [j.attempt for j in jobs] == [1] * 20
    assert sorted(calls) == sorted((job_id, 1) for job_id in job_ids)  # each ran exactly once


async def test_failures_retry_and_non_retryable_fails_at_once(api: Stubs) -> None:
    ns = await namespace(api)
    retry = {"max_attempts": 2, "backoff_initial": seconds(0)}
    flaky_def = await definition(api, ns, name="flaky", kind="flaky", **retry)
    refuse_def = await definition(api, ns, name="refuse", kind="refuse", **retry)
    broken_def = await definition(api, ns, name="broken", kind="broken", **retry)
    worker = make_worker(api.server.port, ns)

    @worker.handler("flaky")
    def flaky(ctx: JobContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise ValueError("first try")
        return {"ok": True}

    @worker.handler("refuse")
    async def refuse(ctx: JobContext) -> None:
        raise NonRetryable("bad input")

    @worker.handler("broken")
    async def broken(ctx: JobContext) -> None:
        raise RuntimeError(f"boom on attempt {ctx.attempt}")

    flaky_id = await tick(api, ns, flaky_def.def_id)
    refuse_id = await tick(api, ns, refuse_def.def_id)
    broken_id = await tick(api, ns, broken_def.def_id)
    async with running(worker):
        flaky_job = await finished(api.jobs, ns, flaky_id)
        refused_job = await finished(api.jobs, ns, refuse_id)
        broken_job = await finished(api.jobs, ns, broken_id)
    assert (flaky_job.state, flaky_job.attempt, dict(flaky_job.result)) == (
        J.STATE_SUCCEEDED,
        2,
        {"ok": True},
    )
    assert (refused_job.state, refused_job.attempt, refused_job.error) == (J.STATE_FAILED, 1, "bad input")
    assert (broken_job.state, broken_job.attempt, broken_job.error) == (
        J.STATE_FAILED,
        2,
        "RuntimeError: boom on attempt 2",
    )


async def test_execution_timeout_of_the_definition_stops_the_handler(api: Stubs) -> None:
    ns = await namespace(api)
    slow_def = await definition(
        api, ns, name="slow", kind="gate", max_attempts=1, execution_timeout=seconds(1)
    )
    gates = Gates()
    worker = make_worker(api.server.port, ns)
    worker.add_handler("gate", gates)
    job_id = await tick(api, ns, slow_def.def_id)
    async with running(worker):
        job = await finished(api.jobs, ns, job_id)
    assert (job.state, job.attempt, job.error) == (J.STATE_FAILED, 1, "execution timeout after 1s")
    assert gates.cancelled == {job_id: "execution timeout after 1s"}


async def test_cancelling_the_dag_cancels_the_running_handler(api: Stubs) -> None:
    ns = await namespace(api)
    gate_def = await definition(api, ns, name="gate", kind="gate")
    echo_def = await definition(api, ns, name="echo", kind="echo")
    gates = Gates()
    worker = make_worker(api.server.port, ns)
    worker.add_handler("gate", gates)

    @worker.handler("echo")
    async def echo(ctx: JobContext) -> dict[str, Any]:
        return {"after": True}

    created = await dag(api, ns, gate_def.def_id, ["only"], [])
    job_id = (await dag_jobs(api, ns, created.dag_id))["only"].job_id
    async with running(worker):
        await gates.wait_started(job_id)
        await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=created.dag_id))
        await asyncio.wait_for(gates.contexts[job_id].cancelled.wait(), 10)
        # The worker carries on serving after the cancel.
        after = await finished(api.jobs, ns, await tick(api, ns, echo_def.def_id))
    job = await finished(api.jobs, ns, job_id)
    assert job.state == J.STATE_CANCELLED
    assert gates.cancelled == {job_id: "DAG cancelled"}  # the server's CancelJob.reason
    assert (after.state, dict(after.result)) == (J.STATE_SUCCEEDED, {"after": True})


async def test_graceful_shutdown_finishes_and_reports_the_running_job(api: Stubs) -> None:
    ns = await namespace(api)
    gate_def = await definition(api, ns, name="gate", kind="gate")
    gates = Gates()
    worker = make_worker(api.server.port, ns, grace_s=30)
    worker.add_handler("gate", gates)
    job_id = await tick(api, ns, gate_def.def_id)
    async with running(worker) as (stop, task):
        await gates.wait_started(job_id)
        stop.set()
        gates.open(job_id)
        await asyncio.wait_for(task, 15)
    job = await finished(api.jobs, ns, job_id, within=5)
    assert (job.state, job.attempt, dict(job.result)) == (J.STATE_SUCCEEDED, 1, {"gated": job_id})
    assert gates.cancelled == {}


@pytest.fixture
async def restartable(database_url: str) -> AsyncIterator[list[Server]]:
    """Servers started by the test on one port; all stopped at the end."""
    servers: list[Server] = []
    yield servers
    for server in servers:
        await server.stop(grace=0)


async def test_running_job_survives_a_server_restart(database_url: str, restartable: list[Server]) -> None:
    first = Server(Config(database_url=database_url, grpc_port=0))
    port = await first.start()
    restartable.append(first)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stubs = Stubs.over(channel, first)
        ns = await namespace(stubs)
        gate_def = await definition(stubs, ns, name="gate", kind="gate")
        job_id = await tick(stubs, ns, gate_def.def_id)
        gates = Gates()
        worker = make_worker(port, ns)
        worker.add_handler("gate", gates)
        async with running(worker):
            await gates.wait_started(job_id)
            restartable.remove(first)
            await first.stop(grace=0)
            second = Server(Config(database_url=database_url, grpc_port=port))
            await second.start()
            restartable.append(second)
            # The worker keeps the job through the outage and reports it to
            # the new server, which accepts it: the lease never lapsed.
            gates.open(job_id)
            job = await finished(stubs.jobs, ns, job_id)
    assert (job.state, job.attempt, dict(job.result)) == (J.STATE_SUCCEEDED, 1, {"gated": job_id})
    assert gates.cancelled == {}
