from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import struct_pb2

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2
from chronosched_server.storage import dags as storage_dags
from chronosched_server.storage import definitions as storage_definitions
from tests.support.builders import dag, dag_jobs, definition, fails, namespace
from tests.support.locks import AConn
from tests.support.server import Stubs

PENDING, READY = job_pb2.Job.STATE_PENDING, job_pb2.Job.STATE_READY
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def test_create_with_topology_starts_roots_only(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    created = await dag(api, ns, d.def_id, "abcd", [("a", "c"), ("b", "c"), ("c", "d")])
    assert created.state == dag_pb2.Dag.STATE_RUNNING
    assert (created.job_count, created.unfinished_job_count) == (4, 4)
    jobs = await dag_jobs(api, ns, created.dag_id)
    assert {k: j.state for k, j in jobs.items()} == {"a": READY, "b": READY, "c": PENDING, "d": PENDING}
    assert all(j.attempt == 1 and j.def_version == 1 and j.dag_id == created.dag_id for j in jobs.values())
    deps = await api.dags.ListDependencies(
        dag_pb2.ListDependenciesRequest(namespace_id=ns, dag_id=created.dag_id)
    )
    pairs = {(e.parent_job_id, e.child_job_id) for e in deps.dependencies}
    ids = {k: j.job_id for k, j in jobs.items()}
    assert pairs == {(ids["a"], ids["c"]), (ids["b"], ids["c"]), (ids["c"], ids["d"])}


async def test_cycle_is_rejected_naming_it_and_nothing_written(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    failure = await fails(
        dag(api, ns, d.def_id, "abcx", [("x", "a"), ("a", "b"), ("b", "c"), ("c", "a")]), PRECONDITION
    )
    assert failure.reason == "CYCLE_DETECTED"
    assert (
        "a -> b -> c -> a" in failure.message
        or "b -> c -> a -> b" in failure.message
        or ("c -> a -> b -> c" in failure.message)
    )
    listed = await api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns))
    assert list(listed.dags) == []


