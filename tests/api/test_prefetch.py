"""The SDK Worker's prefetch: attempts leased beyond its slots wait in the
worker, leased, for a slot; handlers never run more than `concurrency` at
once; a prefetched attempt cancelled before its turn never runs."""

from __future__ import annotations

import pytest

from chronosched.v1 import dag_pb2, job_pb2
from chronosched_server.dispatch.streams import WorkerStream
from chronosched_worker import Worker
from tests.support.builders import dag, dag_jobs, definition, namespace
from tests.support.server import Stubs
from tests.support.waiting import poll, stays
from tests.support.worker import Gates, running

pytestmark = pytest.mark.timeout(60)


def worker(api: Stubs, ns: str, gates: Gates, *, concurrency: int, prefetch: int) -> Worker:
    w = Worker(
        f"127.0.0.1:{api.server.port}",
        namespaces=[ns],
        worker_id="prefetcher",
        grace_s=5.0,
        concurrency=concurrency,
        prefetch=prefetch,
    )
    w.add_handler("gate", gates)
    return w


async def states(api: Stubs, ns: str, dag_id: str) -> dict[str, int]:
    jobs = await dag_jobs(api, ns, dag_id)
    return {key: job.state for key, job in jobs.items()}


def test_prefetch_is_checked() -> None:
    with pytest.raises(ValueError, match="prefetch must be 0 to 984"):
        Worker("127.0.0.1:1", namespaces=["a"], concurrency=16, prefetch=985)
    with pytest.raises(ValueError, match="prefetch must be"):
        Worker("127.0.0.1:1", namespaces=["a"], prefetch=-1)


async def test_a_prefetched_job_waits_leased_and_starts_when_a_slot_frees(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, kind="gate")
    made = await dag(api, ns, d.def_id, ["a", "b", "c"], [])
    gates = Gates()
    async with running(worker(api, ns, gates, concurrency=1, prefetch=1)):
        stream = await poll(lambda: _stream(api), within=10, what="the worker's stream")
        # Subscribed for its slot and its prefetch: two leased, one waits.
        assert stream.slots == 2

        async def two_leased() -> bool:
            got = await states(api, ns, made.dag_id)
            return sorted(got.values()).count(job_pb2.Job.STATE_RUNNING) == 2

        await poll(two_leased, within=10, what="two jobs leased to the worker")
        assert len(gates.started) == 1  # one handler runs; the other waits here
        first = next(iter(gates.started))
        await stays(lambda: len(gates.started) == 1, for_s=0.3, what="one handler at a time")
        gates.open(first)
        second = await poll(
            lambda: _other_started(gates, {first}), within=10, what="the prefetched job to start"
        )
        gates.open(second)
        third = await poll(
            lambda: _other_started(gates, {first, second}), within=10, what="the last job to start"
        )
        gates.open(third)

        async def all_done() -> bool:
            got = await states(api, ns, made.dag_id)
            return set(got.values()) == {job_pb2.Job.STATE_SUCCEEDED}

        await poll(all_done, within=10, what="every job to succeed")
    assert len(gates.started) == 3 and not gates.cancelled


async def test_a_prefetched_job_cancelled_before_its_turn_never_runs(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, kind="gate")
    made = await dag(api, ns, d.def_id, ["a", "b"], [])
    gates = Gates()
    async with running(worker(api, ns, gates, concurrency=1, prefetch=1)):

        async def both_leased() -> bool:
            got = await states(api, ns, made.dag_id)
            return set(got.values()) == {job_pb2.Job.STATE_RUNNING} and len(gates.started) == 1

        await poll(both_leased, within=10, what="both jobs leased, one started")
        await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=made.dag_id))

        async def freed() -> bool:
            stream = await _stream(api)
            return stream is not None and not stream.in_flight

        # The running handler is cancelled; the waiting one is reported
        # without running, so the worker holds nothing afterwards.
        await poll(freed, within=10, what="the worker's slots to be free again")
        assert set(gates.started) == set(gates.cancelled)
        assert len(gates.started) == 1
        got = await states(api, ns, made.dag_id)
        assert set(got.values()) == {job_pb2.Job.STATE_CANCELLED}


async def _stream(api: Stubs) -> WorkerStream | None:
    streams = [s for s in api.server.dispatcher.streams if s.worker_id == "prefetcher"]
    return streams[0] if streams else None


async def _other_started(gates: Gates, seen: set[str]) -> str | None:
    others = [job_id for job_id in gates.started if job_id not in seen]
    return others[0] if others else None
