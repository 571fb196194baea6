"""Subscribe.lookahead: the server leases jobs to a worker ahead of its free
slots, holds them, and sends each the moment a result frees a slot. A held
job the worker never saw goes back to READY with its attempt unused when
the stream ends, the worker's slots go to 0, it waits too long, or the
server stops; a cancelled one is never sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import psycopg
import pytest

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2, worker_pb2
from chronosched_server.dispatch.streams import WorkerStream
from tests.api.test_dequeue import RawWorker
from tests.support.builders import dag, definition, namespace
from tests.support.locks import open_transaction, until_waiting
from tests.support.server import Stubs, serving
from tests.support.waiting import eventually, poll, stays

pytestmark = pytest.mark.timeout(60)
J = job_pb2.Job


async def jobs_by_state(database_url: str, ns: str) -> dict[tuple[str, int, str], int]:
    """(state, attempt, worker_id) -> how many of the namespace's jobs."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "select state, attempt, worker_id, count(*) from jobs where namespace_id = %s"
            " group by state, attempt, worker_id",
            (ns,),
        )
        return {(state, attempt, worker): n for state, attempt, worker, n in await cur.fetchall()}


def stream_of(api: Stubs, worker_id: str) -> WorkerStream:
    (stream,) = [s for s in api.server.dispatcher.streams if s.worker_id == worker_id]
    return stream


async def ticks(api: Stubs, ns: str, def_id: str, n: int) -> list[str]:
    """n READY jobs, enqueued before any worker connects (so none is handed off)."""
    req = definition_pb2.TickRequest(namespace_id=ns, def_id=def_id)
    return [(await api.definitions.Tick(req)).job_id for _ in range(n)]


async def answered(worker: RawWorker, job: J) -> tuple[worker_pb2.ResultAck, J]:
    """Report `job` done; its ack and the next assignment, in whichever
    order they come (a held job goes out before the cycle that acks)."""
    await worker.send_result(job.job_id, job.attempt)
    got: dict[str, object] = {}
    while len(got) < 2:
        which, item = await asyncio.wait_for(worker.inbox.get(), 10.0)
        if which in ("ack", "assignment"):
            assert which not in got, (which, item)
            got[which] = item
        else:
            assert which == "keepalive", (which, item)
    ack, assignment = got["ack"], got["assignment"]
    assert isinstance(ack, worker_pb2.ResultAck) and isinstance(assignment, worker_pb2.Assignment)
    assert ack.accepted and ack.job.job_id == job.job_id
    return ack, assignment.job


def only_keepalives(worker: RawWorker) -> bool:
    """Whether all the worker has received and not read are keepalives
    (which come every heartbeat interval); reads them."""
    kinds = []
    while not worker.inbox.empty():
        kinds.append(worker.inbox.get_nowait()[0])
    return all(kind == "keepalive" for kind in kinds)


async def holding(api: Stubs, worker_id: str, n: int) -> WorkerStream:
    stream = stream_of(api, worker_id)
    await eventually(lambda: len(stream.held) == n, what=f"{n} jobs held for {worker_id}")
    return stream


@dataclass
class SentAndHeld:
    ns: str
    ticked: list[str]  # the namespace's jobs, in claim order
    worker: RawWorker
    sent: list[J]  # one per slot
    stream: WorkerStream


async def sent_and_held(
    api: Stubs, *, jobs: int = 3, slots: int = 1, lookahead: int = 2, worker_id: str = "w1"
) -> SentAndHeld:
    """`jobs` READY jobs, and a worker that got the first `slots` of them
    while the server holds the next `lookahead`."""
    ns = await namespace(api)
    d = await definition(api, ns)
    ticked = await ticks(api, ns, d.def_id, jobs)
    worker = RawWorker(api, namespaces=[ns], slots=slots, lookahead=lookahead, worker_id=worker_id)
    await worker.start()
    sent = [(await worker.next("assignment")).job for _ in range(slots)]
    return SentAndHeld(ns, ticked, worker, sent, await holding(api, worker_id, lookahead))