async def test_bad_topology_fields(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    cases = [
        (["a", "a"], [], "jobs[1].key"),
        (["a"], [("a", "a")], "dependencies[0]"),
        (["a"], [("a", "zz")], "dependencies[0].child"),
        (["a", "b"], [("a", "b"), ("a", "b")], "dependencies[1]"),
        (["bad key"], [], "jobs[0].key"),
    ]
    for keys, edges, field in cases:
        failure = await fails(dag(api, ns, d.def_id, keys, edges), grpc.StatusCode.INVALID_ARGUMENT)
        assert field in failure.fields, (keys, edges, failure.fields)
    unknown = await fails(
        api.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=ns,
                jobs=[dag_pb2.JobSpec(key="a", def_id="01a21bb3-c3d8-7531-ae11-88dc678939e4")],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert unknown.fields == ["jobs[0].def_id"]
    empty_start = await fails(
        api.dags.CreateDag(dag_pb2.CreateDagRequest(namespace_id=ns, start=True)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert empty_start.fields == ["start"]
    listed = await api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns))
    assert list(listed.dags) == []


async def test_build_then_start_and_seal(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    empty = await api.dags.CreateDag(dag_pb2.CreateDagRequest(namespace_id=ns, name="built"))
    assert empty.state == dag_pb2.Dag.STATE_PENDING
    created = await api.dags.CreateJobs(
        dag_pb2.CreateJobsRequest(
            namespace_id=ns,
            dag_id=empty.dag_id,
            jobs=[dag_pb2.JobSpec(key=k, def_id=d.def_id) for k in "abcd"],
        )
    )
    a, b, c, x = (j.job_id for j in created.jobs)
    assert [j.key for j in created.jobs] == ["a", "b", "c", "d"]
    assert all(j.state == PENDING for j in created.jobs)
    await api.dags.AddDependency(
        dag_pb2.AddDependencyRequest(namespace_id=ns, dag_id=empty.dag_id, parent_job_id=a, child_job_id=b)
    )
    bulk = await api.dags.AddDependencies(
        dag_pb2.AddDependenciesRequest(
            namespace_id=ns,
            dag_id=empty.dag_id,
            dependencies=[dag_pb2.Dependency(parent_job_id=b, child_job_id=c)],
        )
    )
    assert len(bulk.dependencies) == 1
    # c -> a would close a -> b -> c -> a; the whole batch is refused.
    cycle = await fails(
        api.dags.AddDependencies(
            dag_pb2.AddDependenciesRequest(
                namespace_id=ns,
                dag_id=empty.dag_id,
                dependencies=[
                    dag_pb2.Dependency(parent_job_id=a, child_job_id=x),
                    dag_pb2.Dependency(parent_job_id=c, child_job_id=a),
                ],
            )
        ),
        PRECONDITION,
    )
    assert cycle.reason == "CYCLE_DETECTED"
    assert any(p in cycle.message for p in ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]), (
        cycle.message
    )
    deps = await api.dags.ListDependencies(
        dag_pb2.ListDependenciesRequest(namespace_id=ns, dag_id=empty.dag_id)
    )
    assert len(deps.dependencies) == 2
    dup = await fails(
        api.dags.AddDependency(
            dag_pb2.AddDependencyRequest(
                namespace_id=ns, dag_id=empty.dag_id, parent_job_id=a, child_job_id=b
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert dup.reason == "DEPENDENCY_EXISTS"
    assert set(dup.metadata) == {"namespace_id", "dag_id"}
    dup_key = await fails(
        api.dags.CreateJobs(
            dag_pb2.CreateJobsRequest(
                namespace_id=ns, dag_id=empty.dag_id, jobs=[dag_pb2.JobSpec(key="a", def_id=d.def_id)]
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert dup_key.reason == "JOB_KEY_EXISTS"
    assert set(dup_key.metadata) == {"namespace_id", "dag_id"}
    started = await api.dags.StartDag(dag_pb2.StartDagRequest(namespace_id=ns, dag_id=empty.dag_id))
    assert started.state == dag_pb2.Dag.STATE_RUNNING and started.job_count == 4
    jobs = await dag_jobs(api, ns, empty.dag_id)
    assert {k: j.state for k, j in jobs.items()} == {"a": READY, "b": PENDING, "c": PENDING, "d": READY}
    # Sealed: no jobs, no edges, no second start.
    sealed = await fails(
        api.dags.CreateJobs(
            dag_pb2.CreateJobsRequest(
                namespace_id=ns, dag_id=empty.dag_id, jobs=[dag_pb2.JobSpec(key="z", def_id=d.def_id)]
            )
        ),
        PRECONDITION,
    )
    assert sealed.reason == "DAG_SEALED" and "immutable" in sealed.message
    await fails(
        api.dags.AddDependency(
            dag_pb2.AddDependencyRequest(
                namespace_id=ns, dag_id=empty.dag_id, parent_job_id=a, child_job_id=c
            )
        ),
        PRECONDITION,
    )
    again = await fails(
        api.dags.StartDag(dag_pb2.StartDagRequest(namespace_id=ns, dag_id=empty.dag_id)), PRECONDITION
    )
    assert again.reason == "DAG_ALREADY_STARTED"


async def test_edges_across_dags_and_unknown_jobs(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    one = await dag(api, ns, d.def_id, "a", [], start=False)
    two = await dag(api, ns, d.def_id, "b", [], start=False)
    a = (await dag_jobs(api, ns, one.dag_id))["a"].job_id
    b = (await dag_jobs(api, ns, two.dag_id))["b"].job_id
    cross = await fails(
        api.dags.AddDependency(
            dag_pb2.AddDependencyRequest(namespace_id=ns, dag_id=one.dag_id, parent_job_id=a, child_job_id=b)
        ),
        PRECONDITION,
    )
    assert cross.reason == "CROSS_DAG_EDGE"
    await fails(
        api.dags.AddDependency(
            dag_pb2.AddDependencyRequest(
                namespace_id=ns,
                dag_id=one.dag_id,
                parent_job_id=a,
                child_job_id="01a21bb3-c3d8-7531-ae11-88dc678939e4",
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    self_edge = await fails(
        api.dags.AddDependency(
            dag_pb2.AddDependencyRequest(namespace_id=ns, dag_id=one.dag_id, parent_job_id=a, child_job_id=a)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert self_edge.fields == ["child_job_id"]


async def test_start_empty_dag_is_refused(api: Stubs) -> None:
    ns = await namespace(api)
    empty = await api.dags.CreateDag(dag_pb2.CreateDagRequest(namespace_id=ns))
    failure = await fails(
        api.dags.StartDag(dag_pb2.StartDagRequest(namespace_id=ns, dag_id=empty.dag_id)), PRECONDITION
    )
    assert failure.reason == "DAG_EMPTY"


async def test_cancel_and_delete(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    created = await dag(api, ns, d.def_id, "ab", [("a", "b")])
    cancelled = await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert cancelled.state == dag_pb2.Dag.STATE_CANCELLED and cancelled.unfinished_job_count == 0
    jobs = await dag_jobs(api, ns, created.dag_id)
    assert {j.state for j in jobs.values()} == {job_pb2.Job.STATE_CANCELLED}
    late = await fails(
        api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs["a"].job_id)), PRECONDITION
    )
    assert late.reason == "JOB_CANCELLED"
    await api.dags.DeleteDag(dag_pb2.DeleteDagRequest(namespace_id=ns, dag_id=created.dag_id))
    await fails(
        api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=created.dag_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    await fails(
        api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=jobs["a"].job_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    await fails(
        api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs["a"].job_id)), grpc.StatusCode.NOT_FOUND
    )


async def test_delete_running_dag_rejects_late_results(api: Stubs, aconn: AConn) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    created = await dag(api, ns, d.def_id, "ab", [("a", "b")])
    jobs = await dag_jobs(api, ns, created.dag_id)
    assert jobs["a"].state == job_pb2.Job.STATE_READY
    await api.dags.DeleteDag(dag_pb2.DeleteDagRequest(namespace_id=ns, dag_id=created.dag_id))
    # No foreign key cascades (migration 0012): the delete itself removes
    # the DAG's jobs (its READY one too) and its edges.
    ids = [jobs["a"].job_id, jobs["b"].job_id]
    for table, column in (("jobs", "job_id"), ("dependencies", "child_job_id")):
        cur = await aconn.execute(f"select count(*) from {table} where {column} = any(%s::uuid[])", (ids,))
        assert await cur.fetchone() == (0,), table
    await fails(
        api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs["a"].job_id, attempt=1)),
        grpc.StatusCode.NOT_FOUND,
    )
    listed = await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns))
    assert list(listed.jobs) == []


async def test_namespace_isolation_of_dags(api: Stubs) -> None:
    a = await namespace(api, "a")
    b = await namespace(api, "b")
    d = await definition(api, a)
    created = await dag(api, a, d.def_id, "x", [])
    for call in [
        api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=b, dag_id=created.dag_id)),
        api.dags.DeleteDag(dag_pb2.DeleteDagRequest(namespace_id=b, dag_id=created.dag_id)),
        api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=b, dag_id=created.dag_id)),
        api.dags.ListDagJobs(dag_pb2.ListDagJobsRequest(namespace_id=b, dag_id=created.dag_id)),
    ]:
        await fails(call, grpc.StatusCode.NOT_FOUND)
    # Definitions of another namespace cannot be used either.
    other = await fails(dag(api, b, d.def_id, "x", []), grpc.StatusCode.INVALID_ARGUMENT)
    assert other.fields == ["jobs[0].def_id"]
    still = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=a, dag_id=created.dag_id))
    assert still.state == dag_pb2.Dag.STATE_RUNNING


async def test_create_dag_request_id_and_concurrent_retries(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    req = dag_pb2.CreateDagRequest(
        namespace_id=ns, jobs=[dag_pb2.JobSpec(key="a", def_id=d.def_id)], start=True, request_id="once"
    )
    results = await asyncio.gather(*(api.dags.CreateDag(req) for _ in range(5)))
    assert len({r.dag_id for r in results}) == 1
    listed = await api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns))
    assert len(listed.dags) == 1
    jobs = await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns))
    assert len(jobs.jobs) == 1


