"""A small CreateDag has a one-statement path for versions this process has
read and a path in steps for the rest; both make the same DAG, jobs and
edges, and refuse alike."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import json_format

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2, namespace_pb2
from chronosched_server.storage import dags as storage_dags
from chronosched_server.storage import definitions as storage_definitions
from tests.support.builders import dag_jobs, definition, fails, namespace
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)

Row = tuple[object, ...]


def spec(key: str, def_id: str, priority: int | None = None, **payload: Any) -> dag_pb2.JobSpec:
    job = dag_pb2.JobSpec(key=key, def_id=def_id)
    if priority is not None:
        job.priority = priority
    if payload:
        job.payload.update(payload)
    return job


def request(
    ns: str, jobs: list[dag_pb2.JobSpec], *, start: bool = True, **fields: Any
) -> dag_pb2.CreateDagRequest:
    """Jobs a, b, c...: a is the parent of every other one."""
    edges = [dag_pb2.DagEdge(parent=jobs[0].key, child=job.key) for job in jobs[1:]]
    return dag_pb2.CreateDagRequest(
        namespace_id=ns, name="paths", jobs=jobs, dependencies=edges, start=start, **fields
    )


async def shape(api: Stubs, ns: str, made: dag_pb2.Dag) -> dict[str, Any]:
    """What a DAG is, without its ids and times: its own fields, its jobs by
    key and its edges by key, as the API reads them back."""
    got = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=made.dag_id))
    assert got == made
    jobs = await dag_jobs(api, ns, made.dag_id)
    key_of = {job.job_id: key for key, job in jobs.items()}
    edges = await api.dags.ListDependencies(
        dag_pb2.ListDependenciesRequest(namespace_id=ns, dag_id=made.dag_id)
    )
    for job in jobs.values():
        # A root of a started DAG is due when the DAG started; nothing else is.
        if job.state == job_pb2.Job.STATE_READY:
            assert job.due_time == made.start_time
        else:
            assert not job.HasField("due_time")
    return {
        "dag": (made.name, made.state, made.job_count, made.HasField("start_time")),
        "jobs": {
            key: (
                job.state,
                job.kind,
                job.def_id,
                job.def_version,
                job.priority,
                job.max_attempts,
                json_format.MessageToDict(job.payload),
            )
            for key, job in jobs.items()
        },
        "edges": sorted((key_of[e.parent_job_id], key_of[e.child_job_id]) for e in edges.dependencies),
    }


async def dag_count(aconn: psycopg.AsyncConnection[Row], ns: str) -> int:
    """How many DAGs `ns` holds, read from the database."""
    cur = await aconn.execute("select count(*) from dags where namespace_id = %s", (ns,))
    row = await cur.fetchone()
    assert row is not None
    return int(str(row[0]))


@pytest.mark.parametrize("start", [True, False], ids=["started", "pending"])
async def test_both_paths_make_the_same_dag(api: Stubs, start: bool) -> None:
    ns = await namespace(api)
    cmd = await definition(
        api,
        ns,
        "cmd",
        kind="command",
        payload_template={"argv": ["echo", "a"]},
        max_attempts=4,
        default_priority=3,
    )
    nop = await definition(api, ns, "nop", max_attempts=2)
    jobs = [
        spec("a", cmd.def_id),
        spec("b", cmd.def_id, priority=9, argv=["echo", "b"]),
        spec("c", nop.def_id),
    ]
    storage_definitions._VERSIONS.clear()
    first = await api.dags.CreateDag(request(ns, jobs, start=start))  # in steps; learns the versions
    for d in (cmd, nop):
        assert (ns, uuid.UUID(d.def_id)) in storage_definitions._VERSIONS
    second = await api.dags.CreateDag(request(ns, jobs, start=start))  # one statement
    assert first.dag_id != second.dag_id
    one, other = await shape(api, ns, first), await shape(api, ns, second)
    assert one == other
    assert one["dag"] == (
        "paths",
        dag_pb2.Dag.STATE_RUNNING if start else dag_pb2.Dag.STATE_PENDING,
        3,
        start,
    )
    root = job_pb2.Job.STATE_READY if start else job_pb2.Job.STATE_PENDING
    pending = job_pb2.Job.STATE_PENDING
    assert one["jobs"] == {
        "a": (root, "command", cmd.def_id, 1, 3, 4, {"argv": ["echo", "a"]}),
        "b": (pending, "command", cmd.def_id, 1, 9, 4, {"argv": ["echo", "b"]}),
        "c": (pending, "noop", nop.def_id, 1, 0, 2, {}),
    }
    assert one["edges"] == [("a", "b"), ("a", "c")]
    # The children wait for their one parent on either path.
    if start:
        for made in (first, second):
            children = await dag_jobs(api, ns, made.dag_id)
            assert {children[k].state for k in "bc"} == {pending}


async def test_both_paths_refuse_alike_and_write_nothing(
    api: Stubs, aconn: psycopg.AsyncConnection[Row]
) -> None:
    ns = await namespace(api)
    cmd = await definition(api, ns, "cmd", kind="command", payload_template={"argv": ["echo", "a"]})
    nop = await definition(api, ns, "nop")
    await api.dags.CreateDag(request(ns, [spec("a", cmd.def_id), spec("b", nop.def_id)]))
    assert await dag_count(aconn, ns) == 1
    # A payload the kind refuses: INVALID_ARGUMENT naming the job's payload.
    bad = await fails(
        api.dags.CreateDag(request(ns, [spec("a", nop.def_id), spec("b", cmd.def_id, argv="not a list")])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad.fields and all(f.startswith("jobs[1].payload") for f in bad.fields), bad.fields
    # Retired after the version was learnt: the statement makes nothing and
    # the steps say why, naming the job that runs it.
    await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=nop.def_id)
    )
    retired = await fails(
        api.dags.CreateDag(request(ns, [spec("a", cmd.def_id), spec("b", nop.def_id)])),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert retired.reason == "DEFINITION_RETIRED" and retired.message.startswith("jobs[1].def_id:")
    # Another namespace's id with this version: NOT_FOUND names it.
    missing = await fails(
        api.dags.CreateDag(request("team-zz", [spec("a", cmd.def_id)])), grpc.StatusCode.NOT_FOUND
    )
    assert "team-zz" in missing.message
    assert await dag_count(aconn, ns) == 1


async def test_a_replay_returns_the_first_dag_and_makes_nothing(
    api: Stubs, aconn: psycopg.AsyncConnection[Row]
) -> None:
    ns = await namespace(api)
    nop = await definition(api, ns, "nop")
    jobs = [spec("a", nop.def_id), spec("b", nop.def_id)]
    await api.dags.CreateDag(request(ns, jobs))  # learns the version
    first = await api.dags.CreateDag(request(ns, jobs, request_id="once"))
    again = await api.dags.CreateDag(request(ns, jobs, request_id="once"))
    assert again == first
    assert await dag_count(aconn, ns) == 2
    # The key names the DAG the one statement made.
    cur = await aconn.execute(
        "select resource_ids from request_ids where namespace_id = %s and method = 'CreateDag'"
        " and request_id = 'once'",
        (ns,),
    )
    assert await cur.fetchall() == [([uuid.UUID(first.dag_id)],)]


async def test_a_namespace_deleted_after_the_versions_were_learnt_is_not_found(api: Stubs) -> None:
    ns = await namespace(api, "team-gone")
    nop = await definition(api, ns, "nop")
    made = await api.dags.CreateDag(request(ns, [spec("a", nop.def_id)], start=False))
    await api.dags.DeleteDag(dag_pb2.DeleteDagRequest(namespace_id=ns, dag_id=made.dag_id))
    await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=nop.def_id)
    )
    await api.namespaces.DeleteNamespace(namespace_pb2.DeleteNamespaceRequest(namespace_id=ns))
    gone = await fails(api.dags.CreateDag(request(ns, [spec("a", nop.def_id)])), grpc.StatusCode.NOT_FOUND)
    assert "team-gone" in gone.message


async def test_more_jobs_than_one_insert_take_the_steps(api: Stubs) -> None:
    """Past INSERT_MAX jobs the steps (by COPY) make the DAG even with every
    version known, and it comes out as the small one does."""
    ns = await namespace(api)
    nop = await definition(api, ns, "nop")
    n = storage_dags.INSERT_MAX + 1
    made = await api.dags.CreateDag(request(ns, [spec(f"k{i}", nop.def_id) for i in range(n)]))
    got = await shape(api, ns, made)
    assert got["dag"] == ("paths", dag_pb2.Dag.STATE_RUNNING, n, True)
    assert len(got["edges"]) == n - 1