async def until_the_held_went_back(database_url: str, ns: str) -> None:
    """Until the two held jobs are READY again at attempt 1, the sent one RUNNING."""

    async def back() -> bool:
        return await jobs_by_state(database_url, ns) == {("RUNNING", 1, "w1"): 1, ("READY", 1, ""): 2}

    await poll(back, within=5.0, what="the two held jobs READY again at attempt 1")


async def test_held_jobs_go_out_one_per_freed_slot_in_claim_order(api: Stubs, database_url: str) -> None:
    setup = await sent_and_held(api, jobs=4)
    ns, ticked, worker, stream = setup.ns, setup.ticked, setup.worker, setup.stream
    (first,) = setup.sent
    # Three leased to the worker (one sent, two held), the fourth waits.
    assert await jobs_by_state(database_url, ns) == {("RUNNING", 1, "w1"): 3, ("READY", 1, ""): 1}
    # ListWorkers counts the held ones (its rows are refreshed every
    # heartbeat interval; written here at once).
    await api.server.dispatcher.presence.sync()
    listed = await api.workers.ListWorkers(worker_pb2.ListWorkersRequest(namespace_id=ns))
    assert [(w.slots, w.jobs_in_flight) for w in listed.workers] == [(1, 3)]
    held = [str(job_id) for job_id in stream.held]
    assert [first.job_id, *held] == ticked[:3]
    order = [first.job_id]
    job = first
    for _ in range(3):
        _, job = await answered(worker, job)
        # Never more sent and unanswered than the worker's one slot.
        assert len(stream.in_flight) == 1
        order.append(job.job_id)
    assert order == ticked
    assert job.attempt == 1 and job.state == J.STATE_RUNNING
    await worker.send_result(job.job_id, job.attempt)
    assert (await worker.next("ack")).accepted
    assert not stream.in_flight and not stream.held
    await worker.close()
    assert await jobs_by_state(database_url, ns) == {("SUCCEEDED", 1, "w1"): 4}


async def test_held_jobs_go_back_with_their_attempt_when_the_stream_ends(
    api: Stubs, database_url: str
) -> None:
    setup = await sent_and_held(api)
    await setup.worker.close()
    await until_the_held_went_back(database_url, setup.ns)
    # The one the worker got keeps its lease: the worker may still run it.
    got = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=setup.ns, job_id=setup.sent[0].job_id))
    assert (got.state, got.attempt) == (J.STATE_RUNNING, 1)


async def test_held_jobs_go_back_when_the_worker_has_no_slots(api: Stubs, database_url: str) -> None:
    setup = await sent_and_held(api)
    worker, stream = setup.worker, setup.stream
    (sent,) = setup.sent
    await worker.call.write(worker_pb2.DequeueRequest(slots=worker_pb2.SlotUpdate(slots=0)))
    await until_the_held_went_back(database_url, setup.ns)
    # Given back for the slots, not for waiting too long (which would also
    # stop the holding).
    assert stream.holding
    # A draining worker's result frees nothing to hold or send.
    await worker.send_result(sent.job_id, sent.attempt)
    assert (await worker.next("ack")).accepted
    await stays(lambda: not stream.held and not stream.in_flight, for_s=0.6, what="nothing held or sent")
    await worker.close()


async def test_a_held_job_cancelled_is_never_sent(api: Stubs, database_url: str) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    first_dag = await dag(api, ns, d.def_id, ["a"], [])
    second_dag = await dag(api, ns, d.def_id, ["b"], [])
    third_dag = await dag(api, ns, d.def_id, ["c"], [])
    worker = RawWorker(api, namespaces=[ns], slots=1, lookahead=2)
    await worker.start()
    sent = (await worker.next("assignment")).job
    stream = await holding(api, "w1", 2)
    assert sent.dag_id == first_dag.dag_id
    await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=second_dag.dag_id))
    await eventually(lambda: len(stream.held) == 1, what="the cancelled job no longer held")
    _, following = await answered(worker, sent)
    assert following.dag_id == third_dag.dag_id
    await worker.send_result(following.job_id, following.attempt)
    assert (await worker.next("ack")).accepted
    await worker.close()
    assert await jobs_by_state(database_url, ns) == {("SUCCEEDED", 1, "w1"): 2, ("CANCELLED", 1, "w1"): 1}


