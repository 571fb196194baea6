"""Built-in kinds' payloads are checked when work is created (CreateDefinition,
CreateDag, CreateJobs, Tick), by the rule their handlers apply at run time,
naming the field; a rejected request writes nothing."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from chronosched.v1 import dag_pb2, definition_pb2
from chronosched_worker.context import NonRetryable
from chronosched_worker.kinds import payload_problem
from chronosched_worker.kinds.command import parse_command
from tests.support.builders import definition, fails, namespace
from tests.support.server import Stubs

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def test_a_template_is_checked_for_the_fields_it_sets(api: Stubs) -> None:
    ns = await namespace(api)
    failure = await fails(
        api.definitions.CreateDefinition(
            definition_pb2.CreateDefinitionRequest(
                namespace_id=ns, name="say", kind="command", payload_template=struct({"argv": "echo hi"})
            )
        ),
        INVALID,
    )
    assert failure.fields == ["payload_template.argv"] and failure.why == {
        "payload_template.argv": "INVALID_FORMAT"
    }
    bad_url = await fails(
        api.definitions.CreateDefinition(
            definition_pb2.CreateDefinitionRequest(
                namespace_id=ns, name="get", kind="http", payload_template=struct({"url": "ftp://x"})
            )
        ),
        INVALID,
    )
    assert bad_url.fields == ["payload_template.url"]
    # A template may leave the required fields to its jobs; other kinds are not ours to check.
    await definition(api, ns, "later", kind="command", payload_template=struct({"env": {"A": "1"}}))
    await definition(api, ns, "custom", kind="resize", payload_template=struct({"argv": "anything"}))


async def test_jobs_are_checked_with_their_merged_payload_and_nothing_is_written(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "later", kind="command")
    failure = await fails(
        api.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=ns,
                jobs=[
                    dag_pb2.JobSpec(key="ok", def_id=d.def_id, payload=struct({"argv": ["true"]})),
                    dag_pb2.JobSpec(key="none", def_id=d.def_id),
                    dag_pb2.JobSpec(key="empty", def_id=d.def_id, payload=struct({"argv": []})),
                ],
                start=True,
            )
        ),
        INVALID,
    )
    assert failure.fields == ["jobs[1].payload.argv", "jobs[2].payload.argv"]
    listed = await api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns))
    assert list(listed.dags) == []
    # CreateJobs on a PENDING DAG: the same rule, the same paths.
    built = await api.dags.CreateDag(dag_pb2.CreateDagRequest(namespace_id=ns, name="built"))
    added = await fails(
        api.dags.CreateJobs(
            dag_pb2.CreateJobsRequest(
                namespace_id=ns, dag_id=built.dag_id, jobs=[dag_pb2.JobSpec(key="a", def_id=d.def_id)]
            )
        ),
        INVALID,
    )
    assert added.fields == ["jobs[0].payload.argv"]


async def test_tick_checks_the_merged_payload(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "get", kind="http")
    failure = await fails(
        api.definitions.Tick(
            definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id, payload=struct({"url": "nope"}))
        ),
        INVALID,
    )
    assert failure.fields == ["payload.url"]
    ok = await api.definitions.Tick(
        definition_pb2.TickRequest(
            namespace_id=ns, def_id=d.def_id, payload=struct({"url": "http://127.0.0.1:9/"})
        )
    )
    assert ok.job_id


def test_the_rule_is_the_handlers_own() -> None:
    bad: list[dict[str, Any]] = [
        {"argv": "echo"},
        {"argv": []},
        {"argv": ["a", 1]},
        {},
        {"argv": ["a"], "env": {"=": "x"}},
    ]
    for payload in bad:
        problem = payload_problem("command", payload)
        with pytest.raises(NonRetryable) as raised:
            parse_command(dict(payload))
        assert problem is not None and str(problem) == str(raised.value)
    assert payload_problem("command", {"argv": ["true"]}) is None
