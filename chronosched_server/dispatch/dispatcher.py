"""The dispatcher: one per server process.

A single pump task does all queue work in one transaction per cycle: apply
every result that arrived since the last commit (group commit), extend the
leases heartbeats asked for, and claim jobs for every stream with free slots.
Cycles are driven by events, never by a busy loop: a result arriving, a slot
freeing, a worker subscribing, a PostgreSQL NOTIFY that the frontier gained
jobs (received on a connection of its own), and a slow timer as a safety net
for missed notifications and delayed (backoff) jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from google.protobuf import duration_pb2

from chronosched.v1 import worker_pb2
from chronosched_server import render
from chronosched_server.dispatch.presence import Presence
from chronosched_server.dispatch.streams import Held, WorkerStream
from chronosched_server.errors import DomainError, Unavailable
from chronosched_server.metrics import Metrics
from chronosched_server.storage import leases, notifications
from chronosched_server.storage.db import Database, isolating
from chronosched_server.storage.jobs import LeaseTo
from chronosched_server.storage.records import Job
from chronosched_server.storage.results import (
    ResultIn,
    ResultOut,
    apply_results,
    dags_finished,
    decide,
    fast_path,
    succeed,
    undecided,
    write,
)
from chronosched_server.transitions import Outcome
from chronosched_server.waits import cancel_all

log = logging.getLogger(__name__)

FRONTIER_CHANNEL = "chronosched_frontier"
CANCEL_CHANNEL = "chronosched_cancel"


@dataclass(frozen=True)
class DispatchConfig:
    lease: timedelta = timedelta(seconds=30)
    # Safety-net poll: catches missed notifications and jobs whose backoff or
    # delay has just run out.
    poll_interval_s: float = 0.5
    reap_interval_s: float = 1.0
    # Workers heartbeat, and the server sends keepalives, every third of the
    # lease but at least this often, so a silent peer shows within three
    # intervals (15 s at most) whatever the lease.
    max_heartbeat_interval_s: float = 5.0
    max_batch: int = 1000
    # Cycles that may be in their transaction at once. Two let the server
    # work on one cycle's results while PostgreSQL runs the other's; more
    # would only split the batches further (numbers in docs/workers.md). The
    # second starts only for a worker with a free slot, or for heartbeats
    # (Dispatcher._until_a_second_cycle_pays).
    concurrent_cycles: int = 2

    @property
    def heartbeat_interval_s(self) -> float:
        return min(self.lease.total_seconds() / 3, self.max_heartbeat_interval_s)

    @property
    def silence_timeout_s(self) -> float:
        return 3 * self.heartbeat_interval_s


class _Pending(NamedTuple):
    stream: WorkerStream
    ref: worker_pb2.JobRef
    item: ResultIn


class Dispatcher:
    def __init__(
        self,
        db: Database,
        listen_url: str,
        config: DispatchConfig | None = None,
        metrics: Metrics | None = None,
    ):
        self.db = db
        self.metrics = metrics or Metrics()
        self.listen_url = listen_url
        self.config = config or DispatchConfig()
        self.streams: set[WorkerStream] = set()
        # job_id -> stream running it on this server, for pushing cancels.
        self.owner: dict[uuid.UUID, WorkerStream] = {}
        # (job_id, attempt) -> (namespace, kind) of attempts pushed from
        # here, so their results are counted by label without reading the job.
        self._labels: dict[tuple[uuid.UUID, int], tuple[str, str]] = {}
        self._results: list[_Pending] = []
        # job_id -> (attempt, the stream asking) for the next cycle's extension.
        self._heartbeats: dict[uuid.UUID, tuple[int, leases.Holder]] = {}
        self._wake = asyncio.Event()
        # Set when a heartbeat arrives, which must not wait for a running
        # cycle: see _until_a_second_cycle_pays.
        self._heartbeat_arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._cycle_slots = asyncio.Semaphore(self.config.concurrent_cycles)
        # Every assignment carries it; rendered once.
        self._lease_duration = render.dur(self.config.lease)
        self._running: set[asyncio.Task[None]] = set()
        # Tick hand-offs under way (Dispatcher.handoff): shielded from their
        # callers, so held here until they end.
        self._handoffs: set[asyncio.Task[Job]] = set()
        # Give-backs of held jobs under way (Dispatcher._give_back).
        self._releases: set[asyncio.Task[None]] = set()
        # Set as stop() begins: streams opened from then on are refused
        # rather than kept (with no jobs) until the shutdown grace ends.
        self.stopping = False
        # This replica's open streams as ListWorkers shows them.
        self.presence = Presence(
            db, lambda: self.streams, self.config.heartbeat_interval_s, self.config.silence_timeout_s
        )

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._forever(self._pump_once, "pump")),
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._forever(self._reap_once, "reaper", self.config.reap_interval_s)),
            asyncio.create_task(self._timer()),
            asyncio.create_task(self.presence.run()),
        ]

    async def stop(self) -> None:
        self.stopping = True
        await cancel_all(self._tasks)
        if self._running or self._handoffs:
            await asyncio.wait(self._running | self._handoffs)
        # Results already received are applied before the server goes away,
        # so a worker's acknowledged-by-TCP result is not left to a retry.
        # Held jobs go back now: they would wait out their leases otherwise.
        for stream in self.streams:
            stream.slots = 0
            self._give_back(stream, len(stream.held))
        if self._releases:
            await asyncio.wait(self._releases)
        batch, self._results = self._results, []
        if batch:
            with contextlib.suppress(Exception):
                await self._transact(batch, {}, [], [])
        # Nothing will be applied from here on: end the streams now rather
        # than at the end of the gRPC grace, so workers move on at once.
        for stream in list(self.streams):
            stream.end()
        await self.presence.close()

    # -- called by the Dequeue servicer ----------------------------------

    def supersede(self, stream: WorkerStream) -> None:
        """End this server's earlier streams of the new stream's worker id: a
        worker holds one stream, so a new one means the old is dead (its end
        just has not shown yet). Jobs it would still be assigned go straight
        back. Only streams within the namespaces the new stream's token
        covers: a token for one namespace cannot end another's workers by
        reusing their id."""
        worker_id, limit = stream.worker_id, stream.namespace_limit
        replaced = [
            s
            for s in self.streams
            if s.worker_id == worker_id and (limit is None or s.namespace_limit == limit)
        ]
        for old in replaced:
            log.warning(
                "worker %s opened a new stream; ending its previous one",
                worker_id,
                extra={"event": "worker_stream_replaced", "worker_id": worker_id},
            )
            old.end()
            self.unregister(old)

    async def reclaim_unheld(self, stream: WorkerStream) -> None:
        """Before a new stream takes jobs: give back what the database leases
        to its worker id but the worker does not hold (see leases.reclaim).
        Best effort: if the database is away, those leases expire instead."""
        # Jobs an earlier stream of this worker held (never sent) go back
        # with their attempt unused first; taken back here they would spend one.
        if self._releases:
            await asyncio.wait(self._releases)
        skipped: Counter[tuple[str, str]] = Counter()
        try:
            async with self.db.transaction() as conn:
                requeued, failed = await leases.reclaim(conn, stream.holder, stream.in_flight, skipped)
                # Adopt only what the database leases to this worker: a
                # Subscribe cannot claim another worker's attempts (their
                # cancels, their slots) by naming them.
                stream.in_flight = await leases.held(conn, stream.holder, stream.in_flight)
        except DomainError as exc:
            log.warning(
                "could not check worker %s's leases (%s); they will expire",
                stream.worker_id,
                exc,
                extra={"event": "leases_unchecked", "worker_id": stream.worker_id},
            )
            return
        self.metrics.count_skipped(skipped)
        if requeued or failed:
            log.info(
                "worker %s reconnected without %d leased attempt(s): %d back to READY, %d failed",
                stream.worker_id,
                requeued + failed,
                requeued,
                failed,
                extra={
                    "event": "leases_reclaimed",
                    "worker_id": stream.worker_id,
                    "requeued": requeued,
                    "failed": failed,
                },
            )

    def register(self, stream: WorkerStream) -> None:
        """Take the stream into the cycles; UNAVAILABLE once this server is
        stopping. Its streams are ended as the stop begins, and a worker
        reconnects at once: a stream it opened here meanwhile would get no
        job and end only with the gRPC server's grace (5 s), where the refusal
        sends it on to another replica, or back to this address later."""
        if self.stopping:
            # Said, as the servicer logged the stream's connection already.
            log.info(
                "worker %s refused: this server is stopping",
                stream.worker_id,
                extra={"event": "worker_refused", "worker_id": stream.worker_id},
            )
            raise Unavailable("this server is shutting down", reason="SERVER_STOPPING")
        # First, so the worker knows its timing before any lease arrives.
        stream.send(worker_pb2.DequeueResponse(settings=self._settings()))
        self.streams.add(stream)
        self.presence.changed()
        for job_id in stream.in_flight:
            self.owner[job_id] = stream
        self._wake.set()

    def unregister(self, stream: WorkerStream) -> None:
        stream.closed = True
        self.streams.discard(stream)
        self.presence.changed()
        for job_id, attempt in stream.in_flight.items():
            if self.owner.get(job_id) is stream:
                del self.owner[job_id]
            self._labels.pop((job_id, attempt), None)
        self._give_back(stream, len(stream.held))

    def stream_counts(self) -> tuple[int, int]:
        """Open streams and their free slots (read by the metrics thread:
        copied first, as the event loop may change the set meanwhile). Slots
        a claim in progress has reserved count as free: they run nothing, and
        the gauge would otherwise dip to 0 during every idle claim cycle."""
        streams = list(self.streams)
        return len(streams), sum(max(0, s.slots - len(s.in_flight)) for s in streams if not s.closed)

    def submit_results(self, stream: WorkerStream, items: list[tuple[worker_pb2.JobRef, ResultIn]]) -> None:
        """Queue results for the next group commit; their slots are free at once."""
        for ref, item in items:
            if stream.in_flight.get(item.job_id) == ref.attempt:
                del stream.in_flight[item.job_id]
                if self.owner.get(item.job_id) is stream:
                    del self.owner[item.job_id]
            self._results.append(_Pending(stream, ref, item))
        if items:
            # Jobs held for the freed slots go out now, before the cycle
            # that applies these results (docs/workers.md, "Lookahead").
            stream.holding = True
            self._send_held(stream)
            self._wake.set()

    def heartbeat(self, stream: WorkerStream, sequence: int, refs: list[tuple[uuid.UUID, int]]) -> None:
        """Extend the named leases in the next cycle and answer the heartbeat
        once that committed: the answer is what lets the worker keep running
        them (docs/workers.md, "Leases by the worker's clock")."""
        if stream.closed:
            return
        stream.heartbeat_seq = max(stream.heartbeat_seq, sequence)
        stream.unanswered.append((sequence, refs))
        self._heartbeats.update((job_id, (attempt, stream.holder)) for job_id, attempt in refs)
        self._heartbeat_arrived.set()
        self._wake.set()

    def _settings(self) -> worker_pb2.StreamSettings:
        return worker_pb2.StreamSettings(
            lease_duration=self._lease_duration,
            heartbeat_interval=render.dur(timedelta(seconds=self.config.heartbeat_interval_s)),
            silence_timeout=render.dur(timedelta(seconds=self.config.silence_timeout_s)),
        )

    def capacity_changed(self, stream: WorkerStream) -> None:
        """The worker changed its slots: fill new ones from what is held,
        and hold nothing for a worker with none (it is draining)."""
        if stream.slots == 0:
            self._give_back(stream, len(stream.held))
        else:
            self._send_held(stream)
        self._wake.set()

    # -- the pump --------------------------------------------------------

    async def _pump_once(self) -> None:
        await self._wake.wait()
        await self._cycle_slots.acquire()
        try:
            await self._until_a_second_cycle_pays()
        except BaseException:
            self._cycle_slots.release()
            raise
        # Cleared only now: whatever arrived while all cycles were busy is
        # picked up by this one.
        self._wake.clear()
        task = asyncio.create_task(self._cycle())
        self._running.add(task)
        task.add_done_callback(self._cycle_done)

    async def _until_a_second_cycle_pays(self) -> None:
        """A second cycle at once is for a worker with a free slot that the
        running one did not reserve, or for heartbeats (a worker stops its
        runs if their answers are late), so the wait ends early for a
        heartbeat. Otherwise what waits (results, the refill of held jobs,
        slots freed meanwhile) costs less as one cycle after the running
        one: a cycle's cost is mostly per cycle, not per job
        (docs/workers.md, "Lookahead")."""
        while self._running and not self._heartbeats and not any(s.free for s in self.streams):
            self._heartbeat_arrived.clear()
            beat = asyncio.ensure_future(self._heartbeat_arrived.wait())
            try:
                await asyncio.wait({*self._running, beat}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                beat.cancel()

    def _cycle_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._cycle_slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatch cycle failed", exc_info=task.exception())

    async def _cycle(self) -> None:
        # Everything this cycle works on is taken before its first await, so
        # concurrent cycles never share a result, a heartbeat or a slot.
        batch = self._results[: self.config.max_batch]
        del self._results[: len(batch)]
        beats, self._heartbeats = self._heartbeats, {}
        answers: list[_Answers] = []
        for stream in self.streams:
            if stream.unanswered:
                answers.append((stream, stream.unanswered))
                stream.unanswered = []
        wants = [(s, s.room) for s in self.streams if s.room > 0]
        if not batch and not beats and not wants and not answers:
            return
        for stream, n in wants:
            stream.reserved += n
        started = time.perf_counter()
        try:
            await self._transact(batch, beats, wants, answers)
        finally:
            for stream, n in wants:
                stream.reserved -= n
            self.metrics.dispatch_cycle.observe(time.perf_counter() - started)
            self.metrics.dispatch_batch.observe(len(batch))

    async def _transact(
        self,
        batch: list[_Pending],
        beats: dict[uuid.UUID, tuple[int, leases.Holder]],
        wants: list[tuple[WorkerStream, int]],
        answers: list[_Answers],
    ) -> None:
        quick = fast_path([p.item for p in batch])
        plain = [p for p, q in zip(batch, quick, strict=True) if q]
        others = [p for p, q in zip(batch, quick, strict=True) if not q]
        broken = False
        try:
            # Pipelined. Plain successes go first, fenced by their attempt in
            # the statement itself; only other results (failures, repeats)
            # need their jobs locked and decided, the one answer a cycle may
            # have to wait for mid-way. Writes, heartbeats, claims and COMMIT
            # then go out together: one round trip per cycle when every
            # result is a plain success, two otherwise, whatever the sizes.
            async with self.db.pipelined_transaction(generic_plans=True) as conn:
                succeeded = await succeed(conn, [undecided(p.item) for p in plain]) if plain else None
                writes, decided = await decide(conn, [p.item for p in others])
                tally = await write(conn, writes)
                extending = await leases.extend(conn, beats, self.config.lease) if beats else None
                # Each claim names the newest heartbeat read before it was
                # queued, so surely before it ran: read here rather than when
                # the cycle began, which may be long before under load (a
                # grant named heartbeat 0 of a stream that had sent 2).
                claims = [
                    (s, s.heartbeat_seq, await leases.claim(conn, s.claim_spec, n, self.config.lease))
                    for s, n in wants
                ]
                # Last: a failing DAG's row is then locked only until the commit.
                await dags_finished(conn, tally.finished, tally.failed)
            self.metrics.count_skipped(tally.skipped)
            done = set(await succeeded.fetch()) if succeeded else set()
            extended = (
                {(e.job_id, e.attempt): e.lease_expire_time for e in await extending.fetch()}
                if extending
                else {}
            )
            claimed = [(s, seq, await claim.fetch()) for s, seq, claim in claims]
            outs: dict[int, ResultOut | None] = dict(zip(map(id, others), decided, strict=True))
            outs.update(
                (id(p), ResultOut(True, outcome=Outcome.SUCCEED)) for p in plain if p.item.job_id in done
            )
        except Unavailable:
            # Put everything back; the listener/timer wakes us when the
            # database returns. Nothing was committed.
            self._results[:0] = batch
            self._heartbeats = {**beats, **self._heartbeats}
            _unanswer(answers)
            log.warning("database unavailable; %d results wait for the next cycle", len(batch))
            await asyncio.sleep(self.config.poll_interval_s)
            self._wake.set()
            return
        except DomainError:
            # Something in the batch broke the transaction (not a plain
            # rejection, those are returned per item): apply one by one below.
            log.exception("batch of %d results failed; applying them one at a time", len(batch))
            outs, claimed, extended, broken = {}, [], {}, True
            self._heartbeats = {**beats, **self._heartbeats}
            _unanswer(answers)
            answers = []
        # Results without an outcome yet get the full decision on their own:
        # plain successes the statement passed over (stale attempt, job no
        # longer RUNNING, a repeat of an applied result: they changed nothing
        # so far, so deciding them now is the same as deciding them in their
        # place), or every result of a batch that broke its transaction.
        missing = [p for p in batch if id(p) not in outs]
        if missing:
            outs.update(await self._apply_apart(missing, together=not broken))
        # One frame per stream per cycle: its acks, then its new assignments.
        frames: dict[WorkerStream, worker_pb2.DequeueResponse] = {}
        finished: Counter[tuple[str, str, Outcome]] = Counter()
        for pending in batch:
            out = outs[id(pending)]
            if out is None:
                continue
            self._count_result(pending, out, finished)
            reason = out.rejected.reason if out.rejected else ""
            frame = frames.setdefault(pending.stream, worker_pb2.DequeueResponse())
            frame.acks.add(job=pending.ref, accepted=out.rejected is None, reason=reason)
        for stream, unanswered in answers:
            if not stream.closed:
                _answer(frames.setdefault(stream, worker_pb2.DequeueResponse()), unanswered, extended)
        self.metrics.count_results(finished)
        unsent: dict[uuid.UUID, int] = {}
        started: Counter[tuple[str, str]] = Counter()
        now = time.monotonic()
        for stream, seq, rows in claimed:
            if stream.closed:
                unsent.update((job.job_id, job.attempt) for job in rows)
                continue
            # Claimed jobs queue behind those already held, and the free
            # slots take from the front: a stream's jobs start in claim order.
            for job in rows:
                stream.held[job.job_id] = Held(job, seq, now)
                self.owner[job.job_id] = stream
            if stream.held and len(stream.in_flight) < stream.slots:
                self._feed(frames.setdefault(stream, worker_pb2.DequeueResponse()), stream, started)
        self.metrics.count_started(started)
        for stream, frame in frames.items():
            stream.send(frame)
        if unsent:
            await self._release(unsent)
        full = any(len(rows) == n for (_, n), (_, _, rows) in zip(wants, claimed, strict=False))
        if self._results or full:
            # More results queued meanwhile, or a claim took all it asked for
            # and the frontier may hold more. A claim that came back short
            # emptied what it could take; new work wakes us by notification.
            self._wake.set()

    def _feed(
        self, frame: worker_pb2.DequeueResponse, stream: WorkerStream, started: Counter[tuple[str, str]]
    ) -> None:
        """Move held jobs into the stream's slots that run nothing, adding
        their assignments to `frame`."""
        for held in stream.take_held(stream.slots - len(stream.in_flight)):
            self._assign(frame, stream, held.seq, held.job, started)

    def _send_held(self, stream: WorkerStream) -> None:
        if not stream.held or stream.closed:
            return
        frame = worker_pb2.DequeueResponse()
        started: Counter[tuple[str, str]] = Counter()
        self._feed(frame, stream, started)
        if started:
            self.metrics.count_started(started)
            stream.send(frame)

    def _give_back(self, stream: WorkerStream, n: int) -> None:
        """Return the `n` oldest of the stream's held jobs to READY with
        their attempt unused (the worker never saw them), in a task."""
        refs: dict[uuid.UUID, int] = {}
        for held in stream.take_held(n):
            refs[held.job.job_id] = held.job.attempt
            if self.owner.get(held.job.job_id) is stream:
                del self.owner[held.job.job_id]
        if refs:
            task = asyncio.create_task(self._release(refs))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    def _assign(
        self,
        frame: worker_pb2.DequeueResponse,
        stream: WorkerStream,
        seq: int,
        job: Job,
        started: Counter[tuple[str, str]],
    ) -> None:
        """Book a job leased to `stream` (claimed, or handed off by Tick) as
        its own and add its assignment to the stream's next frame; count it
        in `started` by (namespace, kind)."""
        stream.in_flight[job.job_id] = job.attempt
        self.owner[job.job_id] = stream
        self._labels[job.job_id, job.attempt] = label = (job.namespace_id, job.kind)
        started[label] += 1
        if job.parents_done_time is not None and job.start_time is not None:
            latency = (job.start_time - job.parents_done_time).total_seconds()
            self.metrics.parent_child_latency.observe(max(latency, 0.0))
        _add_assignment(frame, job, self._lease_duration, seq)

    # -- hand-off ----------------------------------------------------------

    async def handoff(
        self, namespace_id: str, kind: str, enqueue: Callable[[LeaseTo | None], Awaitable[Job]]
    ) -> Job:
        """Run `enqueue` (one run of (namespace, kind)), offering it a slot
        of a connected worker that serves them, so that it may start its job
        leased to that worker without a claim (docs/workers.md, "Hand-off").
        `enqueue` gets None when no stream has a free slot. A job it returns
        RUNNING is sent to the worker, or taken back to READY when the stream
        closed meanwhile. Shielded: a caller that goes away (a client's
        deadline) cannot leave a job leased and never sent."""
        streams = [s for s in self.streams if s.free > 0 and s.serves(namespace_id, kind)]
        if not streams:
            return await enqueue(None)
        task = asyncio.create_task(self._hand_off(max(streams, key=lambda s: s.free), enqueue))
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)
        return await asyncio.shield(task)

    async def _hand_off(
        self, stream: WorkerStream, enqueue: Callable[[LeaseTo | None], Awaitable[Job]]
    ) -> Job:
        # Read before the enqueue's statement, as a cycle reads it before
        # its claim: the grant then follows that heartbeat.
        seq = stream.heartbeat_seq
        # Held as a cycle holds its claims' slots, so no cycle fills it meanwhile.
        stream.reserved += 1
        try:
            job = await enqueue(LeaseTo(stream.worker_id, self.config.lease))
        finally:
            stream.reserved -= 1
        if job.state != "RUNNING":
            return job
        if stream.closed:
            await self._release({job.job_id: job.attempt})
            return job
        frame = worker_pb2.DequeueResponse()
        started: Counter[tuple[str, str]] = Counter()
        self._assign(frame, stream, seq, job, started)
        self.metrics.count_started(started)
        stream.send(frame)
        self.metrics.handoffs.labels(job.namespace_id, job.kind).inc()
        return job

    def _count_result(
        self, pending: _Pending, out: ResultOut, finished: Counter[tuple[str, str, Outcome]]
    ) -> None:
        # Attempts this process did not push (adopted on a reconnect) have
        # no labels here; they are counted without them.
        namespace, kind = self._labels.pop((pending.item.job_id, pending.ref.attempt), ("", ""))
        if out.rejected is not None:
            self.metrics.stale_results.inc()
            return
        if out.outcome is not None:
            finished[namespace, kind, out.outcome] += 1

    async def _release(self, unsent: dict[uuid.UUID, int]) -> None:
        """Hand back jobs claimed for a stream that closed meanwhile; if this
        fails, their leases expire and the reaper brings them back instead."""
        try:
            async with self.db.transaction() as conn:
                await leases.release_unsent(conn, unsent)
        except DomainError:
            log.warning("could not release %d unsent jobs; their leases will expire", len(unsent))

    async def _apply_apart(self, pendings: list[_Pending], *, together: bool) -> dict[int, ResultOut | None]:
        """Apply results in a transaction of their own: all in one, or, to
        isolate one that breaks its transaction, one at a time. None marks a
        result queued again because the database is away (not acked)."""

        async def apply(group: Sequence[_Pending]) -> list[ResultOut]:
            skipped: Counter[tuple[str, str]] = Counter()
            async with self.db.pipelined_transaction(generic_plans=True) as conn:
                outs = await apply_results(conn, [p.item for p in group], skipped)
            self.metrics.count_skipped(skipped)
            return outs

        outs: dict[int, ResultOut | None] = {}
        for group, got in await isolating(pendings, apply, together=together):
            if isinstance(got, Unavailable):
                self._results.extend(group)
                outs.update(dict.fromkeys(map(id, group)))
            elif isinstance(got, DomainError):
                (alone,) = group
                outs[id(alone)] = ResultOut(False, got)
            else:
                outs.update(zip(map(id, group), got, strict=True))
        return outs

    # -- background loops -------------------------------------------------

    async def _forever(self, step: Callable[[], Awaitable[None]], name: str, every: float = 0.0) -> None:
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatcher %s step failed; retrying", name)
                await asyncio.sleep(self.config.poll_interval_s)
            if every:
                await asyncio.sleep(every)

    async def _reap_once(self) -> None:
        skipped: Counter[tuple[str, str]] = Counter()
        try:
            async with self.db.transaction() as conn:
                requeued, failed = await leases.reap(conn, skipped)
        except Unavailable:
            return
        self.metrics.count_skipped(skipped)
        if requeued or failed:
            self.metrics.lease_expiries.inc(requeued + failed)
            log.info(
                "lease expiry: %d jobs back to READY, %d failed",
                requeued,
                failed,
                extra={"event": "lease_expired", "requeued": requeued, "failed": failed},
            )
            self._wake.set()

    async def _timer(self) -> None:
        tick = min(self.config.poll_interval_s, self.config.heartbeat_interval_s)
        since_keepalive = 0.0
        while True:
            await asyncio.sleep(tick)
            since_keepalive += tick
            if self._heartbeats or any(s.room for s in self.streams):
                self._wake.set()
            self._give_back_stale()
            if since_keepalive >= self.config.heartbeat_interval_s:
                since_keepalive = 0.0
                beat = worker_pb2.Keepalive()
                beat.server_time.GetCurrentTime()
                for stream in self.streams:
                    stream.send(worker_pb2.DequeueResponse(keepalive=beat))
            self._end_silent_streams()

    def _give_back_stale(self) -> None:
        """Give back held jobs that waited longer than a quarter of the
        heartbeat interval, and hold nothing more for their streams until a
        result comes in. Bounded so that a job sent late still reaches the
        worker with most of its lease left: the worker counts the lease from
        a heartbeat sent before the claim (docs/workers.md, "Lookahead")."""
        oldest = time.monotonic() - self.config.heartbeat_interval_s / 4
        for stream in self.streams:
            stale = sum(1 for held in stream.held.values() if held.since < oldest)
            if stale:
                stream.holding = False
                self._give_back(stream, stale)

    def _end_silent_streams(self) -> None:
        """End streams whose worker has said nothing (not even a heartbeat)
        for the silence timeout: the connection is dead even if TCP has not
        noticed. Their leases stay: the worker may still run those jobs, and
        stops them by its own clock before the leases expire."""
        now = time.monotonic()
        for stream in [s for s in self.streams if now - s.last_heard > self.config.silence_timeout_s]:
            log.warning(
                "worker %s silent for %.1fs; ending its stream",
                stream.worker_id,
                now - stream.last_heard,
                extra={"event": "worker_silent", "worker_id": stream.worker_id},
            )
            stream.end()
            self.unregister(stream)

    async def _listen(self) -> None:
        await notifications.listen_forever(
            self.listen_url,
            [FRONTIER_CHANNEL, CANCEL_CHANNEL],
            self._on_notify,
            self._wake.set,
            name="dispatcher",
        )

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == FRONTIER_CHANNEL:
            self._wake.set()
        elif channel == CANCEL_CHANNEL:
            self._push_cancels(payload)

    def _push_cancels(self, payload: str) -> None:
        reason, refs = leases.parse_cancel_payload(payload)
        frames: dict[WorkerStream, worker_pb2.DequeueResponse] = {}
        for job_id, attempt in refs:
            stream = self.owner.get(job_id)
            if stream is None:
                continue
            held = stream.held.get(job_id)
            if held is not None and held.job.attempt == attempt:
                # Never sent: it is simply not sent now.
                del stream.held[job_id]
                del self.owner[job_id]
            elif stream.in_flight.get(job_id) == attempt:
                frame = frames.setdefault(stream, worker_pb2.DequeueResponse())
                frame.cancels.add(job=worker_pb2.JobRef(job_id=str(job_id), attempt=attempt), reason=reason)
        for stream, frame in frames.items():
            stream.send(frame)


def _add_assignment(
    frame: worker_pb2.DequeueResponse, claimed: Job, lease: duration_pb2.Duration, seq: int
) -> None:
    # Rendered in place: building the Job and the assignment's sub-messages
    # apart and handing them to `add` copies each of them once more, about a
    # third of what an assignment costs the cycle.
    execution_timeout = claimed.execution_timeout
    assert execution_timeout is not None, "claims carry the definition's execution timeout"
    assignment = frame.assignments.add(heartbeat_sequence=seq)
    render.fill_job(assignment.job, claimed)
    assignment.lease_expire_time.CopyFrom(assignment.job.lease_expire_time)
    assignment.lease_duration.CopyFrom(lease)
    assignment.execution_timeout.FromTimedelta(execution_timeout)


# Heartbeats of one stream taken by a cycle: (sequence, attempts named).
_Answers = tuple[WorkerStream, list[tuple[int, list[tuple[uuid.UUID, int]]]]]


def _unanswer(answers: list[_Answers]) -> None:
    """Give heartbeats back to their streams: the next cycle answers them."""
    for stream, unanswered in answers:
        stream.unanswered[:0] = unanswered


def _answer(
    frame: worker_pb2.DequeueResponse,
    unanswered: list[tuple[int, list[tuple[uuid.UUID, int]]]],
    extended: dict[tuple[uuid.UUID, int], datetime],
) -> None:
    for seq, refs in unanswered:
        ack = frame.heartbeat_acks.add(sequence=seq)
        for job_id, attempt in refs:
            ref = worker_pb2.JobRef(job_id=str(job_id), attempt=attempt)
            expiry = extended.get((job_id, attempt))
            if expiry is None:
                ack.lost.append(ref)
            else:
                ack.extended.add(job=ref, lease_expire_time=render.ts(expiry))
