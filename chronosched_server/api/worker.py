"""WorkerService: the Dequeue stream. Validates what workers send and hands it
to the dispatcher; all queue work happens in the dispatcher's pump."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from chronosched.v1 import worker_pb2, worker_pb2_grpc
from chronosched_server import ids, render, validation
from chronosched_server.api.auth import caller
from chronosched_server.api.common import paginate, to_dict
from chronosched_server.dispatch.dispatcher import Dispatcher
from chronosched_server.dispatch.streams import WorkerStream
from chronosched_server.errors import InvalidArgument, Why
from chronosched_server.storage import presence
from chronosched_server.storage.results import ResultIn
from chronosched_server.validation import Violations

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_SLOTS = 1000
WORKER_ID_RE = validation.KEY_RE


def read_subscribe(message: worker_pb2.DequeueRequest, namespace_limit: str | None = None) -> WorkerStream:
    """The stream a Subscribe asks for; `namespace_limit` is the namespace
    the caller's token is limited to (None: every namespace), which the auth
    interceptor has already held the Subscribe's namespaces to."""
    if message.WhichOneof("message") != "subscribe":
        raise InvalidArgument.one(
            "subscribe", "the first message of a Dequeue stream must be a subscribe", Why.UNEXPECTED
        )
    sub = message.subscribe
    v = Violations()
    validation.check_pattern(v, "subscribe.worker_id", sub.worker_id, WORKER_ID_RE, required=True)
    if not sub.all_namespaces and not sub.namespaces:
        v.add("subscribe.namespaces", "name at least one namespace, or set all_namespaces", Why.REQUIRED)
    for i, ns in enumerate(sub.namespaces):
        validation.check_slug(v, f"subscribe.namespaces[{i}]", ns)
    if not sub.kinds:
        v.add("subscribe.kinds", "name at least one job kind", Why.REQUIRED)
    for i, kind in enumerate(sub.kinds):
        validation.check_pattern(v, f"subscribe.kinds[{i}]", kind, validation.KIND_RE, required=True)
    validation.check_range(v, "subscribe.slots", sub.slots, 0, MAX_SLOTS)
    validation.check_range(v, "subscribe.lookahead", sub.lookahead, 0, MAX_SLOTS)
    running: dict[uuid.UUID, int] = {}
    for i, ref in enumerate(sub.running):
        parsed = _ref(v, f"subscribe.running[{i}]", ref)
        if parsed:
            running[parsed[0]] = parsed[1]
    v.raise_if_any()
    return WorkerStream(
        worker_id=sub.worker_id,
        namespaces=list(sub.namespaces),
        all_namespaces=sub.all_namespaces,
        kinds=list(sub.kinds),
        slots=sub.slots,
        lookahead=sub.lookahead,
        in_flight=running,
        namespace_limit=namespace_limit,
    )


def read_result(result: worker_pb2.JobResult, stream: WorkerStream) -> ResultIn:
    """One result of `stream`: fenced to its worker's leases and its token's namespace."""
    v = Violations()
    parsed = _ref(v, "result.job", result.job)
    if result.success:
        validation.check_json_object(v, "result.result", result.result)
    else:
        validation.check_text(v, "result.error", result.error, validation.MAX_ERROR_CHARS)
    v.raise_if_any()
    assert parsed is not None
    return ResultIn(
        job_id=parsed[0],
        attempt=parsed[1],
        success=result.success,
        result=to_dict(result.result) if result.success else {},
        error=result.error,
        non_retryable=result.non_retryable,
        namespace_id=stream.namespace_limit,
        worker_id=stream.worker_id,
    )