async def test_list_dags_filter_and_pages(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    running = [await dag(api, ns, d.def_id, "a", []) for _ in range(3)]
    await dag(api, ns, d.def_id, "a", [], start=False)
    page = await api.dags.ListDags(
        dag_pb2.ListDagsRequest(namespace_id=ns, state=dag_pb2.Dag.STATE_RUNNING, page_size=2)
    )
    assert [x.dag_id for x in page.dags] == [r.dag_id for r in running[:2]]
    rest = await api.dags.ListDags(
        dag_pb2.ListDagsRequest(
            namespace_id=ns, state=dag_pb2.Dag.STATE_RUNNING, page_size=2, page_token=page.next_page_token
        )
    )
    assert [x.dag_id for x in rest.dags] == [running[2].dag_id] and rest.next_page_token == ""
    bad = await fails(
        api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns, page_token="!!!")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad.fields == ["page_token"]
    big = await fails(
        api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns, page_size=1001)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert big.fields == ["page_size"]


async def test_more_jobs_than_the_documented_limit_are_refused(api: Stubs) -> None:
    from chronosched_server.validation import MAX_JOBS_PER_CALL

    ns = await namespace(api)
    d = await definition(api, ns)
    spec = dag_pb2.JobSpec(key="k", def_id=d.def_id)
    req = dag_pb2.CreateDagRequest(namespace_id=ns, start=True)
    req.jobs.extend([spec] * (MAX_JOBS_PER_CALL + 1))
    failure = await fails(api.dags.CreateDag(req), grpc.StatusCode.INVALID_ARGUMENT)
    assert failure.fields == ["jobs"] and str(MAX_JOBS_PER_CALL) in failure.message
    assert failure.why == {"jobs": "TOO_MANY"}
    listed = await api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns))
    assert list(listed.dags) == []


