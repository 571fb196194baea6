from __future__ import annotations

import itertools
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2

from chronosched.v1 import definition_pb2, namespace_pb2
from tests.support.builders import definition, fails, namespace
from tests.support.server import Stubs

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_namespace_create_get_list_duplicate(api: Stubs) -> None:
    created = await api.namespaces.CreateNamespace(
        namespace_pb2.CreateNamespaceRequest(namespace_id="team-a", description="first")
    )
    assert created.namespace_id == "team-a" and created.description == "first"
    assert created.create_time.seconds > 0
    dup = await fails(
        api.namespaces.CreateNamespace(namespace_pb2.CreateNamespaceRequest(namespace_id="team-a")),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert dup.reason == "NAMESPACE_EXISTS"
    # It names the namespace, never a table or constraint.
    assert dup.metadata == {"namespace_id": "team-a"} and "'team-a'" in dup.message
    got = await api.namespaces.GetNamespace(namespace_pb2.GetNamespaceRequest(namespace_id="team-a"))
    assert got.description == "first"
    missing = await fails(
        api.namespaces.GetNamespace(namespace_pb2.GetNamespaceRequest(namespace_id="nope")),
        grpc.StatusCode.NOT_FOUND,
    )
    assert missing.reason == "NAMESPACE_NOT_FOUND"


async def test_namespace_pagination(api: Stubs) -> None:
    for name in ["c", "a", "b"]:
        await namespace(api, name)
    seen: list[str] = []
    token = ""
    while True:
        page = await api.namespaces.ListNamespaces(
            namespace_pb2.ListNamespacesRequest(page_size=2, page_token=token)
        )
        seen += [n.namespace_id for n in page.namespaces]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["a", "b", "c"]


async def test_namespace_bad_ids(api: Stubs) -> None:
    for bad in ["", "A", "-a", "a-", "a_b", "x" * 64]:
        failure = await fails(
            api.namespaces.CreateNamespace(namespace_pb2.CreateNamespaceRequest(namespace_id=bad)), INVALID
        )
        assert failure.fields == ["namespace_id"], bad
    failure = await fails(
        api.namespaces.CreateNamespace(
            namespace_pb2.CreateNamespaceRequest(namespace_id="ok", description="x\x00y")
        ),
        INVALID,
    )
    assert failure.fields == ["description"]
    # Every violation carries a machine-readable reason.
    assert failure.why == {"description": "INVALID_FORMAT"}
    listed = await api.namespaces.ListNamespaces(namespace_pb2.ListNamespacesRequest())
    assert list(listed.namespaces) == []


async def test_definition_versions_and_defaults(api: Stubs) -> None:
    ns = await namespace(api)
    template = struct_pb2.Struct()
    template.update({"url": "http://x", "n": 1})
    first = await definition(api, ns, "fetch", payload_template=template)
    second = await definition(api, ns, "fetch", max_attempts=5)
    other = await definition(api, ns, "other")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert uuid.UUID(first.def_id) != uuid.UUID(second.def_id)
    assert first.max_attempts == 3 and second.max_attempts == 5
    assert first.backoff_initial.ToSeconds() == 1 and first.backoff_max.ToSeconds() == 300
    assert first.time_zone == "UTC"
    assert first.misfire_policy == definition_pb2.JobDefinition.MISFIRE_POLICY_SKIP
    assert dict(first.payload_template) == {"url": "http://x", "n": 1}
    assert list(first.next_fire_times) == []
    listed = await api.definitions.ListDefinitions(
        definition_pb2.ListDefinitionsRequest(namespace_id=ns, name="fetch")
    )
    assert [d.version for d in listed.definitions] == [1, 2]
    got = await api.definitions.GetDefinition(
        definition_pb2.GetDefinitionRequest(namespace_id=ns, def_id=second.def_id)
    )
    assert got == second.__class__.FromString(got.SerializeToString()) and got.version == 2


async def test_definition_cron_next_fire_times(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, "every5", cron_spec="*/5 * * * * *")
    fires = [t.ToDatetime() for t in d.next_fire_times]
    assert len(fires) == 5
    assert all(f.second % 5 == 0 and f.microsecond == 0 for f in fires)
    assert all((b - a).total_seconds() == 5 for a, b in itertools.pairwise(fires))


async def test_definition_bad_input_names_fields_and_writes_nothing(api: Stubs) -> None:
    ns = await namespace(api)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "", "kind": "noop"}, "name"),
        ({"name": "bad name", "kind": "noop"}, "name"),
        ({"name": "n", "kind": ""}, "kind"),
        ({"name": "n", "kind": "Bad Kind"}, "kind"),
        ({"name": "n", "kind": "noop", "cron_spec": "61 * * * *"}, "cron_spec"),
        ({"name": "n", "kind": "noop", "cron_spec": "* * *"}, "cron_spec"),
        ({"name": "n", "kind": "noop", "cron_spec": "@daily", "time_zone": "Mars/Base"}, "time_zone"),
        ({"name": "n", "kind": "noop", "max_attempts": 0}, "max_attempts"),
        ({"name": "n", "kind": "noop", "max_attempts": 101}, "max_attempts"),
        ({"name": "n", "kind": "noop", "default_priority": 5000}, "default_priority"),
        ({"name": "n", "kind": "noop", "backoff_multiplier": 0.5}, "backoff_multiplier"),
        (
            {"name": "n", "kind": "noop", "execution_timeout": duration_pb2.Duration(seconds=0)},
            "execution_timeout",
        ),
        ({"name": "n", "kind": "noop", "request_id": "has space"}, "request_id"),
    ]
    for fields, field in cases:
        failure = await fails(
            api.definitions.CreateDefinition(
                definition_pb2.CreateDefinitionRequest(namespace_id=ns, **fields)
            ),
            INVALID,
        )
        assert field in failure.fields, (fields, failure.fields)
        assert field in failure.message
    nul = struct_pb2.Struct()
    nul.update({"a": {"b": ["ok", "x\x00"]}})
    failure = await fails(
        api.definitions.CreateDefinition(
            definition_pb2.CreateDefinitionRequest(namespace_id=ns, name="n", kind="k", payload_template=nul)
        ),
        INVALID,
    )
    assert failure.fields == ["payload_template.a.b[1]"]
    big = struct_pb2.Struct()
    big.update({"blob": "x" * (1024 * 1024 + 1)})
    failure = await fails(
        api.definitions.CreateDefinition(
            definition_pb2.CreateDefinitionRequest(namespace_id=ns, name="n", kind="k", payload_template=big)
        ),
        INVALID,
    )
    assert failure.fields == ["payload_template"]
    assert failure.why == {"payload_template": "TOO_LONG"}
    listed = await api.definitions.ListDefinitions(definition_pb2.ListDefinitionsRequest(namespace_id=ns))
    assert list(listed.definitions) == []


