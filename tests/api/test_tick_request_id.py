"""Tick with a request_id, as the Python client sends every Tick. Once this
server has read the version, one statement writes the idempotency key and
the job together (both or neither); a replay, a refusal and a concurrent
first call fall to the transaction path, which answers them as before."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import struct_pb2

from chronosched.v1 import definition_pb2, job_pb2
from chronosched_server.storage import jobs as storage_jobs
from chronosched_server.storage.records import Job as Record
from tests.api.test_handoff import learnt, tick
from tests.support.builders import definition, fails, namespace
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)
J = job_pb2.Job


async def keys(database_url: str, ns: str) -> dict[str, list[str]]:
    """Tick's idempotency keys in `ns`: request_id -> the job ids it names."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "select request_id, resource_ids from request_ids where namespace_id = %s and method = 'Tick'",
            (ns,),
        )
        return {row[0]: [str(i) for i in row[1]] for row in await cur.fetchall()}


async def job_ids(database_url: str, ns: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("select job_id from jobs where namespace_id = %s", (ns,))
        return {str(row[0]) for row in await cur.fetchall()}


def created(api: Stubs, ns: str, kind: str) -> float:
    labels = {"namespace": ns, "kind": kind}
    return api.server.metrics.registry.get_sample_value("chronosched_jobs_created_total", labels) or 0.0


@pytest.fixture
def slow_path(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The request_ids that reached Tick's transaction path, in call order."""
    taken: list[str] = []
    original = storage_jobs._tick_idempotent

    async def counted(*args: Any) -> Record:
        taken.append(args[4])
        return await original(*args)

    monkeypatch.setattr(storage_jobs, "_tick_idempotent", counted)
    return taken


async def test_a_known_version_writes_key_and_job_in_one_statement(
    api: Stubs, database_url: str, slow_path: list[str]
) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    first = await learnt(api, ns, d.def_id)
    job = await tick(api, ns, d.def_id, request_id="k-1", payload={"n": 1})
    assert job.state == J.STATE_READY and dict(job.payload) == {"n": 1}
    assert slow_path == []  # the one statement made it
    assert await keys(database_url, ns) == {"k-1": [job.job_id]}
    assert created(api, ns, d.kind) == 2
    # A replay finds the key: the transaction path returns the first job.
    again = await tick(api, ns, d.def_id, request_id="k-1", payload={"n": 2})
    assert again.job_id == job.job_id and dict(again.payload) == {"n": 1}
    assert slow_path == ["k-1"]
    assert await job_ids(database_url, ns) == {first.job_id, job.job_id}
    assert created(api, ns, d.kind) == 2  # a replay makes nothing


async def test_concurrent_first_calls_make_one_job(api: Stubs, database_url: str) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    first = await learnt(api, ns, d.def_id)
    got = await asyncio.gather(*(tick(api, ns, d.def_id, request_id="same") for _ in range(8)))
    assert len({j.job_id for j in got}) == 1
    assert await job_ids(database_url, ns) == {first.job_id, got[0].job_id}
    assert await keys(database_url, ns) == {"same": [got[0].job_id]}


async def test_a_version_retired_after_it_was_read_leaves_neither_key_nor_job(
    api: Stubs, database_url: str, slow_path: list[str]
) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    first = await learnt(api, ns, d.def_id)
    await api.definitions.RetireDefinition(
        definition_pb2.RetireDefinitionRequest(namespace_id=ns, def_id=d.def_id)
    )
    refused = await fails(tick(api, ns, d.def_id, request_id="k-2"), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "DEFINITION_RETIRED"
    assert slow_path == ["k-2"]  # the statement made nothing; this path said why
    assert await keys(database_url, ns) == {}
    assert await job_ids(database_url, ns) == {first.job_id}


async def test_a_bad_payload_for_a_known_built_in_kind_leaves_neither(
    api: Stubs, database_url: str, slow_path: list[str]
) -> None:
    ns = await namespace(api)
    template = struct_pb2.Struct()
    template.update({"url": "http://127.0.0.1:9/"})
    d = await definition(api, ns, "get", kind="http", payload_template=template)
    good = await learnt(api, ns, d.def_id)
    refused = await fails(
        tick(api, ns, d.def_id, request_id="k-3", payload={"url": "nope"}), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert refused.fields == ["payload.url"]
    assert slow_path == ["k-3"]
    assert await keys(database_url, ns) == {}
    assert await job_ids(database_url, ns) == {good.job_id}
    # The same key with a good payload is a first call, not a replay.
    ok = await tick(api, ns, d.def_id, request_id="k-3")
    assert await keys(database_url, ns) == {"k-3": [ok.job_id]}
