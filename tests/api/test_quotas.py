"""Per-caller quotas on a real server: requests a second and open Dequeue
streams end in RESOURCE_EXHAUSTED naming the limit, before the servicer
runs, and a refused request changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from chronosched.v1 import namespace_pb2, worker_pb2, worker_pb2_grpc
from tests.support.server import Stubs, serving
from tests.support.waiting import poll

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


async def _subscribe(stubs: Stubs, worker_id: str) -> grpc.aio.StreamStreamCall[Any, Any]:
    """Open a Dequeue stream and read its first answer. The quota refuses
    at stream start, so the refusal may reach the client on its write or on
    its read depending on timing; either way it raises here."""
    call = worker_pb2_grpc_stub(stubs).Dequeue()
    await call.write(
        worker_pb2.DequeueRequest(
            subscribe=worker_pb2.Subscribe(worker_id=worker_id, all_namespaces=True, slots=1, kinds=["noop"])
        )
    )
    answer = await call.read()
    assert isinstance(answer, worker_pb2.DequeueResponse) and answer.HasField("settings")
    return call


async def test_a_second_stream_of_the_same_caller_is_refused(database_url: str) -> None:
    async with serving(database_url, max_streams_per_caller=1) as stubs:
        first = await _subscribe(stubs, "w1")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _subscribe(stubs, "w2")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _limit(refused.value) == "streams_per_caller"
        # Once the first stream ends, its slot is free again. The server
        # learns of the cancel asynchronously, so a stream opened at once
        # may still be refused; the slot must come back within seconds.
        first.cancel()

        async def reopen() -> grpc.aio.StreamStreamCall[Any, Any] | None:
            try:
                return await _subscribe(stubs, "w3")
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return None

        third = await poll(reopen, within=10.0, what="the first stream's slot to be released")
        third.cancel()


def worker_pb2_grpc_stub(stubs: Stubs) -> worker_pb2_grpc.WorkerServiceAsyncStub:
    return worker_pb2_grpc.WorkerServiceStub(stubs.channel)
