from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import duration_pb2, struct_pb2

from chronosched.v1 import admin_pb2, dag_pb2, definition_pb2, job_pb2
from tests.support.builders import dag, dag_jobs, definition, fails, namespace
from tests.support.server import Stubs

J = job_pb2.Job
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def result(**values: Any) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


async def test_completion_unlocks_children_once_and_dag_succeeds(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    created = await dag(api, ns, d.def_id, "abc", [("a", "c"), ("b", "c")])
    jobs = await dag_jobs(api, ns, created.dag_id)
    done = await api.jobs.CompleteJob(
        job_pb2.CompleteJobRequest(job_id=jobs["a"].job_id, result=result(rows=3))
    )
    assert done.state == J.STATE_SUCCEEDED and dict(done.result) == {"rows": 3}
    assert (await dag_jobs(api, ns, created.dag_id))["c"].state == J.STATE_PENDING
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs["b"].job_id, attempt=1))
    assert (await dag_jobs(api, ns, created.dag_id))["c"].state == J.STATE_READY
    running = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert running.state == dag_pb2.Dag.STATE_RUNNING and running.unfinished_job_count == 1
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs["c"].job_id))
    finished = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert finished.state == dag_pb2.Dag.STATE_SUCCEEDED and finished.unfinished_job_count == 0
    assert finished.HasField("end_time")


async def test_pending_job_cannot_complete(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    created = await dag(api, ns, d.def_id, "ab", [("a", "b")])
    jobs = await dag_jobs(api, ns, created.dag_id)
    failure = await fails(
        api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs["b"].job_id)), PRECONDITION
    )
    assert failure.reason == "JOB_PENDING"


async def test_duplicate_completions_are_one_transition(api: Stubs, aconn: object) -> None:
    import psycopg

    assert isinstance(aconn, psycopg.AsyncConnection)
    ns = await namespace(api)
    d = await definition(api, ns)
    created = await dag(api, ns, d.def_id, "ab", [("a", "b")])
    a = (await dag_jobs(api, ns, created.dag_id))["a"].job_id
    req = job_pb2.CompleteJobRequest(job_id=a, attempt=1, result=result(ok=True))
    replies = await asyncio.gather(*(api.jobs.CompleteJob(req) for _ in range(5)))
    assert {r.state for r in replies} == {J.STATE_SUCCEEDED}
    assert len({r.end_time.ToNanoseconds() for r in replies}) == 1
    cur = await aconn.execute(
        "select pending_parents, state from jobs where dag_id = %s::uuid and key = 'b'", (created.dag_id,)
    )
    assert await cur.fetchone() == (0, "READY")
    cur = await aconn.execute(
        "select count(*) from jobs where key = 'b' and state = 'READY' and due_time <= now() and kind = %s",
        (d.kind,),
    )
    assert await cur.fetchone() == (1,)
    dag_row = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert dag_row.unfinished_job_count == 1


async def test_fenced_results_and_retry_backoff(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, max_attempts=2, backoff_initial=duration_pb2.Duration(seconds=30))
    created = await dag(api, ns, d.def_id, "ab", [("a", "b")])
    a = (await dag_jobs(api, ns, created.dag_id))["a"]
    retried = await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=a.job_id, attempt=1, error="boom"))
    assert retried.state == J.STATE_READY and retried.attempt == 2 and retried.error == "boom"
    delay = retried.due_time.ToDatetime() - retried.update_time.ToDatetime()
    assert 29 <= delay.total_seconds() <= 31
    stale = await fails(
        api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=a.job_id, attempt=1)), PRECONDITION
    )
    assert stale.reason == "STALE_ATTEMPT"
    assert (await dag_jobs(api, ns, created.dag_id))["a"].state == J.STATE_READY
    failed = await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=a.job_id, attempt=2, error="again"))
    assert failed.state == J.STATE_FAILED and failed.attempt == 2
    again = await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=a.job_id, attempt=2, error="again"))
    assert again.state == J.STATE_FAILED and again.end_time == failed.end_time
    jobs = await dag_jobs(api, ns, created.dag_id)
    assert jobs["b"].state == J.STATE_SKIPPED
    final = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert final.state == dag_pb2.Dag.STATE_FAILED and final.unfinished_job_count == 0
    bad = await fails(
        api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=a.job_id, attempt=0)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad.fields == ["attempt"]


