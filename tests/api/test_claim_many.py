"""A worker naming many (namespace, kind) pairs claims through one walk of
the priority index (claim_jobs_any, filtered by its namespaces): the same jobs, in the same order, as
probing each pair, and nothing of a namespace it did not name."""

from __future__ import annotations

import asyncio

import pytest

from chronosched.v1 import definition_pb2, worker_pb2_grpc
from chronosched_server.storage import leases
from tests.support import grpc_helpers
from tests.support.builders import definition, namespace
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)


async def test_a_worker_of_many_namespaces_gets_theirs_in_priority_order(api: Stubs) -> None:
    named = [f"many-{i:03d}" for i in range(70)]
    spec = leases.ClaimSpec("w", named, False, ["noop"])
    assert leases.claim_query(spec) == "claim_jobs_any"
    assert leases.claim_query(leases.ClaimSpec("w", named[:64], False, ["noop"])) == "claim_jobs_in"
    for ns in named:
        await namespace(api, ns)
    await namespace(api, "not-named")
    # Priorities 1..3 in three of the named namespaces; a higher one elsewhere.
    expected = []
    for ns, priority in (("many-005", 1), ("many-060", 3), ("many-033", 2)):
        d = await definition(api, ns, default_priority=priority)
        job = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
        expected.append((priority, job.job_id))
    other = await definition(api, "not-named", default_priority=9)
    await api.definitions.Tick(definition_pb2.TickRequest(namespace_id="not-named", def_id=other.def_id))
    worker = grpc_helpers.RawWorker(
        worker_pb2_grpc.WorkerServiceStub(api.channel),
        worker_id="w",
        namespaces=named,
        kinds=["noop"],
        slots=1,
    )
    await worker.start()
    got: list[str] = []
    while len(got) < 3:
        which, item = await asyncio.wait_for(worker.inbox.get(), 10)
        if which == "assignment":
            got.append(item.job.job_id)
            await worker.send_result(item.job.job_id, item.job.attempt)
    assert got == [job_id for _, job_id in sorted(expected, reverse=True)]
    await worker.close()