async def test_definition_in_unknown_namespace(api: Stubs) -> None:
    failure = await fails(
        api.definitions.CreateDefinition(
            definition_pb2.CreateDefinitionRequest(namespace_id="ghost", name="n", kind="k")
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "ghost" in failure.message


async def test_definition_request_id_is_idempotent(api: Stubs) -> None:
    ns = await namespace(api)
    a = await definition(api, ns, "n", request_id="r-1")
    b = await definition(api, ns, "n", request_id="r-1")
    c = await definition(api, ns, "n", request_id="r-2")
    assert a.def_id == b.def_id and a.version == b.version == 1
    assert c.version == 2


async def test_definitions_are_immutable_in_the_database(api: Stubs, aconn: object) -> None:
    import psycopg

    assert isinstance(aconn, psycopg.AsyncConnection)
    ns = await namespace(api)
    d = await definition(api, ns, "n")
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation) as info:
        await aconn.execute("update job_definitions set kind = 'other' where def_id = %s::uuid", (d.def_id,))
    assert info.value.diag.constraint_name == "job_definitions_immutable"


async def test_namespace_isolation_of_definitions(api: Stubs) -> None:
    a = await namespace(api, "a")
    b = await namespace(api, "b")
    d = await definition(api, a, "n")
    await fails(
        api.definitions.GetDefinition(definition_pb2.GetDefinitionRequest(namespace_id=b, def_id=d.def_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    await fails(
        api.definitions.Tick(definition_pb2.TickRequest(namespace_id=b, def_id=d.def_id)),
        grpc.StatusCode.NOT_FOUND,
    )
