"""Tick has a one-statement path for versions this process has read and a
two-trip path for the rest; both give the same jobs and the same refusals."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from chronosched.v1 import definition_pb2, job_pb2, namespace_pb2
from chronosched_server.storage import definitions as storage_definitions
from tests.support.builders import definition, fails, namespace
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)


async def tick(api: Stubs, ns: str, def_id: str, **payload: Any) -> job_pb2.Job:
    request = definition_pb2.TickRequest(namespace_id=ns, def_id=def_id)
    request.payload.update(payload)
    return await api.definitions.Tick(request)


async def test_both_paths_make_the_same_job_and_refuse_alike(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, kind="command", payload_template={"argv": ["echo", "a"]}, max_attempts=4)
    storage_definitions._VERSIONS.clear()
    first = await tick(api, ns, d.def_id)  # two trips; learns the version
    assert (ns, uuid.UUID(d.def_id)) in storage_definitions._VERSIONS
    second = await tick(api, ns, d.def_id, argv=["echo", "b"])  # one statement
    for job, argv in ((first, ["echo", "a"]), (second, ["echo", "b"])):
        assert job.state == job_pb2.Job.STATE_READY and job.key == d.name
        assert job.kind == "command" and job.def_version == 1 and job.max_attempts == 4
        assert json_format.MessageToDict(job.payload)["argv"] == argv
        got = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=job.job_id))
        assert got.payload == job.payload and got.due_time == job.due_time
    # A payload the kind refuses: the same INVALID_ARGUMENT on the fast path.
    bad = await fails(tick(api, ns, d.def_id, argv="not a list"), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad.fields and all(f.startswith("payload") for f in bad.fields), bad.fields
    # Retired after the version was learnt: the statement makes nothing and
    # the two-trip path says why.
    await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=d.def_id)
    )
    retired = await fails(tick(api, ns, d.def_id), grpc.StatusCode.FAILED_PRECONDITION)
    assert retired.reason == "DEFINITION_RETIRED"
    # Another namespace's id with this version: NOT_FOUND names it.
    missing = await fails(tick(api, "team-zz", d.def_id), grpc.StatusCode.NOT_FOUND)
    assert "team-zz" in missing.message


async def test_a_namespace_deleted_after_the_version_was_learnt_is_not_found(api: Stubs) -> None:
    ns = await namespace(api, "team-gone")
    d = await definition(api, ns, kind="noop")
    storage_definitions._VERSIONS.clear()
    job = await tick(api, ns, d.def_id)
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(namespace_id=ns, job_id=job.job_id))
    await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=d.def_id)
    )
    await api.namespaces.DeleteNamespace(namespace_pb2.DeleteNamespaceRequest(namespace_id=ns))
    gone = await fails(tick(api, ns, d.def_id), grpc.StatusCode.NOT_FOUND)
    assert "team-gone" in gone.message
