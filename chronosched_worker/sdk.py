"""The Worker: register handlers by job kind, hold a Dequeue stream to the
server, run what it pushes, report results, survive reconnects, drain on
shutdown.

    worker = Worker("127.0.0.1:50051", namespaces=["team-a"])

    @worker.handler("resize")
    async def resize(ctx: JobContext) -> dict[str, object]:
        ...
        return {"width": 640}

    worker.run_forever()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import grpc
from google.protobuf import duration_pb2

from chronosched.v1 import job_pb2, worker_pb2, worker_pb2_grpc
from chronosched_worker import logs
from chronosched_worker.connection import (
    Backoff,
    ChannelOptions,
    DequeueStream,
    StreamSilent,
    channel_options,
)
from chronosched_worker.context import Handler, JobContext, JobFailed
from chronosched_worker.metrics import WorkerMetrics
from chronosched_worker.prefetch import AutoPrefetch
from chronosched_worker.runner import Outcome, describe, dict_to_struct, execute, struct_to_dict
from chronosched_worker.spool import Spool

log = logging.getLogger("chronosched.worker")

H = TypeVar("H", bound=Handler)
JobKey = tuple[str, int]

# Formats the server accepts (worker.proto, definition.proto, docs/limits.md);
# checked here so a typo fails at start-up, not as a stream the server keeps
# refusing.
_WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_KIND = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_SLOTS = 1000

# Stream timing until the server's StreamSettings arrive: heartbeat this
# often, and give the stream up after this long without a word.
DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_SILENCE_S = 15.0
# Floor for the heartbeat period, so a tiny lease cannot spin the loop.
MIN_HEARTBEAT_S = 0.05
# Stopping an attempt whose lease may lapse (docs/workers.md, "Leases by the
# worker's clock"): begin this long before the lease could end, so that its
# processes are gone before then: a margin for clock rates and scheduling
# (at most a tenth of the lease) plus the clean-up grace (at most a quarter).
MAX_LEASE_MARGIN_S = 1.0
MAX_STOP_GRACE_S = 5.0
# Heartbeat sequences remembered per stream; an answer or a grant naming an
# older one is treated as unconfirmed.
MARKS_KEPT = 256
# How long shutdown waits for the server to acknowledge the last results.
ACK_WAIT_S = 5.0
# Past the grace, how long cancelled handlers get for their clean-up: the
# command kind needs up to 5 s between SIGTERM and SIGKILL.
CANCEL_CLEANUP_S = 7.0
# A stream that stayed up this long counts as healthy: the next failure
# starts the backoff from the bottom again.
HEALTHY_STREAM_S = 1.0


def default_worker_id() -> str:
    """hostname-pid-random: unique per process, readable in the server's logs."""
    host = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname())[:100]
    if not host[:1].isalnum():
        host = "w" + host
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def stop_timing(lease_s: float) -> tuple[float, float]:
    """(margin, grace) for a lease: stopping begins margin + grace before the
    lease could end, and clean-up gets at most grace."""
    return min(MAX_LEASE_MARGIN_S, lease_s / 10), min(MAX_STOP_GRACE_S, lease_s / 4)


@dataclass(eq=False)
class _Running:
    """Book-keeping for one attempt in flight."""

    ref: worker_pb2.JobRef
    ctx: JobContext
    # 0 when the assignment named no lease duration.
    lease_s: float
    started: float
    # Monotonic time before which the server surely keeps the lease: the
    # moment the worker sent the heartbeat (or Subscribe) that the newest
    # grant or confirmed extension counts from, plus the lease. Nothing from
    # the server's clock enters it.
    lease_until: float
    task: asyncio.Task[None] | None = None
    # Set once the worker asked the attempt to stop for its lease.
    stopping: bool = False
    stop_requested: float = 0.0
    warned: bool = False

    @property
    def stop_at(self) -> float:
        margin, grace = stop_timing(self.lease_s)
        return self.lease_until - margin - grace


@dataclass(eq=False)
class _Session:
    """One Dequeue stream and the timing the worker keeps for it."""

    stream: DequeueStream
    # Heartbeat sequence -> monotonic time it was queued (0: the Subscribe).
    # Queued, not written: the earlier moment is the safe one to count from.
    marks: dict[int, float]
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    silence_s: float = DEFAULT_SILENCE_S
    next_seq: int = 1
    heartbeat_due: float = 0.0
    # Set by the server's first message: the stream is up.
    heard: bool = False