def _ref(v: Violations, path: str, ref: worker_pb2.JobRef) -> tuple[uuid.UUID, int] | None:
    try:
        job_id = uuid.UUID(ref.job_id)
    except ValueError:
        v.add(f"{path}.job_id", f"{ref.job_id[:64]!r} is not a UUID", Why.INVALID_FORMAT)
        return None
    if ref.attempt < 1:
        v.add(f"{path}.attempt", f"attempt numbers start at 1, got {ref.attempt}", Why.OUT_OF_RANGE)
        return None
    return job_id, ref.attempt


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, dispatcher: Dispatcher):
        self.dispatcher = dispatcher

    async def ListWorkers(
        self, request: worker_pb2.ListWorkersRequest, context: Ctx
    ) -> worker_pb2.ListWorkersResponse:
        v = Violations()
        if request.namespace_id:
            validation.check_slug(v, "namespace_id", request.namespace_id)
        limit = validation.page_size(v, request.page_size)
        after = _worker_page_token(v, request.page_token)
        v.raise_if_any()
        # The auth rule held a named namespace to the token's; a token for
        # one namespace that names none sees the workers serving its own.
        only = caller().namespace
        rows = await presence.list_page(self.dispatcher.db, request.namespace_id or only, after, limit + 1)
        page, token = paginate(rows, limit, lambda r: f"{r.worker_id} {r.stream_id}")
        return worker_pb2.ListWorkersResponse(
            workers=[render.connected_worker(r, only) for r in page], next_page_token=token
        )

    async def Dequeue(
        self, request_iterator: AsyncIterator[worker_pb2.DequeueRequest], context: Ctx
    ) -> AsyncIterator[worker_pb2.DequeueResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        stream = read_subscribe(first, caller().namespace)
        log.info(
            "worker %s connected (%d slots, lookahead %d, kinds %s)",
            stream.worker_id,
            stream.slots,
            stream.lookahead,
            stream.kinds,
            extra={
                "event": "worker_connected",
                "worker_id": stream.worker_id,
                "slots": stream.slots,
                "lookahead": stream.lookahead,
                "kinds": sorted(stream.kinds),
            },
        )
        # Before registering, so no claim for this stream can be mistaken for
        # a lease the worker lost; after ending its old stream here, so no
        # claim for that one can slip past.
        self.dispatcher.supersede(stream)
        await self.dispatcher.reclaim_unheld(stream)
        self.dispatcher.register(stream)
        reader = asyncio.create_task(self._read(request_iterator, stream))
        try:
            # The reader ends the stream when the worker closes its side (or
            # sends garbage), so this loop waits on the frames alone: a new
            # task and an asyncio.wait for every frame were a part of the
            # server's CPU per job worth saving (docs/performance.md).
            while (frame := await stream.next_frame()) is not None:
                yield frame
            if reader.done():
                reader.result()  # a refused message ends the call with its status
        finally:
            self.dispatcher.unregister(stream)
            # A client that drops the call closes this generator while it
            # waits for a frame, with the reader still reading.
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            log.info(
                "worker %s disconnected",
                stream.worker_id,
                extra={"event": "worker_disconnected", "worker_id": stream.worker_id},
            )

    async def _read(self, requests: AsyncIterator[worker_pb2.DequeueRequest], stream: WorkerStream) -> None:
        try:
            await self._read_all(requests, stream)
        finally:
            # What is queued still goes out; then the stream ends.
            stream.end()

    async def _read_all(
        self, requests: AsyncIterator[worker_pb2.DequeueRequest], stream: WorkerStream
    ) -> None:
        async for message in requests:
            stream.last_heard = time.monotonic()
            kind = message.WhichOneof("message")
            if kind == "results":
                self._submit(stream, message.results)
            elif kind == "heartbeat":
                v = Violations()
                refs = [
                    r
                    for i, ref in enumerate(message.heartbeat.running)
                    if (r := _ref(v, f"running[{i}]", ref))
                ]
                self.dispatcher.heartbeat(stream, message.heartbeat.sequence, refs)
            elif kind == "slots":
                stream.slots = max(0, min(MAX_SLOTS, message.slots.slots))
                self.dispatcher.capacity_changed(stream)
            else:
                log.warning(
                    "worker %s sent an unexpected %s message; ignored",
                    stream.worker_id,
                    kind,
                    extra={"event": "worker_message_ignored", "worker_id": stream.worker_id},
                )

    def _submit(self, stream: WorkerStream, results: worker_pb2.JobResults) -> None:
        refused = worker_pb2.DequeueResponse()
        items = []
        for result in results.results:
            try:
                items.append((result.job, read_result(result, stream)))
            except InvalidArgument as exc:
                refused.acks.add(job=result.job, accepted=False, reason=exc.reason)
        self.dispatcher.submit_results(stream, items)
        if refused.acks:
            stream.send(refused)


def _worker_page_token(v: Violations, token: str) -> tuple[str, uuid.UUID] | None:
    """ListWorkers' cursor: the last row's worker id and stream id."""
    raw = ids.decode_page_token(token)
    if raw is None:
        return None
    worker_id, _, stream_id = raw.rpartition(" ")
    try:
        return worker_id, uuid.UUID(stream_id)
    except ValueError:
        v.add("page_token", "malformed page token", Why.INVALID_FORMAT)
        return None