async def test_thousands_of_bad_fields_still_give_a_readable_invalid_argument(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    failure = await fails(
        dag(api, ns, d.def_id, [f"bad key {i}" for i in range(5000)], []), grpc.StatusCode.INVALID_ARGUMENT
    )
    # Details ride in a 16 KiB trailer: itemised up to a cap, counted in full in the message.
    assert failure.fields[:2] == ["jobs[0].key", "jobs[1].key"] and len(failure.fields) == 20
    assert "(and 4995 more)" in failure.message


async def test_create_dag_and_enqueue_rank_errors_namespace_then_replay_then_versions(
    api: Stubs, aconn: AConn
) -> None:
    """Their first step sends the namespace hold, the request id's claim,
    the versions' read (and the DAG row) together; the answers are read in
    this order, so which error a caller sees does not depend on that."""
    nowhere = "01a21bb3-c3d8-7531-ae11-88dc678939e4"
    spec = [dag_pb2.JobSpec(key="a", def_id=nowhere)]
    for request_id in ("", "r-0"):
        missing = await fails(
            api.dags.CreateDag(
                dag_pb2.CreateDagRequest(namespace_id="absent", jobs=spec, start=True, request_id=request_id)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        assert missing.reason == "NAMESPACE_NOT_FOUND"
        missing = await fails(
            api.jobs.EnqueueJobs(
                job_pb2.EnqueueJobsRequest(
                    namespace_id="absent", jobs=[job_pb2.JobRun(def_id=nowhere)], request_id=request_id
                )
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        assert missing.reason == "NAMESPACE_NOT_FOUND"
    ns = await namespace(api)
    d = await definition(api, ns)
    first = await api.dags.CreateDag(
        dag_pb2.CreateDagRequest(
            namespace_id=ns, jobs=[dag_pb2.JobSpec(key="a", def_id=d.def_id)], start=True, request_id="r-1"
        )
    )
    enqueued = await api.jobs.EnqueueJobs(
        job_pb2.EnqueueJobsRequest(namespace_id=ns, jobs=[job_pb2.JobRun(def_id=d.def_id)], request_id="r-1")
    )
    await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=d.def_id)
    )
    # A replay ranks before the versions: the first call's result, though
    # its version is retired now.
    again = await api.dags.CreateDag(
        dag_pb2.CreateDagRequest(
            namespace_id=ns, jobs=[dag_pb2.JobSpec(key="a", def_id=d.def_id)], start=True, request_id="r-1"
        )
    )
    assert again.dag_id == first.dag_id
    replayed = await api.jobs.EnqueueJobs(
        job_pb2.EnqueueJobsRequest(namespace_id=ns, jobs=[job_pb2.JobRun(def_id=d.def_id)], request_id="r-1")
    )
    assert list(replayed.job_ids) == list(enqueued.job_ids)
    # A first call with the retired version writes nothing, its key neither.
    retired = await fails(
        api.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=ns,
                jobs=[dag_pb2.JobSpec(key="a", def_id=d.def_id)],
                start=True,
                request_id="r-2",
            )
        ),
        PRECONDITION,
    )
    assert retired.reason == "DEFINITION_RETIRED" and retired.metadata["field"] == "jobs[0].def_id"
    cur = await aconn.execute("select count(*) from dags where namespace_id = %s", (ns,))
    assert await cur.fetchone() == (1,)
    cur = await aconn.execute(
        "select method, request_id from request_ids where namespace_id = %s order by 1", (ns,)
    )
    assert await cur.fetchall() == [("CreateDag", "r-1"), ("EnqueueJobs", "r-1")]


async def _rows(aconn: AConn, where: str, value: str) -> list[tuple[object, ...]]:
    """The written facts of some jobs, in key and creation order, without their ids."""
    cur = await aconn.execute(
        "select j.key, j.kind, j.state, j.max_attempts, j.priority, j.pending_parents, j.payload,"
        " j.due_time is null, coalesce(j.due_time = coalesce(d.start_time, j.create_time), false)"
        f" from jobs j left join dags d using (dag_id) where {where} = %s order by j.key, j.job_id",
        (value,),
    )
    return await cur.fetchall()


@pytest.mark.parametrize("start", [True, False])
async def test_few_jobs_by_insert_and_many_by_copy_are_written_alike(
    api: Stubs, aconn: AConn, monkeypatch: pytest.MonkeyPatch, start: bool
) -> None:
    """A few jobs and edges go in by one INSERT (in the transaction's last
    pipeline, or in create_dag_one's single statement once the versions are
    known), many by COPY: the same request gives the same rows every way,
    backslashes in payloads included."""
    ns = await namespace(api)
    template = struct_pb2.Struct()
    template.update({"path": "C:\\dir\\", "n": 1})
    d = await definition(api, ns, payload_template=template, default_priority=3, max_attempts=4)
    e = await definition(api, ns, "other", kind="other")
    override = struct_pb2.Struct()
    override.update({"q": 'a\\b\t"c"\n', "n": 2})
    request = dag_pb2.CreateDagRequest(
        namespace_id=ns,
        jobs=[
            dag_pb2.JobSpec(key="a", def_id=d.def_id),
            dag_pb2.JobSpec(key="b", def_id=e.def_id, priority=-2, payload=override),
            dag_pb2.JobSpec(key="c", def_id=d.def_id, payload=override),
        ],
        dependencies=[dag_pb2.DagEdge(parent="a", child="c"), dag_pb2.DagEdge(parent="b", child="c")],
        start=start,
    )
    runs = job_pb2.EnqueueJobsRequest(
        namespace_id=ns,
        jobs=[job_pb2.JobRun(def_id=d.def_id, payload=override), job_pb2.JobRun(def_id=e.def_id, priority=5)],
    )
    storage_definitions._VERSIONS.clear()
    few = await api.dags.CreateDag(request)
    few_runs = await api.jobs.EnqueueJobs(runs)
    once = await api.dags.CreateDag(request)
    monkeypatch.setattr(storage_dags, "INSERT_MAX", 0)
    many = await api.dags.CreateDag(request)
    many_runs = await api.jobs.EnqueueJobs(runs)

    rows = await _rows(aconn, "j.dag_id::text", few.dag_id)
    assert rows == await _rows(aconn, "j.dag_id::text", once.dag_id)
    assert rows == await _rows(aconn, "j.dag_id::text", many.dag_id)
    state = "READY" if start else "PENDING"
    merged = {"path": "C:\\dir\\", "n": 2, "q": 'a\\b\t"c"\n'}
    assert rows == [
        ("a", "noop", state, 4, 3, 0, {"path": "C:\\dir\\", "n": 1}, not start, start),
        ("b", "other", state, 3, -2, 0, {"q": 'a\\b\t"c"\n', "n": 2}, not start, start),
        ("c", "noop", "PENDING", 4, 3, 2, merged, True, False),
    ]
    for dag_id in (few.dag_id, once.dag_id, many.dag_id):
        edges = await api.dags.ListDependencies(
            dag_pb2.ListDependenciesRequest(namespace_id=ns, dag_id=dag_id)
        )
        keys = {j.job_id: k for k, j in (await dag_jobs(api, ns, dag_id)).items()}
        assert sorted((keys[x.parent_job_id], keys[x.child_job_id]) for x in edges.dependencies) == [
            ("a", "c"),
            ("b", "c"),
        ]
    standalone = [
        await _rows(aconn, "j.job_id::text", job_id) for job_id in [*few_runs.job_ids, *many_runs.job_ids]
    ]
    assert standalone[:2] == standalone[2:]
    assert standalone[:2] == [
        [("noop", "noop", "READY", 4, 3, 0, merged, False, True)],
        [("other", "other", "READY", 3, 5, 0, {}, False, True)],
    ]