async def test_final_failure_skips_all_descendants_but_not_other_branches(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    # a -> b -> c, a -> d, and an independent branch x -> y.
    created = await dag(
        api, ns, d.def_id, ["a", "b", "c", "d", "x", "y"], [("a", "b"), ("b", "c"), ("a", "d"), ("x", "y")]
    )
    jobs = await dag_jobs(api, ns, created.dag_id)
    failed = await api.jobs.FailJob(
        job_pb2.FailJobRequest(job_id=jobs["a"].job_id, error="no", non_retryable=True)
    )
    assert failed.state == J.STATE_FAILED and failed.attempt == 1
    after = await dag_jobs(api, ns, created.dag_id)
    states = {k: j.state for k, j in after.items()}
    assert states == {
        "a": J.STATE_FAILED,
        "b": J.STATE_SKIPPED,
        "c": J.STATE_SKIPPED,
        "d": J.STATE_SKIPPED,
        "x": J.STATE_READY,
        "y": J.STATE_PENDING,
    }
    # Each skipped job says which ancestor's failure skipped it (c too, two levels down).
    why = f"skipped: ancestor a (job {jobs['a'].job_id}) failed"
    assert {k: after[k].error for k in "bcd"} == dict.fromkeys("bcd", why)
    assert after["y"].error == ""
    row = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert row.state == dag_pb2.Dag.STATE_FAILED and row.unfinished_job_count == 2
    # The other branch still runs to its end; the DAG stays FAILED.
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs["x"].job_id))
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs["y"].job_id))
    row = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert row.state == dag_pb2.Dag.STATE_FAILED and row.unfinished_job_count == 0


async def test_payload_merge_priority_and_tick(api: Stubs) -> None:
    ns = await namespace(api)
    template = struct_pb2.Struct()
    template.update({"url": "http://a", "method": "GET"})
    d = await definition(api, ns, "fetch", payload_template=template, default_priority=7)
    override = struct_pb2.Struct()
    override.update({"url": "http://b"})
    created = await api.dags.CreateDag(
        dag_pb2.CreateDagRequest(
            namespace_id=ns,
            jobs=[
                dag_pb2.JobSpec(key="a", def_id=d.def_id, payload=override, priority=-3),
                dag_pb2.JobSpec(key="b", def_id=d.def_id),
            ],
            start=True,
        )
    )
    jobs = await dag_jobs(api, ns, created.dag_id)
    assert dict(jobs["a"].payload) == {"url": "http://b", "method": "GET"} and jobs["a"].priority == -3
    assert dict(jobs["b"].payload) == {"url": "http://a", "method": "GET"} and jobs["b"].priority == 7
    assert jobs["a"].kind == "fetch" or jobs["a"].kind == "noop"
    ticked = await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id, payload=override)
    )
    assert ticked.state == J.STATE_READY and ticked.dag_id == "" and ticked.namespace_id == ns
    assert dict(ticked.payload)["url"] == "http://b" and ticked.def_version == 1
    t1 = await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id, request_id="t")
    )
    t2 = await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id, request_id="t")
    )
    assert t1.job_id == t2.job_id
    standalone = await api.jobs.ListJobs(
        job_pb2.ListJobsRequest(namespace_id=ns, def_id=d.def_id, state=J.STATE_READY)
    )
    assert len(standalone.jobs) == 4  # two DAG jobs, two ticks
    done = await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=ticked.job_id, attempt=1))
    assert done.state == J.STATE_SUCCEEDED


async def test_prune_moves_to_history_and_get_still_finds(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    finished = await dag(api, ns, d.def_id, "ab", [("a", "b")])
    live = await dag(api, ns, d.def_id, "a", [])
    jobs = await dag_jobs(api, ns, finished.dag_id)
    for key in "ab":
        await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs[key].job_id))
    tick = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=tick.job_id))
    none = await api.admin.Prune(admin_pb2.PruneRequest(older_than=duration_pb2.Duration(seconds=3600)))
    assert (none.dags_pruned, none.jobs_pruned, none.dependencies_pruned) == (0, 0, 0)
    pruned = await api.admin.Prune(admin_pb2.PruneRequest(older_than=duration_pb2.Duration(seconds=0)))
    assert (pruned.dags_pruned, pruned.jobs_pruned, pruned.dependencies_pruned) == (1, 3, 1)
    old = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=jobs["b"].job_id))
    assert old.state == J.STATE_SUCCEEDED
    old_dag = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=finished.dag_id))
    assert old_dag.state == dag_pb2.Dag.STATE_SUCCEEDED
    listed = await api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns))
    assert [x.dag_id for x in listed.dags] == [live.dag_id]
    # No older_than: the 7-day default (tests/api/test_retention.py), nothing that old here.
    default = await api.admin.Prune(admin_pb2.PruneRequest())
    assert (default.dags_pruned, default.jobs_pruned, default.dependencies_pruned) == (0, 0, 0)


async def test_healthz(api: Stubs) -> None:
    reply = await api.admin.Healthz(admin_pb2.HealthzRequest())
    assert reply.status == "SERVING"


async def test_cancel_failed_dag_stops_other_branches_and_stays_failed(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    created = await dag(api, ns, d.def_id, ["a", "b", "x"], [("a", "b")])
    jobs = await dag_jobs(api, ns, created.dag_id)
    await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=jobs["a"].job_id, error="no", non_retryable=True))
    row = await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert row.state == dag_pb2.Dag.STATE_FAILED and row.unfinished_job_count == 0
    states = {k: j.state for k, j in (await dag_jobs(api, ns, created.dag_id)).items()}
    assert states == {"a": J.STATE_FAILED, "b": J.STATE_SKIPPED, "x": J.STATE_CANCELLED}
    again = await fails(
        api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=created.dag_id)), PRECONDITION
    )
    assert again.reason == "DAG_FAILED"