async def test_jobs_held_too_long_go_back_and_holding_waits_for_a_result(database_url: str) -> None:
    # Lease 2.4 s: heartbeat interval 0.8 s, so a job held over 0.2 s goes back.
    async with serving(database_url, lease_s=2.4) as api:
        ns = await namespace(api)
        d = await definition(api, ns)
        await ticks(api, ns, d.def_id, 3)
        worker = RawWorker(api, namespaces=[ns], slots=1, lookahead=2)
        await worker.start()
        sent = (await worker.next("assignment")).job
        stream = stream_of(api, "w1")
        await until_the_held_went_back(database_url, ns)
        assert not stream.holding
        # The worker's one slot is busy and it holds nothing: no claim
        # takes the READY jobs back for it (the poll runs every 0.5 s).
        await worker.heartbeat(1, (sent.job_id, sent.attempt))
        assert [r.job.job_id for r in (await worker.next("heartbeat_ack")).extended] == [sent.job_id]
        await stays(lambda: not stream.held, for_s=1.2, what="nothing held again")
        await until_the_held_went_back(database_url, ns)
        # Its result frees the slot: the next job comes, at its first attempt.
        _, following = await answered(worker, sent)
        assert following.attempt == 1 and not following.error
        assert stream.holding
        await worker.close()


async def test_a_new_stream_of_the_worker_gets_its_held_jobs_at_the_same_attempt(api: Stubs) -> None:
    setup = await sent_and_held(api, worker_id="w-again")
    ns, ticked, old = setup.ns, setup.ticked, setup.worker
    (sent,) = setup.sent
    # The worker reconnects holding the one it got: those it never saw are
    # not taken back as lost assignments (which would spend an attempt).
    new = RawWorker(
        api,
        namespaces=[ns],
        slots=3,
        worker_id="w-again",
        running=[worker_pb2.JobRef(job_id=sent.job_id, attempt=sent.attempt)],
    )
    await new.start()
    got = [(await new.next("assignment")).job for _ in range(2)]
    assert sorted(j.job_id for j in got) == sorted(ticked[1:])
    assert [(j.attempt, j.error) for j in got] == [(1, ""), (1, "")]
    await old.close()
    await new.close()


async def test_held_jobs_go_back_when_the_server_stops(database_url: str) -> None:
    async with serving(database_url) as api:
        setup = await sent_and_held(api)
    await setup.worker.close()
    assert await jobs_by_state(database_url, setup.ns) == {("RUNNING", 1, "w1"): 1, ("READY", 1, ""): 2}


async def test_lookahead_is_validated(api: Stubs) -> None:
    call = api.workers.Dequeue()
    sub = worker_pb2.Subscribe(worker_id="w", namespaces=["ns"], kinds=["noop"], slots=1, lookahead=1001)
    await call.write(worker_pb2.DequeueRequest(subscribe=sub))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "subscribe.lookahead" in (info.value.details() or "")
    assert "subscribe.slots" not in (info.value.details() or "")


async def test_an_idle_worker_with_lookahead_gets_no_empty_frames(api: Stubs) -> None:
    ns = await namespace(api)
    worker = RawWorker(api, namespaces=[ns], slots=2, lookahead=4)
    await worker.start()
    await worker.next("settings")
    # The poll cycle claims for it every 0.5 s and finds nothing: no frame
    # (keepalives come every 5 s).
    await stays(lambda: worker.frames == 1, for_s=1.2, what="only the settings frame")
    await worker.close()


@asynccontextmanager
async def result_blocked_on_its_row(database_url: str, worker: RawWorker, job: J) -> AsyncIterator[None]:
    """Hold `job`'s row locked while its result is sent, until a cycle's
    transaction waits for the lock; release it on leaving."""
    async with open_transaction(database_url) as holder:
        await holder.execute("select 1 from jobs where job_id = %s for update", (job.job_id,))
        await worker.send_result(job.job_id, job.attempt)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watch:
            await until_waiting(watch, 1, "the cycle applying the first result")
        yield


