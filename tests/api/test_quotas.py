"""Per-caller quotas on a real server: requests a second and open Dequeue
streams end in RESOURCE_EXHAUSTED naming the limit, before the servicer
runs, and a refused request changes nothing."""

from __future__ import annotations

import asyncio
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


async def _subscribe(
    stubs: Stubs, worker_id: str, write_after_s: float = 0.0
) -> grpc.aio.StreamStreamCall[Any, Any]:
    """Open a Dequeue stream, write its Subscribe (after `write_after_s`, as
    a slow client would) and read its first answer; a refusal raises on the
    read."""
    call = worker_pb2_grpc_stub(stubs).Dequeue()
    if write_after_s:
        await asyncio.sleep(write_after_s)
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


async def test_a_stream_over_the_limit_still_takes_its_first_message(database_url: str) -> None:
    """The stream quota refuses at the start of the call. Had it ended the
    call before the worker's Subscribe reached the server, gRPC's client
    would fail that write and report INTERNAL ("Internal error from Core")
    in place of RESOURCE_EXHAUSTED (seen in a CI run): the refusal waits
    for the first message, as every refusal at a stream's start does."""
    async with serving(database_url, max_streams_per_caller=1) as stubs:
        first = await _subscribe(stubs, "w1")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            # A client slow to write: a server that refuses at once has
            # ended the call well before this.
            await _subscribe(stubs, "w2", write_after_s=0.3)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
        assert _limit(refused.value) == "streams_per_caller"
        first.cancel()


def worker_pb2_grpc_stub(stubs: Stubs) -> worker_pb2_grpc.WorkerServiceAsyncStub:
    return worker_pb2_grpc.WorkerServiceStub(stubs.channel)
