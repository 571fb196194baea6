"""EnqueueJobs: many standalone runs in one call, all or none."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import struct_pb2

from chronosched.v1 import definition_pb2, job_pb2, worker_pb2_grpc
from tests.support import grpc_helpers
from tests.support.builders import definition, fails, namespace
from tests.support.server import Stubs

J = job_pb2.Job
INVALID = grpc.StatusCode.INVALID_ARGUMENT
# The database's clock and this process's may differ by a little.
SKEW = timedelta(seconds=1)


def struct(**values: Any) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


async def all_jobs(api: Stubs, ns: str) -> list[J]:
    resp = await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, page_size=1000))
    return list(resp.jobs)


async def test_runs_are_ready_standalone_jobs_in_request_order(api: Stubs) -> None:
    ns = await namespace(api)
    plain = await definition(api, ns, "plain")
    shaped = await definition(
        api, ns, "shaped", kind="report", payload_template=struct(fmt="csv", rows=10), default_priority=5
    )
    before = datetime.now(UTC)
    resp = await api.jobs.EnqueueJobs(
        job_pb2.EnqueueJobsRequest(
            namespace_id=ns,
            jobs=[
                job_pb2.JobRun(def_id=plain.def_id),
                job_pb2.JobRun(def_id=shaped.def_id, payload=struct(rows=3)),
                job_pb2.JobRun(def_id=shaped.def_id, priority=-7),
                job_pb2.JobRun(def_id=plain.def_id, payload=struct(n=4), priority=0),
            ],
        )
    )
    assert len(resp.job_ids) == 4 and len(set(resp.job_ids)) == 4
    got = [
        await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=job_id))
        for job_id in resp.job_ids
    ]
    assert [(j.key, j.kind, j.def_id, j.priority) for j in got] == [
        ("plain", "noop", plain.def_id, 0),
        ("shaped", "report", shaped.def_id, 5),
        ("shaped", "report", shaped.def_id, -7),
        ("plain", "noop", plain.def_id, 0),
    ]
    assert [dict(j.payload) for j in got] == [
        {},
        {"fmt": "csv", "rows": 3},
        {"fmt": "csv", "rows": 10},
        {"n": 4},
    ]
    for job in got:
        assert job.state == J.STATE_READY and job.dag_id == "" and job.attempt == 1
        assert job.due_time == job.create_time and job.create_time.ToDatetime(UTC) >= before - SKEW
    assert sorted(j.job_id for j in await all_jobs(api, ns)) == sorted(resp.job_ids)


async def test_a_worker_is_pushed_the_enqueued_runs(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    worker = grpc_helpers.RawWorker(
        worker_pb2_grpc.WorkerServiceStub(api.channel),
        worker_id="w1",
        namespaces=[ns],
        kinds=["noop"],
        slots=3,
    )
    await worker.start()
    resp = await api.jobs.EnqueueJobs(
        job_pb2.EnqueueJobsRequest(namespace_id=ns, jobs=[job_pb2.JobRun(def_id=d.def_id)] * 3)
    )
    pushed = [await worker.next("assignment") for _ in range(3)]
    assert sorted(a.job.job_id for a in pushed) == sorted(resp.job_ids)
    assert {a.job.state for a in pushed} == {J.STATE_RUNNING}
    worker.call.cancel()


async def test_bad_runs_are_named_and_nothing_is_made(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    failure = await fails(
        api.jobs.EnqueueJobs(
            job_pb2.EnqueueJobsRequest(
                namespace_id=ns,
                jobs=[
                    job_pb2.JobRun(def_id=d.def_id),
                    job_pb2.JobRun(def_id="not-a-uuid"),
                    job_pb2.JobRun(def_id=d.def_id, priority=1001),
                    job_pb2.JobRun(),
                ],
                request_id="bad id!",
            )
        ),
        INVALID,
    )
    assert failure.why == {
        "jobs[1].def_id": "INVALID_FORMAT",
        "jobs[2].priority": "OUT_OF_RANGE",
        "jobs[3].def_id": "REQUIRED",
        "request_id": "INVALID_FORMAT",
    }
    empty = await fails(api.jobs.EnqueueJobs(job_pb2.EnqueueJobsRequest(namespace_id=ns)), INVALID)
    assert empty.why == {"jobs": "REQUIRED"}
    missing = str(uuid.uuid4())
    unknown = await fails(
        api.jobs.EnqueueJobs(
            job_pb2.EnqueueJobsRequest(
                namespace_id=ns, jobs=[job_pb2.JobRun(def_id=d.def_id), job_pb2.JobRun(def_id=missing)]
            )
        ),
        INVALID,
    )
    assert unknown.reason == "DEFINITION_NOT_FOUND" and unknown.fields == ["jobs[1].def_id"]
    await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=d.def_id)
    )
    retired = await fails(
        api.jobs.EnqueueJobs(
            job_pb2.EnqueueJobsRequest(namespace_id=ns, jobs=[job_pb2.JobRun(def_id=d.def_id)])
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert retired.reason == "DEFINITION_RETIRED"
    nowhere = await fails(
        api.jobs.EnqueueJobs(
            job_pb2.EnqueueJobsRequest(namespace_id="no-such-ns", jobs=[job_pb2.JobRun(def_id=d.def_id)])
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert nowhere.code == grpc.StatusCode.NOT_FOUND
    assert await all_jobs(api, ns) == []


async def test_a_built_in_kind_refuses_a_bad_merged_payload_by_its_run(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "get", kind="http")
    failure = await fails(
        api.jobs.EnqueueJobs(
            job_pb2.EnqueueJobsRequest(
                namespace_id=ns,
                jobs=[
                    job_pb2.JobRun(def_id=d.def_id, payload=struct(url="http://127.0.0.1:9/")),
                    job_pb2.JobRun(def_id=d.def_id, payload=struct(url="ftp://x")),
                ],
            )
        ),
        INVALID,
    )
    assert failure.fields and all(f.startswith("jobs[1].payload") for f in failure.fields), failure.fields
    assert await all_jobs(api, ns) == []


async def test_a_repeated_request_id_returns_the_first_ids_and_makes_nothing(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    request = job_pb2.EnqueueJobsRequest(
        namespace_id=ns, jobs=[job_pb2.JobRun(def_id=d.def_id)] * 5, request_id="nightly-2026-11-30"
    )
    first = await api.jobs.EnqueueJobs(request)
    again = await api.jobs.EnqueueJobs(request)
    assert list(again.job_ids) == list(first.job_ids) and len(first.job_ids) == 5
    assert sorted(j.job_id for j in await all_jobs(api, ns)) == sorted(first.job_ids)


async def test_a_large_batch_is_all_there_in_creation_order(api: Stubs, aconn: object) -> None:
    import psycopg

    assert isinstance(aconn, psycopg.AsyncConnection)
    ns = await namespace(api)
    d = await definition(api, ns)
    runs = [job_pb2.JobRun(def_id=d.def_id, priority=i % 3) for i in range(2_500)]
    resp = await api.jobs.EnqueueJobs(job_pb2.EnqueueJobsRequest(namespace_id=ns, jobs=runs))
    # v7 ids: the order of the runs is the order of creation.
    assert len(resp.job_ids) == 2_500 and list(resp.job_ids) == sorted(resp.job_ids)
    cur = await aconn.execute(
        "select priority, count(*) from jobs where namespace_id = %s and state = 'READY'"
        " and dag_id is null and due_time = create_time group by priority order by priority",
        (ns,),
    )
    assert await cur.fetchall() == [(0, 834), (1, 833), (2, 833)]