async def test_a_free_slot_gets_a_second_cycle_while_one_waits(api: Stubs, database_url: str) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    ticked = await ticks(api, ns, d.def_id, 3)
    worker = RawWorker(api, namespaces=[ns], slots=2)
    await worker.start()
    first, second = [(await worker.next("assignment")).job for _ in range(2)]
    async with result_blocked_on_its_row(database_url, worker, first):
        # The second result frees a slot the blocked cycle did not reserve:
        # another cycle applies it and fills the slot meanwhile.
        ack, third = await answered(worker, second)
        assert ack.job.job_id == second.job_id and third.job_id == ticked[2]
        # The first is still being applied.
        assert only_keepalives(worker) and len(api.server.dispatcher._running) == 1
    assert (await worker.next("ack")).job.job_id == first.job_id
    await worker.close()


async def test_with_every_slot_fed_from_held_jobs_a_cycle_waits_for_the_running_one(
    api: Stubs, database_url: str
) -> None:
    setup = await sent_and_held(api, jobs=6, slots=2, lookahead=4)
    worker, stream = setup.worker, setup.stream
    first, second = setup.sent
    async with result_blocked_on_its_row(database_url, worker, first):
        # The second result's slot is filled from what is held at once; no
        # worker has a free slot, so its result waits for the running cycle
        # rather than start a cycle of its own.
        await worker.send_result(second.job_id, second.attempt)
        # Two assignments and no ack (`next` fails on anything else).
        for _ in range(2):
            await worker.next("assignment")
        assert len(stream.held) == 2 and stream.free == 0
        dispatcher = api.server.dispatcher
        await stays(lambda: len(dispatcher._running) == 1, for_s=0.6, what="one cycle running")
        assert only_keepalives(worker)
    acked = {(await worker.next("ack")).job.job_id for _ in range(2)}
    assert acked == {first.job_id, second.job_id}
    await worker.close()


async def test_a_job_waiting_behind_held_ones_finds_the_worker_full(api: Stubs) -> None:
    setup = await sent_and_held(api, jobs=4)
    await api.server.dispatcher.presence.sync()
    last = job_pb2.GetJobRequest(namespace_id=setup.ns, job_id=setup.ticked[3])
    waiting = (await api.jobs.GetJob(last)).waiting
    # Three jobs leased to a worker of one slot: its one slot is in use.
    assert waiting.reason == job_pb2.Waiting.REASON_WORKERS_FULL
    assert (waiting.slots_in_use, waiting.slots_total) == (1, 1)
    await setup.worker.close()


async def test_a_heartbeat_gets_a_cycle_of_its_own_while_one_waits(api: Stubs, database_url: str) -> None:
    setup = await sent_and_held(api, jobs=6, slots=2, lookahead=4)
    worker = setup.worker
    first, second = setup.sent
    async with result_blocked_on_its_row(database_url, worker, first):
        # The first's slot was filled from what is held; so is the second's,
        # whose result then waits for the blocked cycle.
        third = (await worker.next("assignment")).job
        await worker.send_result(second.job_id, second.attempt)
        await worker.next("assignment")
        # Every slot is busy or fed from held jobs, but a heartbeat's answer
        # cannot wait for a cycle stuck on a lock: the worker would stop
        # its runs when its lease clock ran out.
        await worker.heartbeat(1, (third.job_id, third.attempt))
        got: dict[str, object] = {}
        while "heartbeat_ack" not in got:
            which, item = await asyncio.wait_for(worker.inbox.get(), 10.0)
            assert which in ("ack", "heartbeat_ack", "keepalive"), (which, item)
            got[which] = item
        answer = got["heartbeat_ack"]
        assert isinstance(answer, worker_pb2.HeartbeatAck)
        assert [r.job.job_id for r in answer.extended] == [third.job_id]
        assert len(api.server.dispatcher._running) == 1
    # The second's ack came with the heartbeat's answer or comes now; the
    # first's once the lock is gone.
    acked = {a.job.job_id for a in got.values() if isinstance(a, worker_pb2.ResultAck)}
    while len(acked) < 2:
        acked.add((await worker.next("ack")).job.job_id)
    assert acked == {first.job_id, second.job_id}
    await worker.close()
