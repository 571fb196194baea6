"""The Dequeue stream at the protocol level, driven by a raw gRPC client."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc
import pytest

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2, worker_pb2, worker_pb2_grpc
from tests.support import grpc_helpers
from tests.support.builders import RpcFailure, dag, dag_jobs, definition, namespace
from tests.support.server import Stubs, serving

J = job_pb2.Job


class RawWorker(grpc_helpers.RawWorker):
    def __init__(self, api: Stubs, **subscribe: Any):
        subscribe.setdefault("worker_id", "w1")
        subscribe.setdefault("kinds", ["noop"])
        super().__init__(worker_pb2_grpc.WorkerServiceStub(api.channel), **subscribe)

    async def complete(self, job: J, **result: Any) -> worker_pb2.ResultAck:
        await self.send_result(job.job_id, job.attempt, result)
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
    await worker.send_result(got[0].job.job_id, 7)
    ack = await worker.next("ack")
    assert not ack.accepted and ack.reason == "STALE_ATTEMPT"
    job = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=got[0].job.job_id))
    assert job.state == J.STATE_RUNNING
    worker.call.cancel()


async def test_a_cycle_answers_a_worker_in_one_frame(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    for _ in range(6):
        await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    worker = RawWorker(api, namespaces=[ns], slots=3)
    await worker.start()
    first = [(await worker.next("assignment")).job for _ in range(3)]
    frames = worker.frames
    # Three results in one message free three slots at once: one cycle
    # applies them and fills the slots, and one frame carries all of it.
    await worker.call.write(RawWorker.results([(j.job_id, j.attempt, {}) for j in first]))
    acks = [await worker.next("ack") for _ in range(3)]
    second = [(await worker.next("assignment")).job for _ in range(3)]
    assert [a.job.job_id for a in acks] == [j.job_id for j in first] and all(a.accepted for a in acks)
    assert len({j.job_id for j in first + second}) == 6
    assert worker.frames == frames + 1
    worker.call.cancel()


async def test_invalid_results_in_a_batch_are_refused_alone(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    worker = RawWorker(api, namespaces=[ns])
    await worker.start()
    job = (await worker.next("assignment")).job
    batch = RawWorker.results([("not-a-uuid", 1, {}), (job.job_id, job.attempt, {"ok": True})])
    await worker.call.write(batch)
    acks = {a.job.job_id: a for a in [await worker.next("ack"), await worker.next("ack")]}
    assert (acks["not-a-uuid"].accepted, acks["not-a-uuid"].reason) == (False, "INVALID_ARGUMENT")
    assert acks[job.job_id].accepted
    done = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=job.job_id))
    assert done.state == J.STATE_SUCCEEDED and dict(done.result) == {"ok": True}
    worker.call.cancel()


async def test_repeats_and_failures_in_one_batch_take_the_full_path(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    for _ in range(2):
        await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    worker = RawWorker(api, namespaces=[ns], slots=2)
    await worker.start()
    a, b = [(await worker.next("assignment")).job for _ in range(2)]
    batch = RawWorker.results([(a.job_id, a.attempt, {"n": 1}), (a.job_id, a.attempt, {"n": 2})])
    failed = batch.results.results.add(job=worker_pb2.JobRef(job_id=b.job_id, attempt=b.attempt))
    failed.error, failed.non_retryable = "boom", True
    await worker.call.write(batch)
    acks = [await worker.next("ack") for _ in range(3)]
    # In order: the success, its repeat (acknowledged, changes nothing), the failure.
    assert [(x.job.job_id, x.accepted) for x in acks] == [
        (a.job_id, True),
        (a.job_id, True),
        (b.job_id, True),
    ]
    done = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=a.job_id))
    assert done.state == J.STATE_SUCCEEDED and dict(done.result) == {"n": 1}
    lost = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=b.job_id))
    assert lost.state == J.STATE_FAILED and lost.error == "boom"
    worker.call.cancel()


async def test_resent_results_are_acknowledged_and_change_nothing(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    for _ in range(2):
        await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    worker = RawWorker(api, namespaces=[ns], slots=2)
    await worker.start()
    a, b = [(await worker.next("assignment")).job for _ in range(2)]
    first = [(a.job_id, 1, {"v": "first"}), (b.job_id, 1, {"v": "first"})]
    await worker.call.write(RawWorker.results(first))
    assert all([(await worker.next("ack")).accepted for _ in range(2)])
    # As after a reconnect whose acks were lost: the same results again, in
    # one message, plus one for an attempt that never existed.
    again = [(a.job_id, 1, {"v": "second"}), (b.job_id, 1, {"v": "second"}), (a.job_id, 2, {})]
    await worker.call.write(RawWorker.results(again))
    acks = [await worker.next("ack") for _ in range(3)]
    assert [(x.job.job_id, x.job.attempt, x.accepted, x.reason) for x in acks] == [
        (a.job_id, 1, True, ""),
        (b.job_id, 1, True, ""),
        (a.job_id, 2, False, "STALE_ATTEMPT"),
    ]
    for job in (a, b):
        got = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=job.job_id))
        assert got.state == J.STATE_SUCCEEDED and dict(got.result) == {"v": "first"}
    worker.call.cancel()


async def test_the_success_statement_completes_what_the_rule_book_completes(api: Stubs) -> None:
    from datetime import timedelta

    from chronosched_server.storage import leases, results
    from chronosched_server.transitions import JobFacts, Outcome, decide_complete

    ns = await namespace(api)
    d = await definition(api, ns)
    ticked = [
        (await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))).job_id
        for _ in range(3)
    ]
    async with api.server.db.transaction() as conn:
        claim = await leases.claim(
            conn, leases.ClaimSpec("w", [ns], False, ["noop"]), 2, timedelta(seconds=30)
        )
        running = sorted(str(job.job_id) for job in await claim.fetch())
    (ready,) = set(ticked) - set(running)
    fresh, stale = running
    async with api.server.db.transaction() as conn:
        cur = await results.succeed(
            conn,
            [
                (uuid.UUID(fresh), 1, "{}", None, None, False),
                (uuid.UUID(stale), 2, "{}", None, None, False),
                (uuid.UUID(ready), 1, "{}", None, None, False),
            ],
        )
        done = {str(job_id) for job_id in await cur.fetch()}
    assert done == {fresh, ready}
    # What the statement applied the pure rules call SUCCEED; what it left, not.
    assert decide_complete(JobFacts("RUNNING", 1, 3), 1) is Outcome.SUCCEED
    assert decide_complete(JobFacts("READY", 1, 3), 1) is Outcome.SUCCEED
    states = {
        j: (await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=j))).state for j in ticked
    }
    assert states == {fresh: J.STATE_SUCCEEDED, stale: J.STATE_RUNNING, ready: J.STATE_SUCCEEDED}


async def test_a_reconnecting_worker_gives_back_leases_it_does_not_hold(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    for _ in range(2):
        await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    first = RawWorker(api, namespaces=[ns], slots=2, worker_id="w-back")
    await first.start()
    kept, lost = [(await first.next("assignment")).job for _ in range(2)]
    await first.close()
    # The worker comes back holding only `kept`: `lost` was an assignment it
    # never received. It is taken back at once, not after its 30 s lease,
    # and comes round again (after its 1 s retry backoff) as attempt 2.
    held = [worker_pb2.JobRef(job_id=kept.job_id, attempt=kept.attempt)]
    second = RawWorker(api, namespaces=[ns], slots=2, worker_id="w-back", running=held)
    t0 = time.perf_counter()
    await second.start()
    again = await second.next("assignment", wait_s=10.0)
    assert (again.job.job_id, again.job.attempt) == (lost.job_id, 2)
    assert time.perf_counter() - t0 < 10.0
    assert "worker reconnected without it on attempt 1 (worker w-back)" in again.job.error
    still = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=kept.job_id))
    assert (still.state, still.attempt, still.worker_id) == (J.STATE_RUNNING, 1, "w-back")
    # A result for the attempt it held is applied; one for the taken-back
    # attempt is stale.
    await second.send_result(kept.job_id, 1)
    await second.send_result(lost.job_id, 1)
    acks = {
        (a.job.job_id, a.accepted, a.reason) for a in [await second.next("ack"), await second.next("ack")]
    }
    assert acks == {(kept.job_id, True, ""), (lost.job_id, False, "STALE_ATTEMPT")}
    await second.close()


async def test_a_new_stream_of_a_worker_id_ends_its_old_one(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    for _ in range(2):
        await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    old = RawWorker(api, namespaces=[ns], slots=1, worker_id="w-twice")
    await old.start()
    held = (await old.next("assignment")).job
    # The old stream looks alive to the server; the worker reconnects anyway.
    new = RawWorker(
        api,
        namespaces=[ns],
        slots=1,
        worker_id="w-twice",
        running=[worker_pb2.JobRef(job_id=held.job_id, attempt=held.attempt)],
    )
    await new.start()
    assert old.reader is not None
    await asyncio.wait_for(old.reader, 5.0)  # the server ended the old stream
    assert await old.call.code() == grpc.StatusCode.OK
    # The held job stays with the worker; its result on the new stream is applied.
    await new.send_result(held.job_id, held.attempt)
    ack = await new.next("ack")
    assert ack.accepted and ack.job.job_id == held.job_id
    other = (await new.next("assignment")).job
    assert other.job_id != held.job_id and other.attempt == 1
    await new.close()


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

    from chronosched_server.storage import leases

    ns = await namespace(api)
    d = await definition(api, ns)
    ticked = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    spec = leases.ClaimSpec("gone", [ns], False, ["noop"])
    async with api.server.db.transaction() as conn:
        claim = await leases.claim(conn, spec, 1, timedelta(seconds=30))
        rows = await claim.fetch()
    assert [str(r.job_id) for r in rows] == [ticked.job_id]
    running = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=ticked.job_id))
    assert running.state == J.STATE_RUNNING and running.worker_id == "gone"
    async with api.server.db.transaction() as conn:
        assert await leases.release_unsent(conn, {rows[0].job_id: rows[0].attempt}) == 1
    back = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=ticked.job_id))
    assert back.state == J.STATE_READY and back.attempt == 1 and back.worker_id == ""
    # Back in the frontier: a worker gets it.
    worker = RawWorker(api, namespaces=[ns])
    await worker.start()
    got = await worker.next("assignment")
    assert got.job.job_id == ticked.job_id and got.job.attempt == 1
    worker.call.cancel()


async def test_first_frame_tells_the_stream_timing(database_url: str) -> None:
    async with serving(database_url, lease_s=6.0) as api:
        worker = RawWorker(api, namespaces=["nobody"])
        await worker.start()
        settings = await worker.next("settings")
        await worker.close()
    # A third of the lease (at most 5 s); silence: three intervals.
    assert (settings.lease_duration.seconds, settings.heartbeat_interval.seconds) == (6, 2)
    assert settings.silence_timeout.seconds == 6


async def test_heartbeats_are_answered_with_extended_and_lost_leases(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    for _ in range(2):
        await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    worker = RawWorker(api, namespaces=[ns], slots=2)
    await worker.start()
    first, second = [await worker.next("assignment") for _ in range(2)]
    # Both leases were granted after the Subscribe only (sequence 0).
    assert (first.heartbeat_sequence, second.heartbeat_sequence) == (0, 0)
    before = first.lease_expire_time.ToDatetime()
    # The second job is completed from outside: its lease is gone.
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=second.job.job_id, attempt=1))
    held = (first.job.job_id, 1)
    unknown = (str(uuid.uuid4()), 1)
    await worker.heartbeat(1, held, (second.job.job_id, 1), unknown)
    ack = await worker.next("heartbeat_ack")
    assert ack.sequence == 1
    assert [(e.job.job_id, e.job.attempt) for e in ack.extended] == [held]
    assert ack.extended[0].lease_expire_time.ToDatetime() > before
    assert sorted((r.job_id, r.attempt) for r in ack.lost) == sorted([(second.job.job_id, 1), unknown])
    job = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=first.job.job_id))
    assert job.lease_expire_time == ack.extended[0].lease_expire_time
    # An idle heartbeat is answered too.
    await worker.heartbeat(2)
    ack = await worker.next("heartbeat_ack")
    assert (ack.sequence, list(ack.extended), list(ack.lost)) == (2, [], [])
    await worker.close()


async def test_a_grant_names_the_newest_heartbeat_read_before_it(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    worker = RawWorker(api, namespaces=[ns], slots=1)
    await worker.start()
    await worker.heartbeat(1)
    await worker.heartbeat(2)
    # Two cycles may run at once, one per heartbeat, and the second may
    # commit first: the answers can come in either order.
    acks = {(await worker.next("heartbeat_ack")).sequence for _ in range(2)}
    assert acks == {1, 2}
    await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    grant = await worker.next("assignment")
    assert grant.heartbeat_sequence == 2
    await worker.close()


async def test_the_server_ends_a_stream_it_hears_nothing_from(database_url: str) -> None:
    # Lease 0.9 s: heartbeat interval 0.3 s, silence timeout 0.9 s.
    async with serving(database_url, lease_s=0.9) as api:
        worker = RawWorker(api, namespaces=["quiet"])
        await worker.start()
        began = time.monotonic()
        assert worker.reader is not None
        await asyncio.wait_for(worker.reader, 5)
        ended_after = time.monotonic() - began
        dispatcher = api.server.dispatcher
        assert not [s for s in dispatcher.streams if s.worker_id == "w1"]
        assert await worker.call.code() == grpc.StatusCode.OK
    assert 0.8 <= ended_after <= 2.5, ended_after


async def test_the_fenced_success_path_is_the_rule_book_in_every_state(api: Stubs) -> None:
    """A success (streamed, or a unary CompleteJob) goes through succeed_jobs
    first and, if that passed it over, through the full decision (as the
    dispatcher and CompleteJob do). The statement alone completes a job
    exactly when transitions.decide_complete says SUCCEED, whatever the job's
    state, the attempt named (or none) and the worker named (or none); the
    full path then only answers (a repeat, a refusal). Each case runs in a
    transaction rolled back."""
    from chronosched_server.errors import DomainError
    from chronosched_server.storage import results
    from chronosched_server.transitions import JobFacts, Outcome, decide_complete

    ns = await namespace(api)
    d = await definition(api, ns)
    job_id = uuid.UUID(
        (await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))).job_id
    )
    states = ["PENDING", "READY", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"]
    fast_cases = []
    # The attempt is leased to worker "w"; a stream's result names its
    # worker (the holder fence), an operator's names none.
    rule_cases = []
    for state in states:
        for attempt in (1, 2, None):
            for holder in ("w", "other", None):
                try:
                    facts = JobFacts(state, 1, 3, "w")
                    rule = decide_complete(facts, attempt, by=holder) is Outcome.SUCCEED
                except DomainError:
                    rule = False
                async with api.server.db.pool.connection() as conn, conn.transaction(force_rollback=True):
                    await conn.execute(
                        b"update jobs set state = %s, attempt = 1, worker_id = 'w' where job_id = %s",
                        (state, job_id),
                    )
                    sent = await results.succeed(conn, [(job_id, attempt, "{}", None, holder, False)])
                    fast = await sent.fetch() == [job_id]
                    if not fast:
                        item = results.ResultIn(job_id, attempt, True, {}, worker_id=holder)
                        await results.apply_results(conn, [item])
                    cur = await conn.execute(b"select state from jobs where job_id = %s", (job_id,))
                    row = await cur.fetchone()
                assert row is not None
                completed = row["state"] == "SUCCEEDED" and state != "SUCCEEDED"
                assert completed is rule, (state, attempt, holder)
                assert rule or not fast, (state, attempt, holder)
                if fast:
                    fast_cases.append((state, attempt, holder))
                if rule:
                    rule_cases.append((state, attempt, holder))
    assert fast_cases == rule_cases
    assert fast_cases == [
        (state, attempt, holder)
        for state in ("READY", "RUNNING")
        for attempt in (1, None)
        for holder in ("w", None)
    ]


async def test_a_stream_opened_once_the_server_is_stopping_is_refused(
    api: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    # Server.stop ends the streams first (the dispatcher's stop) and stops
    # gRPC only after; a worker reconnecting in between used to be taken in,
    # given no job, and kept until the gRPC grace ran out.
    caplog.set_level("INFO", logger="chronosched_server")
    ns = await namespace(api)
    await api.server.dispatcher.stop()
    call = worker_pb2_grpc.WorkerServiceStub(api.channel).Dequeue()
    subscribe = worker_pb2.Subscribe(worker_id="late", namespaces=[ns], kinds=["noop"], slots=1)
    await call.write(worker_pb2.DequeueRequest(subscribe=subscribe))

    async def read_all() -> None:
        async for _ in call:
            pass

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await asyncio.wait_for(read_all(), 10)
    failure = RpcFailure(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "SERVER_STOPPING")
    assert api.server.dispatcher.streams == set()
    # The log says so after its "connected" line, which has no "disconnected".
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("worker_refused") == 1
    assert events.index("worker_connected") < events.index("worker_refused")
    assert "worker_disconnected" not in events
