"""Per-caller quotas on a real server: requests a second and open Dequeue
streams end in RESOURCE_EXHAUSTED naming the limit, before the servicer
runs, and a refused request changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from chronosched.v1 import namespace_pb2, worker_pb2, worker_pb2_grpc
from tests.support.server import Stubs, serving

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def limited(database_url: str) -> AsyncIterator[Stubs]:
    async with serving(database_url, rate_limit=2.0, rate_burst=3, max_streams_per_caller=1) as stubs:
        yield stubs


def _limit(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            limit: str = info.metadata["limit"]
            return limit
    raise AssertionError("no ErrorInfo")


async def test_a_burst_then_resource_exhausted_and_nothing_written(
    limited: Stubs, aconn: psycopg.AsyncConnection[tuple[object, ...]]
) -> None:
    for i in range(3):
        await limited.namespaces.CreateNamespace(namespace_pb2.CreateNamespaceRequest(namespace_id=f"q{i}"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await limited.namespaces.CreateNamespace(namespace_pb2.CreateNamespaceRequest(namespace_id="q-over"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _limit(refused.value) == "requests_per_second"
    assert "retry in" in (refused.value.details() or "")
    # The refused create never ran (read from the database: the quota is
    # spent for this caller).
    cur = await aconn.execute("select namespace_id from namespaces order by 1")
    assert [r[0] for r in await cur.fetchall()] == ["q0", "q1", "q2"]


async def test_a_second_stream_of_the_same_caller_is_refused(database_url: str) -> None:
    async with serving(database_url, max_streams_per_caller=1) as stubs:
        stream = worker_pb2_grpc_stub(stubs).Dequeue()
        await stream.write(
            worker_pb2.DequeueRequest(
                subscribe=worker_pb2.Subscribe(worker_id="w1", all_namespaces=True, slots=1, kinds=["noop"])
            )
        )
        first = await stream.read()
        assert isinstance(first, worker_pb2.DequeueResponse) and first.HasField("settings")
        second = worker_pb2_grpc_stub(stubs).Dequeue()
        await second.write(
            worker_pb2.DequeueRequest(
                subscribe=worker_pb2.Subscribe(worker_id="w2", all_namespaces=True, slots=1, kinds=["noop"])
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await second.read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _limit(refused.value) == "streams_per_caller"
        # Once the first stream ends, its slot is free again.
        stream.cancel()
        third = worker_pb2_grpc_stub(stubs).Dequeue()
        await third.write(
            worker_pb2.DequeueRequest(
                subscribe=worker_pb2.Subscribe(worker_id="w3", all_namespaces=True, slots=1, kinds=["noop"])
            )
        )
        answer = await third.read()
        assert isinstance(answer, worker_pb2.DequeueResponse) and answer.HasField("settings")
        third.cancel()


def worker_pb2_grpc_stub(stubs: Stubs) -> worker_pb2_grpc.WorkerServiceAsyncStub:
    return worker_pb2_grpc.WorkerServiceStub(stubs.channel)