class Worker:
    """A chronosched worker process: handlers by kind, one Dequeue stream.

    `concurrency` is the number of slots (jobs run at once). `prefetch` more
    attempts may be leased to it beyond those and wait here for a slot, so a
    slot that frees starts its next job without waiting for the server; they
    are leased and renewed like running ones (docs/workers.md, "Prefetch").
    `"auto"` (the default) prefetches a round of `concurrency` while recent
    handler runs were short (a median of 10 ms or less), more while they
    were tiny (1 ms or less: up to 64 held in all, at most 8 rounds), and
    none otherwise; a number fixes it (0: never).
    `grace_s` is how
    long shutdown waits for in-flight jobs before abandoning them to their
    leases. `channel_options` are merged over the defaults (keepalive, 64 MiB
    messages, fast channel reconnects); `credentials` switches to TLS.
    With `state_dir`, results not yet acknowledged are kept there too, so a
    worker restarted under the same `worker_id` reports them instead of
    losing the runs (see chronosched_worker.spool). `token` is sent as
    `authorization: Bearer <token>` on the stream: a worker token of the
    namespaces it serves (for all_namespaces, one for every namespace).

    `connected` is set while a Dequeue stream is up, for health checks.
    `metrics` holds the worker's Prometheus metrics (a registry of its own);
    with `metrics_port` they are served at http://`metrics_host`:PORT/metrics
    while the worker runs (0 picks a free port; `metrics_port` then says which).
    """

    def __init__(
        self,
        server: str,
        *,
        worker_id: str | None = None,
        namespaces: Sequence[str] = (),
        all_namespaces: bool = False,
        concurrency: int = 16,
        prefetch: int | Literal["auto"] = "auto",
        grace_s: float = 30.0,
        channel_options: ChannelOptions = (),
        credentials: grpc.ChannelCredentials | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        token: str | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
    ) -> None:
        if isinstance(namespaces, str):
            raise TypeError("namespaces must be a sequence of namespace ids, not one string")
        if not server:
            raise ValueError("server must be HOST:PORT")
        if all_namespaces and namespaces:
            raise ValueError("pass namespaces or all_namespaces=True, not both")
        if not all_namespaces and not namespaces:
            raise ValueError("pass at least one namespace, or all_namespaces=True")
        for ns in namespaces:
            if not _NAMESPACE.fullmatch(ns):
                raise ValueError(f"invalid namespace id {ns!r}")
        worker_id = default_worker_id() if worker_id is None else worker_id
        if not _WORKER_ID.fullmatch(worker_id):
            raise ValueError(f"invalid worker_id {worker_id!r}: must match {_WORKER_ID.pattern}")
        if not 1 <= concurrency <= MAX_SLOTS:
            raise ValueError(f"concurrency must be 1 to {MAX_SLOTS}, got {concurrency}")
        if prefetch != "auto" and not (
            isinstance(prefetch, int)
            and not isinstance(prefetch, bool)
            and 0 <= prefetch <= MAX_SLOTS - concurrency
        ):
            raise ValueError(f"prefetch must be 'auto' or 0 to {MAX_SLOTS - concurrency}, got {prefetch!r}")
        if not (grace_s >= 0 and math.isfinite(grace_s)):
            raise ValueError(f"grace_s must be a finite number >= 0, got {grace_s}")
        if metrics_port is not None and not 0 <= metrics_port <= 65535:
            raise ValueError(f"metrics_port must be 0 to 65535, got {metrics_port}")

        self.server = server
        self.worker_id = worker_id
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.all_namespaces = all_namespaces
        self.concurrency = concurrency
        self.prefetch = prefetch
        self._auto = AutoPrefetch(concurrency, MAX_SLOTS - concurrency) if prefetch == "auto" else None
        # Handlers run at most `concurrency` at a time; prefetched attempts
        # wait here, leased, for a slot.
        self._slots = asyncio.Semaphore(concurrency)
        self.grace_s = grace_s
        self._channel_options = channel_options
        self._credentials = credentials
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._handlers: dict[str, Handler] = {}
        self._spool = Spool(state_dir, worker_id) if state_dir is not None else None

        self._started = False
        # Attempts in flight, and finished attempts whose result the server
        # has not acknowledged yet. Both outlive any one stream.
        self._running: dict[JobKey, _Running] = {}
        self._unacked: dict[JobKey, worker_pb2.JobResult] = {}
        self._stream: DequeueStream | None = None
        self._current: _Session | None = None
        self._draining = False
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._all_acked = asyncio.Event()
        self._all_acked.set()
        self._lease_wake = asyncio.Event()
        self._force = asyncio.Event()
        self.connected = asyncio.Event()
        self.metrics = WorkerMetrics(lambda: len(self._running), concurrency, self.connected.is_set)
        self._metrics_address = (metrics_host, metrics_port) if metrics_port is not None else None
        # The bound /metrics port once served (still set after the run ends).
        self.metrics_port: int | None = None
        # For the connect/reconnect lines: whether a stream was ever up, and
        # since when none is.
        self._ever_connected = False
        self._down_since: float | None = None

    # --- registration -------------------------------------------------------

    def handler(self, kind: str) -> Callable[[H], H]:
        """Decorator: `@worker.handler("kind")` registers a sync or async handler."""

        def register(fn: H) -> H:
            self.add_handler(kind, fn)
            return fn

        return register

    def add_handler(self, kind: str, fn: Handler) -> None:
        if self._started:
            raise RuntimeError("handlers must be registered before the worker runs")
        if not _KIND.fullmatch(kind):
            raise ValueError(f"invalid kind {kind!r}: must match {_KIND.pattern}")
        if kind in self._handlers:
            raise ValueError(f"a handler for kind {kind!r} is already registered")
        if not callable(fn):
            raise TypeError(f"handler for {kind!r} is not callable")
        self._handlers[kind] = fn

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    def _fields(self, event: str, rj: _Running | None = None, **more: object) -> dict[str, object]:
        """`extra=` of a log line: its event, this worker, the attempt's job
        (namespace, DAG, job, attempt, kind) and `more` (chronosched_worker.logs)."""
        fields: dict[str, object] = {"event": event}
        if rj is not None:
            ctx = rj.ctx
            fields["namespace"] = ctx.namespace_id
            if ctx.dag_id:
                fields["dag_id"] = ctx.dag_id
            fields.update(job_id=ctx.job_id, attempt=ctx.attempt, kind=ctx.kind)
        fields["worker_id"] = self.worker_id
        fields.update(more)
        return fields

    # --- running ------------------------------------------------------------

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain (a second signal skips the grace)."""
        asyncio.run(self._run_until_signalled())

    async def _run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: signal.Signals) -> None:
            if stop.is_set():
                log.warning(
                    "%s again: abandoning running jobs now",
                    signum.name,
                    extra=self._fields("shutdown_forced", signal=signum.name),
                )
                self._force.set()
            else:
                log.info(
                    "%s: draining", signum.name, extra=self._fields("shutdown_requested", signal=signum.name)
                )
                stop.set()

        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await self.run(stop)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set, then shut down gracefully and return.

        Without `stop` it serves until cancelled (which abandons running jobs
        at once, like a shutdown past its grace).
        """
        if self._started:
            raise RuntimeError("a Worker runs only once")
        if not self._handlers:
            raise ValueError("register at least one handler before running the worker")
        self._started = True
        # The application's logging decides, if it set any up.
        logs.default_output(log)
        stop = stop if stop is not None else asyncio.Event()
        if self._spool is not None:
            self._unacked.update(self._spool.load())
            if self._unacked:
                self._all_acked.clear()
                log.info(
                    "resending %d result(s) an earlier run of worker %s could not report",
                    len(self._unacked),
                    self.worker_id,
                    extra=self._fields("results_resent", results=len(self._unacked)),
                )

        if self._metrics_address is not None:
            self.metrics_port = self.metrics.serve(*self._metrics_address)
            log.info(
                "metrics on http://%s:%d/metrics",
                self._metrics_address[0],
                self.metrics_port,
                extra=self._fields("metrics_started", port=self.metrics_port),
            )
        options = channel_options(self._channel_options)
        if self._credentials is None:
            channel = grpc.aio.insecure_channel(self.server, options=options)
        else:
            channel = grpc.aio.secure_channel(self.server, self._credentials, options=options)
        log.info(
            "worker %s serving kinds %s from %s with %d slots via %s",
            self.worker_id,
            ",".join(self.kinds),
            "all namespaces" if self.all_namespaces else ",".join(self.namespaces),
            self.concurrency,
            self.server,
            extra=self._fields("worker_started", server=self.server, slots=self.concurrency),
        )
        connector = asyncio.create_task(self._connect_forever(channel), name="chronosched-connector")
        keeper = asyncio.create_task(self._keep_leases(), name="chronosched-leases")
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({stopped, connector, keeper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (connector, keeper):
                if task in done:
                    # Both run until cancelled; ending early is a bug worth surfacing.
                    task.result()
                    raise RuntimeError(f"{task.get_name()} ended unexpectedly")
            await self._drain(connector)
        finally:
            stopped.cancel()
            await self._abandon_all(connector, keeper)
            await channel.close()
            if self.metrics_port is not None:
                # Off the event loop: shutdown waits for a scrape in progress.
                await asyncio.to_thread(self.metrics.stop)
        log.info("worker %s stopped", self.worker_id, extra=self._fields("worker_stopped"))

    async def _drain(self, connector: asyncio.Task[None]) -> None:
        self._draining = True
        log.info(
            "shutting down: %d job(s) running, grace %gs",
            len(self._running),
            self.grace_s,
            extra=self._fields("worker_draining", running=len(self._running), grace_s=self.grace_s),
        )
        if self._stream is not None:
            self._send(worker_pb2.DequeueRequest(slots=worker_pb2.SlotUpdate(slots=0)))

        deadline = time.monotonic() + self.grace_s
        # A loop, not one wait: an assignment already in flight when the
        # SlotUpdate left may still arrive and start a job.
        while self._running and not self._force.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await self._wait(self._idle, remaining):
                break
        if self._running:
            log.warning(
                "grace %gs passed; abandoning %d job(s) to their leases: %s",
                self.grace_s,
                len(self._running),
                ", ".join(f"{job_id}#{attempt}" for job_id, attempt in self._running),
                extra=self._fields("jobs_abandoned", running=len(self._running)),
            )
            await self._cancel_jobs()

        if self._unacked and not self._force.is_set() and not await self._wait(self._all_acked, ACK_WAIT_S):
            log.warning(
                "%d result(s) not acknowledged at exit; their leases will bring the jobs back",
                len(self._unacked),
                extra=self._fields("results_unacknowledged", results=len(self._unacked)),
            )

        self._closing = True
        if self._stream is not None:
            self._stream.close_writing()
            await asyncio.wait({connector}, timeout=CANCEL_CLEANUP_S)

    async def _wait(self, event: asyncio.Event, limit_s: float) -> bool:
        """Wait for `event` up to `limit_s`; a second signal cuts the wait short."""
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._force.wait())}
        try:
            await asyncio.wait(waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return event.is_set()

    async def _cancel_jobs(self) -> None:
        tasks = [rj.task for rj in self._running.values() if rj.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_CLEANUP_S)

    async def _abandon_all(self, *background: asyncio.Task[None]) -> None:
        """The last resort on any exit path: nothing of ours keeps running."""
        self._closing = True
        await self._cancel_jobs()
        for task in background:
            task.cancel()
        await asyncio.wait(background)
        for task in background:
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "%s failed",
                    task.get_name(),
                    exc_info=task.exception(),
                    extra=self._fields("worker_task_failed", task=task.get_name()),
                )

    # --- the stream ---------------------------------------------------------

    async def _connect_forever(self, channel: grpc.aio.Channel) -> None:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        backoff = Backoff()
        while not self._closing:
            began = time.monotonic()
            try:
                await self._session(stub)
                why = "the server ended the stream"
            except grpc.aio.AioRpcError as exc:
                why = f"{exc.code().name}: {exc.details()}"
            except StreamSilent as exc:
                why = str(exc)
            except (grpc.aio.UsageError, asyncio.InvalidStateError, TimeoutError) as exc:
                # Writes on a call that already ended, or a half-close the
                # server never answered.
                why = describe(exc)
            except Exception as exc:
                # A bug on our side must not end a worker that has jobs in
                # flight; log it loudly and start a fresh stream.
                log.exception("Dequeue stream failed unexpectedly", extra=self._fields("stream_failed"))
                why = describe(exc)
            if self._closing:
                return
            if self._down_since is None:
                self._down_since = time.monotonic()
            if time.monotonic() - began >= HEALTHY_STREAM_S:
                backoff.reset()
            delay = backoff.next_delay()
            # Log the first failure of a run loudly, then only at doublings,
            # so an hour-long outage leaves a dozen lines, not thousands.
            failures = backoff.failures
            level = logging.WARNING if failures & (failures - 1) == 0 else logging.DEBUG
            log.log(
                level,
                "stream to %s lost (%s); reconnecting in %.2fs (attempt %d), %d job(s) still running",
                self.server,
                why,
                delay,
                failures,
                len(self._running),
                extra=self._fields(
                    "worker_disconnected",
                    server=self.server,
                    reason=why,
                    reconnect_in_s=round(delay, 3),
                    failures=failures,
                    running=len(self._running),
                ),
            )
            await asyncio.sleep(delay)

    async def _session(self, stub: worker_pb2_grpc.WorkerServiceAsyncStub) -> None:
        stream = DequeueStream(stub.Dequeue(metadata=self._metadata))
        session = _Session(stream, marks={0: time.monotonic()})
        # Attempts still running and those whose results are resent below:
        # the server takes back any other lease it has for this worker id.
        holding = [rj.ref for rj in self._running.values()] + [r.job for r in self._unacked.values()]
        # A draining worker subscribes with no free capacity: it only reports
        # what it still runs. The server leases up to slots + prefetch.
        slots = 0 if self._draining else self.concurrency + self.prefetching
        stream.send(
            worker_pb2.DequeueRequest(
                subscribe=worker_pb2.Subscribe(
                    worker_id=self.worker_id,
                    namespaces=[] if self.all_namespaces else list(self.namespaces),
                    all_namespaces=self.all_namespaces,
                    kinds=list(self._handlers),
                    slots=slots,
                    running=holding,
                )
            )
        )
        if self._running:
            # Renew at once: the leases ran down while we were away.
            self._queue_heartbeat(session)
        else:
            session.heartbeat_due = time.monotonic() + session.heartbeat_s
        # One by one: the writer merges them into messages of bounded size.
        for result in self._unacked.values():
            stream.send_results([result])
        # Everything above was queued without yielding, so no result can
        # slip between the snapshot and this stream taking over.
        self._stream = stream
        self._current = session
        self.connected.set()
        self._lease_wake.set()
        try:
            await stream.run(functools.partial(self._on_message, session))
        finally:
            if self._stream is stream:
                self._stream = None
                self._current = None
                self.connected.clear()
            self._lease_wake.set()

    def _send(self, request: worker_pb2.DequeueRequest) -> None:
        if self._stream is not None:
            self._stream.send(request)

    def _on_message(self, session: _Session, message: worker_pb2.DequeueResponse) -> None:
        # Settings first, then acks, then assignments, then cancels: a cancel
        # may name an attempt assigned in the same frame. A keepalive only
        # proves the stream is alive; reading it was the point.
        if not session.heard:
            session.heard = True
            self._on_connected()
        if message.HasField("settings"):
            self._on_settings(session, message.settings)
        for beat_ack in message.heartbeat_acks:
            self._on_heartbeat_ack(session, beat_ack)
        for ack in message.acks:
            self._on_ack(ack)
        for assignment in message.assignments:
            self._on_assignment(session, assignment)
        for cancel in message.cancels:
            self._on_cancel(cancel)

    def _on_connected(self) -> None:
        if not self._ever_connected:
            self._ever_connected = True
            self._down_since = None
            log.info(
                "worker %s connected to %s",
                self.worker_id,
                self.server,
                extra=self._fields("worker_connected", server=self.server),
            )
            return
        down_s = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        self._down_since = None
        self.metrics.reconnects.inc()
        log.info(
            "worker %s reconnected to %s after %.1fs without a stream; %d job(s) still running",
            self.worker_id,
            self.server,
            down_s,
            len(self._running),
            extra=self._fields(
                "worker_reconnected", server=self.server, down_s=round(down_s, 3), running=len(self._running)
            ),
        )

    def _on_settings(self, session: _Session, settings: worker_pb2.StreamSettings) -> None:
        if settings.HasField("heartbeat_interval"):
            session.heartbeat_s = max(MIN_HEARTBEAT_S, _seconds(settings.heartbeat_interval))
            session.heartbeat_due = min(session.heartbeat_due, time.monotonic() + session.heartbeat_s)
        if settings.HasField("silence_timeout"):
            session.silence_s = max(3 * MIN_HEARTBEAT_S, _seconds(settings.silence_timeout))
        self._lease_wake.set()

    def _on_heartbeat_ack(self, session: _Session, ack: worker_pb2.HeartbeatAck) -> None:
        sent = session.marks.get(ack.sequence)
        if sent is None:
            return  # too old to count from; the next answer will do
        for extension in ack.extended:
            rj = self._running.get((extension.job.job_id, extension.job.attempt))
            if rj is not None:
                # The database extended it after the heartbeat left us.
                rj.lease_until = max(rj.lease_until, sent + rj.lease_s)
        for ref in ack.lost:
            rj = self._running.get((ref.job_id, ref.attempt))
            if rj is not None and not rj.stopping:
                self._stop_for_lease(
                    rj, "lease lost: the server no longer leases this attempt to this worker"
                )
        self._lease_wake.set()

    def _on_assignment(self, session: _Session, assignment: worker_pb2.Assignment) -> None:
        job = assignment.job
        key = (job.job_id, job.attempt)
        if key in self._running or key in self._unacked:
            log.warning(
                "job %s attempt %d assigned again; already have it",
                job.job_id,
                job.attempt,
                extra=self._fields("job_assigned_again", job_id=job.job_id, attempt=job.attempt),
            )
            return
        ctx = _context_of(job)
        handler = self._handlers.get(job.kind)
        if handler is None:
            handler = _missing_handler(job.kind, self.worker_id)
        lease_s = _seconds(assignment.lease_duration) if assignment.HasField("lease_duration") else 0.0
        timeout_s = _seconds(assignment.execution_timeout)
        # The lease was granted after the server read this heartbeat; one we
        # no longer remember leaves the lease unconfirmed (stopped at once).
        granted_after = session.marks.get(assignment.heartbeat_sequence, -math.inf)
        rj = _Running(
            ref=worker_pb2.JobRef(job_id=job.job_id, attempt=job.attempt),
            ctx=ctx,
            lease_s=lease_s,
            started=time.monotonic(),
            lease_until=granted_after + lease_s,
        )
        self._running[key] = rj
        if lease_s > 0:
            ctx.cancelled.set_lease_deadline(rj.stop_at)
            # A lease shorter than the stream's interval needs heartbeats sooner.
            session.heartbeat_due = min(session.heartbeat_due, time.monotonic() + self._heartbeat_s(session))
        self._idle.clear()
        # Per-job lines are guarded: their `extra` dict is built before the
        # logger could drop the line, a cost a busy worker that logs at
        # WARNING should not pay twice per job.
        if log.isEnabledFor(logging.INFO):
            log.info(
                "job %s attempt %d started (kind %s)",
                job.job_id,
                job.attempt,
                job.kind,
                extra=self._fields("job_started", rj),
            )
        rj.task = asyncio.create_task(
            self._run_job(rj, handler, timeout_s if timeout_s > 0 else None),
            name=f"chronosched-job-{job.job_id}-{job.attempt}",
        )
        self._lease_wake.set()

    def _on_cancel(self, cancel: worker_pb2.CancelJob) -> None:
        rj = self._running.get((cancel.job.job_id, cancel.job.attempt))
        if rj is None:
            return  # finished already; its result will be rejected or was
        log.info(
            "job %s attempt %d cancelled by the server: %s",
            rj.ref.job_id,
            rj.ref.attempt,
            cancel.reason,
            extra=self._fields("job_cancel_requested", rj, reason=cancel.reason),
        )
        rj.ctx.cancelled.set(cancel.reason or "cancelled by the server")

    def _on_ack(self, ack: worker_pb2.ResultAck) -> None:
        key = (ack.job.job_id, ack.job.attempt)
        if self._unacked.pop(key, None) is None:
            return
        if self._spool is not None:
            self._spool.drop(key)
        if not ack.accepted:
            log.info(
                "result of job %s attempt %d rejected by the server: %s",
                ack.job.job_id,
                ack.job.attempt,
                ack.reason or "no reason given",
                extra=self._fields(
                    "result_rejected", job_id=ack.job.job_id, attempt=ack.job.attempt, reason=ack.reason
                ),
            )
        if not self._unacked:
            self._all_acked.set()

    # --- jobs ---------------------------------------------------------------

    async def _run_job(self, rj: _Running, handler: Handler, timeout_s: float | None) -> None:
        key = (rj.ref.job_id, rj.ref.attempt)
        try:
            waited = self._slots.locked()
            async with self._slots:
                if waited and rj.ctx.cancelled.is_set():
                    # Cancelled (or its lease lapsed) while prefetched: the
                    # handler never runs; reported as a running job's stop is.
                    outcome = Outcome.failed(f"cancelled before it started: {rj.ctx.cancelled.reason}")
                else:
                    began = time.monotonic()
                    outcome = await execute(handler, rj.ctx, timeout_s=timeout_s)
                    self._ran(time.monotonic() - began)
        except asyncio.CancelledError:
            self.metrics.finished(rj.ctx.kind, "abandoned", None)
            log.info(
                "job %s attempt %d abandoned after %.3fs (not reported)",
                rj.ref.job_id,
                rj.ref.attempt,
                time.monotonic() - rj.started,
                extra=self._fields("job_abandoned", rj),
            )
            raise
        except Exception as exc:  # a bug in the runner must not take the worker down
            log.exception(
                "job %s attempt %d: runner failed",
                rj.ref.job_id,
                rj.ref.attempt,
                extra=self._fields("job_runner_failed", rj),
            )
            outcome = Outcome.failed(describe(exc))
        finally:
            del self._running[key]
            if not self._running:
                self._idle.set()
        self._report(rj, outcome)

    @property
    def prefetching(self) -> int:
        """Attempts leased beyond the slots now (with "auto", as last decided)."""
        return self._auto.current if self._auto is not None else int(self.prefetch)

    def _ran(self, run_s: float) -> None:
        if self._auto is None:
            return
        prefetch = self._auto.observe(run_s)
        if prefetch is None:
            return
        log.info(
            "prefetch %s: handler runs are %s",
            prefetch,
            "short" if prefetch else "no longer short",
            extra=self._fields("prefetch_changed", prefetch=prefetch),
        )
        if not self._draining:
            self._send(
                worker_pb2.DequeueRequest(slots=worker_pb2.SlotUpdate(slots=self.concurrency + prefetch))
            )

    def _report(self, rj: _Running, outcome: Outcome) -> None:
        result = worker_pb2.JobResult(
            job=rj.ref,
            success=outcome.success,
            error=outcome.error,
            non_retryable=outcome.non_retryable,
        )
        if outcome.success:
            result.result.CopyFrom(dict_to_struct(outcome.result))
        self._unacked[(rj.ref.job_id, rj.ref.attempt)] = result
        self._all_acked.clear()
        if self._spool is not None:
            try:
                self._spool.save(result)
            except (OSError, ValueError) as exc:
                log.warning(
                    "could not spool the result of job %s: %s",
                    rj.ref.job_id,
                    exc,
                    extra=self._fields("result_spool_failed", rj),
                )
        # If no stream is up, the next one resends everything unacknowledged.
        if self._stream is not None:
            self._stream.send_results([result])
        elapsed = time.monotonic() - rj.started
        self.metrics.finished(rj.ctx.kind, "succeeded" if outcome.success else "failed", elapsed)
        if not log.isEnabledFor(logging.INFO):
            return
        if outcome.success:
            log.info(
                "job %s attempt %d succeeded in %.3fs",
                rj.ref.job_id,
                rj.ref.attempt,
                elapsed,
                extra=self._fields("job_succeeded", rj, duration_s=round(elapsed, 3)),
            )
        else:
            log.info(
                "job %s attempt %d failed in %.3fs%s: %s",
                rj.ref.job_id,
                rj.ref.attempt,
                elapsed,
                " (non-retryable)" if outcome.non_retryable else "",
                outcome.error[:500],
                extra=self._fields(
                    "job_failed",
                    rj,
                    duration_s=round(elapsed, 3),
                    error=outcome.error[:2000],
                    non_retryable=outcome.non_retryable,
                ),
            )

    # --- leases -------------------------------------------------------------

    def _queue_heartbeat(self, session: _Session) -> None:
        seq = session.next_seq
        session.next_seq += 1
        now = time.monotonic()
        session.marks[seq] = now
        if len(session.marks) > MARKS_KEPT:
            del session.marks[min(session.marks)]
        session.heartbeat_due = now + self._heartbeat_s(session)
        session.stream.send(
            worker_pb2.DequeueRequest(
                heartbeat=worker_pb2.Heartbeat(
                    running=[rj.ref for rj in self._running.values()], sequence=seq
                )
            )
        )

    def _heartbeat_s(self, session: _Session) -> float:
        # The server's interval, or a third of a shorter lease an assignment named.
        leases = [rj.lease_s / 3 for rj in self._running.values() if rj.lease_s > 0]
        return max(MIN_HEARTBEAT_S, min([session.heartbeat_s, *leases]))

    def _stop_for_lease(self, rj: _Running, reason: str) -> None:
        rj.stopping = True
        rj.stop_requested = time.monotonic()
        _, grace = stop_timing(rj.lease_s)
        log.warning(
            "job %s attempt %d: %s; stopping it",
            rj.ref.job_id,
            rj.ref.attempt,
            reason,
            extra=self._fields("job_lease_stopping", rj, reason=reason),
        )
        rj.ctx.cancelled.set(reason, grace_s=grace)

    async def _keep_leases(self) -> None:
        """Heartbeat, watch the stream for silence, stop attempts whose lease
        may lapse.

        A heartbeat naming every running attempt leaves every heartbeat
        interval, also when nothing runs. Each attempt's lease counts from
        the moment the worker sent the heartbeat that the server's newest
        answer (or the grant itself) names; once no answer came for nearly a
        lease (cut off, server or database gone), the attempt is stopped so
        that its processes are gone before the server could give the job to
        anyone else. A stream that hears nothing from the server for the
        silence timeout is given up and reconnected.
        """
        while True:
            self._lease_wake.clear()
            now = time.monotonic()
            wake_at = math.inf
            session = self._current
            if session is not None:
                silent_for = now - session.stream.last_heard
                if silent_for > session.silence_s:
                    session.stream.abandon(f"no word from the server for {silent_for:.1f}s")
                else:
                    if now >= session.heartbeat_due:
                        self._queue_heartbeat(session)
                    wake_at = min(session.heartbeat_due, session.stream.last_heard + session.silence_s)
            for rj in self._running.values():
                if rj.lease_s <= 0:
                    continue
                stop_at = rj.stop_at
                rj.ctx.cancelled.set_lease_deadline(stop_at)
                if not rj.stopping:
                    if now >= stop_at:
                        unconfirmed = now - rj.lease_until + rj.lease_s
                        self._stop_for_lease(
                            rj,
                            f"lease may lapse: no heartbeat confirmed for {unconfirmed:.1f}s"
                            f" of a {rj.lease_s:g}s lease",
                        )
                    else:
                        wake_at = min(wake_at, stop_at)
                margin, grace = stop_timing(rj.lease_s)
                if rj.stopping and not rj.warned:
                    # Past its clean-up grace and into the end of its lease.
                    overdue = max(rj.lease_until - margin, rj.stop_requested + grace)
                    if now >= overdue:
                        rj.warned = True
                        log.error(
                            "job %s attempt %d still runs as its lease may end: its handler ignores "
                            "cancellation, so another worker may run the job at the same time",
                            rj.ref.job_id,
                            rj.ref.attempt,
                            extra=self._fields("job_ignores_cancel", rj),
                        )
                    else:
                        wake_at = min(wake_at, overdue)
            timeout = None if math.isinf(wake_at) else max(0.0, wake_at - time.monotonic())
            if timeout is None or timeout > 0:
                # Not asyncio.wait_for: on 3.11 it can swallow a cancellation
                # that lands as the event fires, leaving this loop immortal.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._lease_wake.wait()


def _context_of(job: job_pb2.Job) -> JobContext:
    return JobContext(
        job_id=job.job_id,
        namespace_id=job.namespace_id,
        dag_id=job.dag_id,
        key=job.key,
        kind=job.kind,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        payload=struct_to_dict(job.payload),
        def_id=job.def_id,
        def_version=job.def_version,
    )


def _missing_handler(kind: str, worker_id: str) -> Handler:
    # Only a misbehaving server sends a kind we did not subscribe to; fail
    # the attempt (retryable: another worker may serve the kind).
    def fail(ctx: JobContext) -> None:
        raise JobFailed(f"worker {worker_id} has no handler for kind {kind!r}")

    return fail
