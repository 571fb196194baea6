"""The SDK Worker's prefetch: attempts leased beyond its slots wait in the
worker, leased, for a slot; handlers never run more than `concurrency` at
once; a prefetched attempt cancelled before its turn never runs; "auto"
prefetches only while handler runs are short."""

from __future__ import annotations

import asyncio

import pytest

from chronosched.v1 import dag_pb2, job_pb2
from chronosched_server.dispatch.streams import WorkerStream
from chronosched_worker import JobContext, Worker
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
    with pytest.raises(ValueError, match="prefetch must be 'auto' or 0 to 984, got 985"):
        Worker("127.0.0.1:1", namespaces=["a"], concurrency=16, prefetch=985)
    for bad in (-1, "often", True, 1.5):
        with pytest.raises(ValueError, match="prefetch must be"):
            Worker("127.0.0.1:1", namespaces=["a"], prefetch=bad)  # type: ignore[arg-type]
    assert Worker("127.0.0.1:1", namespaces=["a"]).prefetch == "auto"


async def test_auto_prefetch_follows_how_long_handlers_run(api: Stubs) -> None:
    """The default: no prefetch until a window of runs (16 here) shows them
    short, then a round of `concurrency` more; eight rounds (here 16) while
    they are tiny (a millisecond or less); back to none once they run long.
    The server sees it as the stream's slots."""
    ns = await namespace(api)
    d = await definition(api, ns, kind="sleep")
    w = Worker(f"127.0.0.1:{api.server.port}", namespaces=[ns], worker_id="prefetcher", concurrency=2)

    async def sleep(ctx: JobContext) -> dict[str, object]:
        # 4 ms is short (at most 10) but not tiny (above 2); 30 ms is above
        # the 20 ms at which auto prefetch stops.
        await asyncio.sleep({"short": 0.004, "tiny": 0.0, "long": 0.03}[ctx.key.rstrip("0123456789")])
        return {}

    w.add_handler("sleep", sleep)

    async def run_all(keys: list[str]) -> None:
        made = await dag(api, ns, d.def_id, keys, [])

        async def done() -> bool:
            return set((await states(api, ns, made.dag_id)).values()) == {job_pb2.Job.STATE_SUCCEEDED}

        await poll(done, within=20, what=f"{len(keys)} jobs to succeed")

    async with running(w):
        stream = await poll(lambda: _stream(api), within=10, what="the worker's stream")
        assert stream.slots == 2 and w.prefetching == 0
        await run_all([f"short{i}" for i in range(15)])
        assert stream.slots == 2, "15 runs are less than the window"
        await run_all(["short15"])
        await poll(lambda: _slots(api, 4), within=10, what="the stream to take 2 more")
        assert w.prefetching == 2
        await run_all([f"tiny{i}" for i in range(16)])
        await poll(lambda: _slots(api, 18), within=10, what="the stream to take eight rounds")
        assert w.prefetching == 16
        await run_all([f"long{i}" for i in range(16)])
        await poll(lambda: _slots(api, 2), within=10, what="the stream back to its 2 slots")
        assert w.prefetching == 0


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


async def _slots(api: Stubs, slots: int) -> bool:
    stream = await _stream(api)
    return stream is not None and stream.slots == slots


async def _other_started(gates: Gates, seen: set[str]) -> str | None:
    others = [job_id for job_id in gates.started if job_id not in seen]
    return others[0] if others else None
