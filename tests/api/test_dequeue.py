"""The Dequeue stream at the protocol level, driven by a raw gRPC client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2, worker_pb2, worker_pb2_grpc
from tests.api.conftest import Stubs
from tests.api.helpers import dag, dag_jobs, definition, namespace

J = job_pb2.Job


class RawWorker:
    def __init__(self, api: Stubs, **subscribe: Any):
        stub = worker_pb2_grpc.WorkerServiceStub(api.channel)
        self.call = stub.Dequeue()
        subscribe.setdefault("worker_id", "w1")
        subscribe.setdefault("kinds", ["noop"])
        subscribe.setdefault("slots", 1)
        self.subscribe = worker_pb2.Subscribe(**subscribe)

    async def start(self) -> None:
        await self.call.write(worker_pb2.DequeueRequest(subscribe=self.subscribe))
        # Cancelling a pending read would cancel the whole call, so one task
        # reads everything and tests wait on the queue instead.
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.call:
            await self.inbox.put(msg)

    async def next(self, kind: str, wait_s: float = 5.0) -> Any:
        """The next message of the given kind, skipping keepalives."""
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), wait_s)
            if msg.WhichOneof("message") == kind:
                return getattr(msg, kind)
            assert msg.WhichOneof("message") == "keepalive", msg

    async def complete(self, job: J, **result: Any) -> worker_pb2.ResultAck:
        req = worker_pb2.JobResult(
            job=worker_pb2.JobRef(job_id=job.job_id, attempt=job.attempt), success=True
        )
        req.result.update(result)
        await self.call.write(worker_pb2.DequeueRequest(result=req))
        ack: worker_pb2.ResultAck = await self.next("ack")
        return ack


async def test_push_complete_and_unlock_child(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    created = await dag(api, ns, d.def_id, "ab", [("a", "b")])
    worker = RawWorker(api, namespaces=[ns])
    await worker.start()
    first = await worker.next("assignment")
    assert first.job.key == "a" and first.job.state == J.STATE_RUNNING and first.job.attempt == 1
    assert first.job.worker_id == "w1" and first.lease_duration.seconds == 30
    assert first.execution_timeout.seconds == 3600
    # One slot: nothing else is pushed until the result frees it.
    ack = await worker.complete(first.job, ok=1)
    assert ack.accepted and ack.job.job_id == first.job.job_id
    t0 = time.perf_counter()
    second = await worker.next("assignment")
    latency = time.perf_counter() - t0
    assert second.job.key == "b" and latency < 2.0
    ack = await worker.complete(second.job)
    assert ack.accepted
    final = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=created.dag_id))
    assert final.state == dag_pb2.Dag.STATE_SUCCEEDED
    jobs = await dag_jobs(api, ns, created.dag_id)
    assert dict(jobs["a"].result) == {"ok": 1}
    worker.call.cancel()


async def test_never_more_than_slots_in_flight_and_stale_results_rejected(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    for _ in range(5):
        await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    worker = RawWorker(api, namespaces=[ns], slots=2)
    await worker.start()
    got = [await worker.next("assignment"), await worker.next("assignment")]
    # A third push would exceed 2 slots.
    try:
        extra = await worker.next("assignment", wait_s=1.0)
        raise AssertionError(f"pushed beyond free slots: {extra.job.job_id}")
    except TimeoutError:
        pass
    stale = worker_pb2.JobResult(job=worker_pb2.JobRef(job_id=got[0].job.job_id, attempt=7), success=True)
    await worker.call.write(worker_pb2.DequeueRequest(result=stale))
    ack = await worker.next("ack")
    assert not ack.accepted and ack.reason == "STALE_ATTEMPT"
    job = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=got[0].job.job_id))
    assert job.state == J.STATE_RUNNING
    worker.call.cancel()


async def test_subscribe_is_validated(api: Stubs) -> None:
    stub = worker_pb2_grpc.WorkerServiceStub(api.channel)
    call = stub.Dequeue()
    await call.write(worker_pb2.DequeueRequest(subscribe=worker_pb2.Subscribe(worker_id="w", slots=1001)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for field in ["subscribe.namespaces", "subscribe.kinds", "subscribe.slots"]:
        assert field in (info.value.details() or "")


async def test_jobs_claimed_for_a_closed_stream_go_back_with_the_same_attempt(api: Stubs) -> None:
    from datetime import timedelta

    from chronosched_server.dispatch.streams import WorkerStream
    from chronosched_server.storage import leases

    ns = await namespace(api)
    d = await definition(api, ns)
    ticked = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    stream = WorkerStream("gone", [ns], False, ["noop"], 1)
    async with api.server.db.transaction() as conn:
        cur = await leases.claim(conn, stream, 1, timedelta(seconds=30))
        rows = await cur.fetchall()
    assert [str(r["job_id"]) for r in rows] == [ticked.job_id]
    running = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=ticked.job_id))
    assert running.state == J.STATE_RUNNING and running.worker_id == "gone"
    async with api.server.db.transaction() as conn:
        assert await leases.release_unsent(conn, {rows[0]["job_id"]: rows[0]["attempt"]}) == 1
    back = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=ticked.job_id))
    assert back.state == J.STATE_READY and back.attempt == 1 and back.worker_id == ""
    # Back in the frontier: a worker gets it.
    worker = RawWorker(api, namespaces=[ns])
    await worker.start()
    got = await worker.next("assignment")
    assert got.job.job_id == ticked.job_id and got.job.attempt == 1
    worker.call.cancel()
