"""The AsyncClient against the real in-process server: every method, errors,
pages, retries, deadlines, the token, and the DAG builder with wait/watch."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC

import grpc
import pytest

from chronosched import (
    AlreadyExists,
    AsyncClient,
    DagEvent,
    DagState,
    DeadlineExceeded,
    Dependency,
    FailedPrecondition,
    InvalidArgument,
    JobEvent,
    JobRun,
    JobSpec,
    JobState,
    NotFound,
    RetryPolicy,
    Unavailable,
    WatchEvent,
)
from chronosched.v1 import dag_pb2
from tests.client.conftest import Certificate, Proxy, Running
from tests.client.test_dag_builder import EXPECTED_WATCH, summary

pytestmark = pytest.mark.timeout(60)

NS = "team-a"
READY, SUCCEEDED = JobState.READY, JobState.SUCCEEDED


async def test_every_method_round_trips(server: Running) -> None:
    async with AsyncClient(server.target) as client:
        assert (await client.healthz()).status == "SERVING"
        ns = await client.create_namespace(NS, "demo")
        assert ns.create_time.tzinfo is UTC and await client.get_namespace(NS) == ns
        await client.create_namespace("team-b")
        assert [n.namespace_id async for n in client.list_namespaces()] == [NS, "team-b"]
        assert [n.namespace_id for n in await client.list_namespaces_page(page_size=1)] == [NS]
        await client.delete_namespace("team-b")

        v1 = await client.create_definition(NS, "step", "manual", {"n": 1}, max_attempts=2, backoff_initial=0)
        v2 = await client.create_definition(NS, "step", "manual", cron_spec="@daily")
        assert await client.get_definition(NS, v1.def_id) == v1
        assert [d.version for d in await client.definition_versions(NS, "step")] == [1, 2]
        assert [d.def_id async for d in client.list_definitions(NS, "step")] == [v1.def_id, v2.def_id]
        assert (await client.list_definitions_page(NS, page_size=1)).next_page_token
        assert (await client.resolve_definition(NS, "step")).def_id == v2.def_id
        assert (await client.resolve_definition(NS, "step@1")).def_id == v1.def_id
        assert (await client.get_schedule(NS, "step")).cron_spec == "@daily"
        assert (await client.pause_schedule(NS, "step")).paused
        assert not (await client.resume_schedule(NS, "step")).paused
        assert [f async for f in client.list_fires(NS, v2.def_id)] == []
        assert len(await client.list_fires_page(NS, v2.def_id)) == 0
        ticked = await client.tick(NS, v1.def_id, {"n": 2})
        assert ticked.payload == {"n": 2} and ticked.dag_id is None
        (run,) = await client.enqueue_jobs(NS, [JobRun(v1.def_id, {"n": 3})])
        assert (await client.get_job(NS, run)).payload == {"n": 3}

        dag = await client.create_dag(NS, "built")
        a, b = await client.add_jobs(NS, dag.dag_id, [JobSpec("a", v1.def_id), JobSpec("b", v1.def_id)])
        (c,) = await client.add_jobs(NS, dag.dag_id, [JobSpec("c", v1.def_id)])
        assert await client.add_dependency(NS, dag.dag_id, a.job_id, b.job_id) == Dependency(
            a.job_id, b.job_id
        )
        await client.add_dependencies(NS, dag.dag_id, [(b.job_id, c.job_id)])
        assert {d async for d in client.list_dependencies(NS, dag.dag_id)} == {
            Dependency(a.job_id, b.job_id),
            Dependency(b.job_id, c.job_id),
        }
        assert len(await client.list_dependencies_page(NS, dag.dag_id, page_size=1)) == 1
        assert (await client.start_dag(NS, dag.dag_id)).state is DagState.RUNNING
        assert (await client.get_dag(NS, dag.dag_id)).unfinished_job_count == 3
        assert [j.key async for j in client.list_dag_jobs(NS, dag.dag_id, state=READY)] == ["a"]
        assert [j.key for j in await client.list_dag_jobs_page(NS, dag.dag_id, page_size=2)] == ["a", "b"]
        assert [j.key async for j in client.list_jobs(NS, dag_id=dag.dag_id)] == ["a", "b", "c"]
        assert [j.job_id for j in await client.list_jobs_page(NS, state=READY)] == [
            ticked.job_id,
            run,
            a.job_id,
        ]
        assert (await client.get_job(NS, a.job_id)).state is READY
        done = await client.complete_job(a.job_id, {"rows": 3})
        assert done.state is SUCCEEDED and done.result == {"rows": 3}
        assert (await client.fail_job(b.job_id, "boom")).attempt == 2
        assert (await client.fail_job(b.job_id, "for good", non_retryable=True)).state is JobState.FAILED
        assert [d.dag_id async for d in client.list_dags(NS, state=DagState.FAILED)] == [dag.dag_id]
        assert len(await client.list_dags_page(NS)) == 1

        other = await client.create_dag(NS, "other", [JobSpec("x", v1.def_id)], start=True)
        assert (await client.cancel_dag(NS, other.dag_id)).state is DagState.CANCELLED
        await client.delete_dag(NS, other.dag_id)
        pruned = await client.prune(older_than=0, namespace_id=NS)
        assert (pruned.dags_pruned, pruned.jobs_pruned, pruned.dependencies_pruned) == (1, 3, 2)
        assert (await client.retire_definition(NS, v2.def_id)).is_retired


async def test_errors_map_to_the_same_exceptions(server: Running) -> None:
    async with AsyncClient(server.target) as client:
        await client.create_namespace(NS)
        with pytest.raises(AlreadyExists) as exists:
            await client.create_namespace(NS)
        assert exists.value.reason == "NAMESPACE_EXISTS"
        with pytest.raises(NotFound) as missing:
            await client.get_job(NS, str(uuid.uuid4()))
        assert missing.value.reason == "JOB_NOT_FOUND"
        d = await client.create_definition(NS, "step", "manual")
        with pytest.raises(InvalidArgument) as bad:
            await client.create_dag(NS, "x", [JobSpec("a", d.def_id)], [("a", "nope")])
        assert [(v.field, v.reason) for v in bad.value.violations] == [("dependencies[0].child", "NOT_FOUND")]
        dag = await client.create_dag(NS, "x", [JobSpec("a", d.def_id)], start=True)
        with pytest.raises(FailedPrecondition) as sealed:
            await client.add_jobs(NS, dag.dag_id, [JobSpec("b", d.def_id)])
        assert (
            sealed.value.reason == "DAG_SEALED" and sealed.value.code is grpc.StatusCode.FAILED_PRECONDITION
        )


async def test_a_lost_answer_is_retried_with_the_same_request_id_and_reads_pages(proxy: Proxy) -> None:
    async with AsyncClient(proxy.target, token="t0ken") as client:
        await client.create_namespace(NS)
        d = await client.create_definition(NS, "step", "manual")
        proxy.lose_after["CreateDag"] = 1
        dag = await client.create_dag(NS, "etl", [JobSpec("a", d.def_id)])
        sent = [dag_pb2.CreateDagRequest.FromString(s.request) for s in proxy.calls("CreateDag")]
        assert len(sent) == 2 and sent[0].request_id == sent[1].request_id
        assert [x.dag_id async for x in client.list_dags(NS)] == [dag.dag_id]

        proxy.fail_before["CreateNamespace"] = 1
        with pytest.raises(Unavailable):
            await client.create_namespace("team-b")
        assert len(proxy.calls("CreateNamespace")) == 2  # the first, and this one sent once

        for i in range(4):
            await client.create_dag(NS, f"more-{i}")
        before = len(proxy.calls("ListDags"))
        assert len([x async for x in client.list_dags(NS, page_size=2)]) == 5
        assert len(proxy.calls("ListDags")) - before == 3
    assert {s.authorization for s in proxy.seen} == {"Bearer t0ken"}


async def test_deadlines_and_bounded_retries(proxy: Proxy) -> None:
    async with AsyncClient(proxy.target, timeout=0.3, retry=RetryPolicy(attempts=2)) as client:
        await client.create_namespace(NS)
        proxy.hold["GetNamespace"] = 5.0
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await client.get_namespace(NS)
        assert 0.25 <= time.monotonic() - began < 2.0
        proxy.hold.clear()
        proxy.fail_before["ListNamespaces"] = 5
        with pytest.raises(Unavailable):
            await client.list_namespaces_page()
        assert len(proxy.calls("ListNamespaces")) == 2


async def test_tls(tls_proxy: Proxy, certificate: Certificate) -> None:
    async with AsyncClient(f"localhost:{tls_proxy.port}", token="s3cret", ca=certificate.cert) as client:
        assert (await client.healthz()).status == "SERVING"
    assert [(s.method, s.authorization) for s in tls_proxy.seen] == [("Healthz", "Bearer s3cret")]


async def complete_ready_jobs(client: AsyncClient, dag_id: str) -> None:
    """The outside actor: complete every READY job until cancelled."""
    while True:
        async for job in client.list_dag_jobs(NS, dag_id, state=READY):
            await client.complete_job(job.job_id, {"by": job.key}, attempt=job.attempt)
        await asyncio.sleep(0.02)


async def test_builder_submit_and_wait(server: Running) -> None:
    async with AsyncClient(server.target) as client:
        await client.create_namespace(NS)
        await client.create_definition(NS, "step", "manual")
        dag = client.dag(NS, "etl")
        extract, a, b, load = (dag.job(key, "step") for key in ("extract", "a", "b", "load"))
        extract >> [a, b] >> load
        run = await dag.submit()
        assert await run.edges() == set(dag.edges)
        completer = asyncio.create_task(complete_ready_jobs(client, run.dag_id))
        try:
            result = await run.wait(timeout=20, interval=0.05)
        finally:
            completer.cancel()
            await asyncio.gather(completer, return_exceptions=True)
        assert result.succeeded and result.states == dict.fromkeys(("a", "b", "extract", "load"), SUCCEEDED)
        attached = await client.dag_run(NS, run.dag_id)
        assert attached.dag == result.dag and (await attached.refresh()).is_settled

        unstarted = client.dag(NS)
        unstarted.job("x", "step")
        pending = await unstarted.submit(start=False)
        assert pending.dag.state is DagState.PENDING
        assert (await pending.start()).state is DagState.RUNNING
        assert (await pending.cancel()).state is DagState.CANCELLED
        assert (await pending.wait(timeout=5)).states == {"x": JobState.CANCELLED}
        stuck = client.dag(NS)
        stuck.job("y", "step")
        stuck_run = await stuck.submit()
        with pytest.raises(TimeoutError):
            await stuck_run.wait(timeout=0.1, interval=0.02)
        await pending.delete()
        with pytest.raises(NotFound):
            await pending.refresh()


async def test_watch_yields_each_transition_in_order_and_ends(server: Running) -> None:
    async with AsyncClient(server.target) as client:
        await client.create_namespace(NS)
        await client.create_definition(NS, "step", "manual", max_attempts=2, backoff_initial=0)
        dag = client.dag(NS)
        a, b, c = (dag.job(key, "step") for key in "abc")
        a >> b >> c
        run = await dag.submit()
        events: list[WatchEvent] = []
        async for event in run.watch(interval=0.02):
            events.append(event)
            if isinstance(event, JobEvent) and event.state is READY:
                if event.key == "b" and event.job.attempt == 1:
                    await client.fail_job(event.job.job_id, "flaky", attempt=1)
                else:
                    await client.complete_job(event.job.job_id, attempt=event.job.attempt)
        assert summary(events) == EXPECTED_WATCH
        assert isinstance(events[-1], DagEvent) and events[-1].dag.is_settled


def test_a_client_made_before_the_event_loop_runs_works_inside_it(server: Running) -> None:
    client = AsyncClient(server.target)  # grpc.aio would bind a channel made here to no loop

    async def use() -> str:
        async with client:
            return (await client.healthz()).status

    assert asyncio.run(use()) == "SERVING"
