"""gRPC and protobuf helpers: message builders, the standard health service,
and `RawWorker`, a Dequeue stream driven by hand (protocol-level tests)."""

from __future__ import annotations

import asyncio
import subprocess
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import duration_pb2, struct_pb2
from grpc_health.v1 import health_pb2

from chronosched.v1 import worker_pb2, worker_pb2_grpc
from tests.support.waiting import poll

# The server's own message size limit (256 MiB), for clients sending big DAGs.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 256 << 20),
    ("grpc.max_receive_message_length", 256 << 20),
]


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(value * 1e9))
    return out


# --- health -------------------------------------------------------------------

if TYPE_CHECKING:  # generic only in the stubs
    HealthCheck = grpc.aio.UnaryUnaryMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ]


def health_check(channel: grpc.aio.Channel) -> HealthCheck:
    """grpc.health.v1.Health/Check on `channel`, called by its path: the
    typeshed HealthStub declares no methods."""
    return channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


async def health_status(target: str, service: str = "") -> int | None:
    """A service's health status at `target` (the whole server's by
    default), or None when the server does not answer within a second."""
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            response = await health_check(channel)(
                health_pb2.HealthCheckRequest(service=service), timeout=1.0
            )
        except grpc.aio.AioRpcError:
            return None
        assert isinstance(response, health_pb2.HealthCheckResponse)
        status: int = response.status
        return status


async def wait_serving(target: str, *, within: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll the standard health service until SERVING (fail fast if `proc` exits)."""
    async with grpc.aio.insecure_channel(target) as channel:
        check_health = health_check(channel)

        async def check() -> bool:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"server process exited with {proc.returncode} before serving")
            try:
                resp = await check_health(health_pb2.HealthCheckRequest(), timeout=1.0)
            except grpc.aio.AioRpcError:
                return False
            return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

        await poll(check, within=within, what=f"server at {target} to serve", every=0.1)


# --- a bare Dequeue stream ------------------------------------------------------


def frame_items(msg: worker_pb2.DequeueResponse) -> list[tuple[str, Any]]:
    """A server frame as the single items a worker handles, in its order:
    settings, heartbeat acks, acks, assignments, cancels, keepalive."""
    items: list[tuple[str, Any]] = []
    if msg.HasField("settings"):
        items.append(("settings", msg.settings))
    items += [("heartbeat_ack", a) for a in msg.heartbeat_acks]
    items += [("ack", a) for a in msg.acks]
    items += [("assignment", a) for a in msg.assignments]
    items += [("cancel", c) for c in msg.cancels]
    if msg.HasField("keepalive"):
        items.append(("keepalive", msg.keepalive))
    return items


class RawWorker:
    """One bare Dequeue stream. A single reader task fills `inbox` with the
    items of every frame; writes happen from one task at a time (grpc.aio
    allows one pending write)."""

    def __init__(self, stub: worker_pb2_grpc.WorkerServiceAsyncStub, **subscribe: Any) -> None:
        self.call = stub.Dequeue()
        subscribe.setdefault("kinds", ["logged"])
        subscribe.setdefault("slots", 1)
        self.subscribe = worker_pb2.Subscribe(**subscribe)
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.frames = 0
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.call.write(worker_pb2.DequeueRequest(subscribe=self.subscribe))
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.call:
            self.frames += 1
            for item in frame_items(msg):
                await self.inbox.put(item)

    async def next(self, kind: str, wait_s: float = 10.0) -> Any:
        """The next item of `kind`, skipping keepalives and the settings."""
        while True:
            which, item = await asyncio.wait_for(self.inbox.get(), wait_s)
            if which == kind:
                return item
            assert which in ("keepalive", "settings"), (which, item)

    async def heartbeat(self, sequence: int, *held: tuple[str, int]) -> None:
        refs = [worker_pb2.JobRef(job_id=job_id, attempt=attempt) for job_id, attempt in held]
        await self.call.write(
            worker_pb2.DequeueRequest(heartbeat=worker_pb2.Heartbeat(running=refs, sequence=sequence))
        )

    async def send_result(self, job_id: str, attempt: int, values: dict[str, Any] | None = None) -> None:
        await self.call.write(RawWorker.result(job_id, attempt, values or {}))

    @staticmethod
    def result(job_id: str, attempt: int, values: dict[str, Any]) -> worker_pb2.DequeueRequest:
        return RawWorker.results([(job_id, attempt, values)])

    @staticmethod
    def results(items: list[tuple[str, int, dict[str, Any]]]) -> worker_pb2.DequeueRequest:
        batch = worker_pb2.JobResults()
        for job_id, attempt, values in items:
            res = batch.results.add(job=worker_pb2.JobRef(job_id=job_id, attempt=attempt), success=True)
            res.result.update(values)
        return worker_pb2.DequeueRequest(results=batch)

    async def close(self) -> None:
        self.call.cancel()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)
