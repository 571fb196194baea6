"""A scripted WorkerService peer for protocol tests.

It does what a test tells it (push this assignment, end that stream, abort
with UNAVAILABLE) and records every message the worker sends, so tests can
assert exact sequences. Tests against the real server live in
test_protocol.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from chronosched.v1 import job_pb2, worker_pb2, worker_pb2_grpc
from chronosched_worker import JobContext, Worker
from tests.support.grpc_helpers import seconds, struct
from tests.support.worker import Gates

Request = worker_pb2.DequeueRequest
Response = worker_pb2.DequeueResponse


@dataclass
class _Abort:
    code: grpc.StatusCode
    details: str


@dataclass(frozen=True)
class Received:
    """One thing the worker sent: a subscribe, heartbeat or slot update as it
    came, and every result of a results message on its own."""

    kind: str
    body: Any
    # The message it came in (results sent together share one).
    message: Request


def flatten(message: Request) -> list[Received]:
    kind = str(message.WhichOneof("message"))
    if kind == "results":
        return [Received("result", r, message) for r in message.results.results]
    return [Received(kind, getattr(message, kind), message)]


@dataclass
class FakeStream:
    """One Dequeue call as the server sees it."""

    received: asyncio.Queue[Received | None] = field(default_factory=asyncio.Queue)
    outbox: asyncio.Queue[Response | _Abort | None] = field(default_factory=asyncio.Queue)
    log: list[Received] = field(default_factory=list)
    messages: list[Request] = field(default_factory=list)
    closed_by_worker: asyncio.Event = field(default_factory=asyncio.Event)
    # Like the real server: answer every heartbeat, extending every lease it
    # names, and grant leases after the newest heartbeat read. Tests that
    # play a server which stopped answering turn it off.
    answer_heartbeats: bool = True
    heartbeat_seq: int = 0

    async def next(self, *, within: float = 5.0, skip_heartbeats: bool = True) -> Received:
        """The worker's next item (heartbeats skipped unless asked for)."""
        while True:
            item = await asyncio.wait_for(self.received.get(), within)
            assert item is not None, "the worker closed the stream"
            if skip_heartbeats and item.kind == "heartbeat":
                continue
            return item

    async def expect(self, kind: str, *, within: float = 5.0) -> Any:
        """The body of the worker's next item, which must be of `kind`."""
        item = await self.next(within=within, skip_heartbeats=kind != "heartbeat")
        assert item.kind == kind, f"expected {kind}, got {item}"
        return item.body

    async def expect_close(self, *, within: float = 5.0) -> None:
        """The worker half-closes with nothing but heartbeats before it."""
        while True:
            item = await asyncio.wait_for(self.received.get(), within)
            if item is None:
                return
            assert item.kind == "heartbeat", f"expected the stream to close, got {item}"

    def push(self, message: Response) -> None:
        for grant in message.assignments:
            if not grant.heartbeat_sequence:
                grant.heartbeat_sequence = self.heartbeat_seq
        self.outbox.put_nowait(message)

    def answer(self, beat: worker_pb2.Heartbeat) -> None:
        self.heartbeat_seq = max(self.heartbeat_seq, beat.sequence)
        if self.answer_heartbeats:
            ack = worker_pb2.HeartbeatAck(sequence=beat.sequence)
            for held in beat.running:
                ack.extended.add(job=held)
            self.outbox.put_nowait(Response(heartbeat_acks=[ack]))

    def ack(self, job_id: str, attempt: int = 1, *, accepted: bool = True, reason: str = "") -> None:
        self.push(
            Response(
                acks=[
                    worker_pb2.ResultAck(
                        job=worker_pb2.JobRef(job_id=job_id, attempt=attempt),
                        accepted=accepted,
                        reason=reason,
                    )
                ]
            )
        )

    def cancel(self, job_id: str, attempt: int = 1, reason: str = "") -> None:
        self.push(
            Response(
                cancels=[
                    worker_pb2.CancelJob(job=worker_pb2.JobRef(job_id=job_id, attempt=attempt), reason=reason)
                ]
            )
        )

    def end(self) -> None:
        self.outbox.put_nowait(None)

    def abort(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, details: str = "going away") -> None:
        self.outbox.put_nowait(_Abort(code, details))

    def kinds_received(self) -> list[str]:
        return [item.kind for item in self.log]


class FakeWorkerService(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self) -> None:
        self.streams: asyncio.Queue[FakeStream] = asyncio.Queue()
        self.reject_all = False

    async def ListWorkers(
        self, request: worker_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> worker_pb2.ListWorkersResponse:
        # Workers never call it; only the real server lists streams.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake server lists no workers")

    async def Dequeue(
        self, request_iterator: AsyncIterator[Request], context: grpc.aio.ServicerContext[Request, Response]
    ) -> AsyncIterator[Response]:
        if self.reject_all:
            self.streams.put_nowait(FakeStream())
            await context.abort(grpc.StatusCode.UNAVAILABLE, "rejecting every stream")
        stream = FakeStream()
        self.streams.put_nowait(stream)

        async def pump() -> None:
            try:
                async for request in request_iterator:
                    stream.messages.append(request)
                    if request.HasField("heartbeat"):
                        stream.answer(request.heartbeat)
                    for item in flatten(request):
                        stream.log.append(item)
                        stream.received.put_nowait(item)
            finally:
                stream.received.put_nowait(None)
                stream.closed_by_worker.set()
                # Like the real server: the worker's half-close ends the call.
                stream.outbox.put_nowait(None)

        reader = asyncio.create_task(pump())
        try:
            while True:
                item = await stream.outbox.get()
                if item is None:
                    return
                if isinstance(item, _Abort):
                    await context.abort(item.code, item.details)
                yield item
        finally:
            reader.cancel()


class FakeServer:
    def __init__(self) -> None:
        self.service = FakeWorkerService()
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self._server = grpc.aio.server()
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(self.service, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0)
            self._server = None

    async def restart(self) -> None:
        """Stop, then listen again on the same port with a fresh service."""
        await self.stop()
        self.service = FakeWorkerService()
        await self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def next_stream(self, *, within: float = 5.0) -> FakeStream:
        return await asyncio.wait_for(self.service.streams.get(), within)


def assignment(
    job_id: str,
    *,
    kind: str = "echo",
    attempt: int = 1,
    payload: dict[str, Any] | None = None,
    lease_s: float = 30.0,
    timeout_s: float = 0.0,
) -> Response:
    job = job_pb2.Job(
        job_id=job_id,
        namespace_id="team-a",
        dag_id="dag-1",
        def_id="def-1",
        def_version=2,
        kind=kind,
        key=f"key-{job_id}",
        state=job_pb2.Job.STATE_RUNNING,
        attempt=attempt,
        max_attempts=3,
        payload=struct(payload or {}),
    )
    message = worker_pb2.Assignment(job=job, lease_duration=seconds(lease_s))
    if timeout_s:
        message.execution_timeout.CopyFrom(seconds(timeout_s))
    return Response(assignments=[message])


def ref(job_id: str, attempt: int = 1) -> worker_pb2.JobRef:
    return worker_pb2.JobRef(job_id=job_id, attempt=attempt)


async def subscribed(fake: FakeServer) -> tuple[FakeStream, Any]:
    """The worker's next stream and the Subscribe it opened with."""
    stream = await fake.next_stream()
    return stream, await stream.expect("subscribe")


async def echo(ctx: JobContext) -> dict[str, Any]:
    return {"echo": ctx.payload, "attempt": ctx.attempt}


def make_worker(address: str, gates: Gates | None = None, **kwargs: Any) -> Worker:
    """A Worker for the scripted peer: kind `echo` (and `gate` with `gates`),
    namespace team-a, id w-1 unless `kwargs` say otherwise."""
    kwargs.setdefault("namespaces", ["team-a"])
    kwargs.setdefault("worker_id", "w-1")
    worker = Worker(address, **kwargs)
    worker.add_handler("echo", echo)
    if gates is not None:
        worker.add_handler("gate", gates)
    return worker
