"""Every server metric moves as a scripted run says it must, scraped over
real HTTP: a raw Dequeue stream completes, fails, retries and strands jobs
of known DAGs; cron ticks are recorded by a scheduler on a test clock; and
an SDK Worker and a `chronosched worker` process serve their own metrics on
ports of their own."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import UTC, timedelta
from pathlib import Path

import grpc
import httpx
import pytest

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2, worker_pb2, worker_pb2_grpc
from chronosched_server import metrics as server_metrics
from chronosched_server.scheduler import Scheduler
from chronosched_worker import JobContext, JobFailed, Worker
from tests.api.test_metrics import Samples, scrape, scrape_port, value
from tests.support import grpc_helpers
from tests.support.builders import dag, dag_jobs, definition, fails, namespace
from tests.support.processes import clean_env, free_port
from tests.support.server import Stubs, serving
from tests.support.waiting import eventually, poll
from tests.support.worker import running

ROOT = Path(__file__).resolve().parents[2]
NS = "team-s"
CREATE_DAG = "/chronosched.v1.DagService/CreateDag"
CANCEL_DAG = "/chronosched.v1.DagService/CancelDag"
TICK = "/chronosched.v1.DefinitionService/Tick"
DEQUEUE = "/chronosched.v1.WorkerService/Dequeue"


@pytest.fixture(autouse=True)
def uncached_frontier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scrape queries the frontier: the gauges follow at once."""
    monkeypatch.setattr(server_metrics, "FRONTIER_CACHE_S", 0.0)


def jobs(samples: Samples, metric: str, kind: str, **labels: str) -> float:
    return value(samples, f"chronosched_{metric}", namespace=NS, kind=kind, **labels)


async def tick(api: Stubs, def_id: str, request_id: str = "") -> job_pb2.Job:
    return await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=NS, def_id=def_id, request_id=request_id)
    )


async def test_each_job_counter_and_gauge_moves_exactly(database_url: str) -> None:
    # A 3 s lease: the raw stream (which sends no heartbeats) must stay
    # within the silence timeout (the lease, here) between its messages.
    async with serving(database_url, metrics_port=0, lease_s=3.0, reap_interval_s=0.1) as api:
        await namespace(api, NS)
        noop = await definition(api, NS, "noop")
        retry = await definition(api, NS, "retry", max_attempts=2, backoff_initial=grpc_helpers.seconds(0.05))
        nobody = await definition(api, NS, "nobody", kind="nobody")
        slow = await definition(api, NS, "slow", kind="slow", max_attempts=1)
        manual = await definition(api, NS, "manual", kind="manual")
        main = await dag(
            api, NS, noop.def_id, ["a", "b", "c", "d", "e"], [("a", "b"), ("c", "d"), ("d", "e")]
        )
        unserved = await dag(api, NS, nobody.def_id, ["n"], [])
        unstarted = await dag(api, NS, noop.def_id, ["p", "q"], [], start=False)
        stranded = await dag(api, NS, slow.def_id, ["s", "s2"], [("s", "s2")])
        await tick(api, retry.def_id, "t-once")
        assert (await tick(api, retry.def_id, "t-once")).key == "retry"  # a replay: nothing new

        before, _ = await scrape(api)
        assert jobs(before, "jobs_created_total", "noop") == 5 + 1 + 2
        assert jobs(before, "jobs_created_total", "nobody") == 1
        assert jobs(before, "jobs_created_total", "slow") == 2
        assert value(before, "chronosched_rpc_requests_total", method=CREATE_DAG, code="OK") == 4
        assert value(before, "chronosched_rpc_requests_total", method=TICK, code="OK") == 2
        # a, c and the tick's job; nobody serves anything yet.
        assert jobs(before, "frontier_jobs", "noop") == 3
        assert jobs(before, "unserved_ready_jobs", "noop") == 3
        assert jobs(before, "unserved_ready_jobs", "nobody") == 1
        assert jobs(before, "unserved_ready_jobs", "slow") == 1

        # A stream of any namespace serving kind nobody, with no slots: n
        # stays READY but is served while the stream lives.
        idle = grpc_helpers.RawWorker(
            worker_pb2_grpc.WorkerServiceStub(api.channel),
            worker_id="idle",
            all_namespaces=True,
            kinds=["nobody"],
            slots=0,
        )
        await idle.start()

        async def nobody_unserved(expected: int) -> bool:
            now, _ = await scrape(api)
            return (
                jobs(now, "frontier_jobs", "nobody") == 1
                and jobs(now, "unserved_ready_jobs", "nobody") == expected
            )

        await poll(lambda: nobody_unserved(0), within=10.0, what="the idle stream to serve kind nobody")
        await idle.close()
        await poll(lambda: nobody_unserved(1), within=10.0, what="kind nobody to be unserved again")

        w1 = grpc_helpers.RawWorker(
            worker_pb2_grpc.WorkerServiceStub(api.channel),
            worker_id="w1",
            namespaces=[NS],
            kinds=["noop"],
            slots=8,
        )
        await w1.start()
        first = {a.job.key: a.job for a in [await w1.next("assignment") for _ in range(3)]}
        assert set(first) == {"a", "c", "retry"}

        # a and c succeed in one message: b and d (their children) come next.
        await w1.call.write(
            w1.results([(first["a"].job_id, 1, {"ok": 1}), (first["c"].job_id, 1, {"ok": 1})])
        )
        assert (await w1.next("ack")).accepted and (await w1.next("ack")).accepted
        children = {a.job.key: a.job for a in [await w1.next("assignment") for _ in range(2)]}
        assert set(children) == {"b", "d"}
        # The tick's job fails once (retryable), then runs again.
        retried = w1.results([])
        failure = retried.results.results.add(job=worker_pb2.JobRef(job_id=first["retry"].job_id, attempt=1))
        failure.error = "flaky"
        await w1.call.write(retried)
        assert (await w1.next("ack")).accepted
        again = (await w1.next("assignment")).job
        assert (again.key, again.attempt) == ("retry", 2)
        # b and the retry succeed; d fails for good, so e is skipped.
        last = w1.results([(children["b"].job_id, 1, {}), (again.job_id, 2, {})])
        failed = last.results.results.add(job=worker_pb2.JobRef(job_id=children["d"].job_id, attempt=1))
        failed.error, failed.non_retryable = "boom", True
        await w1.call.write(last)
        for _ in range(3):
            assert (await w1.next("ack")).accepted
        # A result for an attempt b never had: refused as stale.
        await w1.send_result(children["b"].job_id, 6, {})
        assert not (await w1.next("ack")).accepted
        # An operator completes a standalone job by hand (unary, no attempt).
        by_hand = await tick(api, manual.def_id)
        await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=by_hand.job_id, namespace_id=NS))

        mid, _ = await scrape(api)
        assert jobs(mid, "jobs_started_total", "noop") == 6  # a, c, retry#1, b, d, retry#2
        assert jobs(mid, "jobs_finished_total", "noop", outcome="succeeded") == 4  # a, c, b, retry#2
        assert jobs(mid, "jobs_finished_total", "noop", outcome="retried") == 1
        assert jobs(mid, "jobs_finished_total", "noop", outcome="failed") == 1
        assert jobs(mid, "jobs_finished_total", "manual", outcome="succeeded") == 1
        assert jobs(mid, "jobs_created_total", "manual") == 1
        assert jobs(mid, "jobs_skipped_total", "noop") == 1  # e
        assert value(mid, "chronosched_stale_results_total") == 1
        # b and d: the only first attempts with parents.
        assert value(mid, "chronosched_parent_child_latency_seconds_count") == 2
        assert 0 <= value(mid, "chronosched_parent_child_latency_seconds_sum") < 10
        assert value(mid, "chronosched_lease_expiries_total") == 0
        assert jobs(mid, "unserved_ready_jobs", "nobody") == 1
        assert value(mid, "chronosched_connected_workers") == 1

        await w1.close()

        # A worker takes s and vanishes: its lease expires, s fails (one
        # attempt only) and s2 is skipped by the reaper's failure.
        w2 = grpc_helpers.RawWorker(
            worker_pb2_grpc.WorkerServiceStub(api.channel),
            worker_id="w2",
            namespaces=[NS],
            kinds=["slow"],
            slots=1,
        )
        await w2.start()
        assert (await w2.next("assignment")).job.key == "s"
        await w2.close()

        async def expired() -> Samples | None:
            now, _ = await scrape(api)
            return now if value(now, "chronosched_lease_expiries_total") == 1 else None

        after_lease = await poll(expired, within=15.0, what="s's lease to expire")
        assert jobs(after_lease, "jobs_skipped_total", "slow") == 1
        assert jobs(after_lease, "jobs_finished_total", "slow", outcome="failed") == 0

        # Cancelling: the PENDING DAG's two jobs, and the one nobody serves.
        for d in (unstarted, unserved):
            await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=NS, dag_id=d.dag_id))
        await fails(
            api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=NS, dag_id=str(uuid.uuid4()))),
            grpc.StatusCode.NOT_FOUND,
        )
        end, _ = await scrape(api)
        assert jobs(end, "jobs_cancelled_total", "noop") == 2
        assert jobs(end, "jobs_cancelled_total", "nobody") == 1
        assert jobs(end, "jobs_cancelled_total", "slow") == 0
        assert jobs(end, "unserved_ready_jobs", "nobody") == 0
        assert jobs(end, "frontier_jobs", "nobody") == 0
        assert value(end, "chronosched_rpc_requests_total", method=CANCEL_DAG, code="OK") == 2
        assert value(end, "chronosched_rpc_requests_total", method=CANCEL_DAG, code="NOT_FOUND") == 1
        assert value(end, "chronosched_rpc_requests_total", method=TICK, code="OK") == 3
        # Nothing counted twice along the way.
        assert jobs(end, "jobs_created_total", "noop") == 8
        assert jobs(end, "jobs_started_total", "noop") == 6
        assert jobs(end, "jobs_skipped_total", "noop") == 1
        assert value(end, "chronosched_lease_expiries_total") == 1
        assert stranded.dag_id and main.dag_id

        latest: Samples = {}

        def dequeue_codes() -> dict[str, float]:
            return {
                dict(labels)["code"]: n
                for (name, labels), n in latest.items()
                if name == "chronosched_rpc_requests_total" and ("method", DEQUEUE) in labels
            }

        async def streams_counted() -> bool:
            nonlocal latest
            latest, _ = await scrape(api)
            return sum(dequeue_codes().values()) == 3

        def seen() -> str:
            return str({k: v for k, v in latest.items() if ("method", DEQUEUE) in k[1]})

        await poll(streams_counted, within=10.0, what="the three ended streams to be counted", detail=seen)
        # Each stream the client cancelled is counted once, as CANCELLED, or
        # as OK when its handler had already seen the requests end and
        # returned before gRPC reported the cancel (seen once in about ten
        # runs of the suite; interceptor._Call.done).
        assert set(dequeue_codes()) <= {"CANCELLED", "OK"}, seen()


async def test_cron_fires_are_timed_and_misfires_counted(database_url: str) -> None:
    async with serving(database_url, metrics_port=0, scheduler_enabled=False) as api:
        await namespace(api, NS)
        d = await definition(api, NS, "every-second", kind="cronkind", cron_spec="@every 1s")
        created = d.create_time.ToDatetime(tzinfo=UTC)
        first_tick = created.replace(microsecond=0) + timedelta(seconds=1)
        clock = [first_tick + timedelta(seconds=0.25)]
        scheduler = Scheduler(api.server.db, clock=lambda: clock[0], metrics=api.server.metrics)

        # On time: one fire, 0.25 s after its tick.
        assert (await scheduler.run_once()).fired == 1
        on_time, types = await scrape(api)
        assert types["chronosched_cron_fire_lateness_seconds"] == "histogram"
        assert value(on_time, "chronosched_cron_fire_lateness_seconds_count") == 1
        assert value(on_time, "chronosched_cron_fire_lateness_seconds_sum") == pytest.approx(0.25)
        assert value(on_time, "chronosched_cron_misfires_total", namespace=NS, outcome="skipped") == 0

        # Ten seconds later: the ticks older than the grace (2 s) are one
        # misfire row (skipped, superseded); the two within it fire, 1.5 s
        # and 0.5 s late.
        clock[0] = first_tick + timedelta(seconds=10.5)
        result = await scheduler.run_once()
        assert (result.fired, result.skipped) == (2, 1)
        late, _ = await scrape(api)
        assert value(late, "chronosched_cron_misfires_total", namespace=NS, outcome="skipped") == 1
        assert value(late, "chronosched_cron_misfires_total", namespace=NS, outcome="fired") == 0
        assert value(late, "chronosched_cron_fire_lateness_seconds_count") == 3
        assert value(late, "chronosched_cron_fire_lateness_seconds_sum") == pytest.approx(0.25 + 1.5 + 0.5)
        assert value(late, "chronosched_cron_fire_lateness_seconds_bucket", le="0.5") == 2
        assert value(late, "chronosched_jobs_created_total", namespace=NS, kind="cronkind") == 3


async def test_an_sdk_worker_serves_its_own_metrics(database_url: str) -> None:
    async with serving(database_url) as api:
        await sdk_worker_run(api)


async def sdk_worker_run(api: Stubs) -> None:
    await namespace(api, NS)
    ok = await definition(api, NS, "ok", kind="ok")
    bad = await definition(api, NS, "bad", kind="bad", max_attempts=1)
    gate = asyncio.Event()
    entered = asyncio.Event()
    worker = Worker(
        f"127.0.0.1:{api.server.port}", namespaces=[NS], concurrency=3, metrics_port=0, grace_s=5.0
    )
    # A second worker in the same process: registries of their own.
    other = Worker(f"127.0.0.1:{api.server.port}", namespaces=[NS], metrics_port=0)

    @worker.handler("ok")
    async def run_ok(ctx: JobContext) -> dict[str, object]:
        if ctx.payload.get("wait"):
            entered.set()
            await gate.wait()
        return {}

    @worker.handler("bad")
    def run_bad(ctx: JobContext) -> None:
        raise JobFailed("no")

    other.add_handler("unused", lambda ctx: None)
    async with running(worker), running(other):
        await eventually(worker.connected.is_set, within=10.0, what="the worker to connect")
        assert worker.metrics_port is not None and other.metrics_port is not None
        assert worker.metrics_port != other.metrics_port
        await dag(api, NS, ok.def_id, ["x", "y"], [])
        await dag(api, NS, bad.def_id, ["z"], [])

        async def settled() -> Samples | None:
            assert worker.metrics_port is not None
            now, _ = await scrape_port(worker.metrics_port)
            done = value(now, "chronosched_worker_jobs_finished_total", kind="ok", outcome="succeeded")
            failed = value(now, "chronosched_worker_jobs_finished_total", kind="bad", outcome="failed")
            return now if (done, failed) == (2, 1) else None

        now = await poll(settled, within=15.0, what="three jobs to end on the worker")
        assert value(now, "chronosched_worker_handler_duration_seconds_count", kind="ok") == 2
        assert value(now, "chronosched_worker_handler_duration_seconds_count", kind="bad") == 1
        assert value(now, "chronosched_worker_connected") == 1
        assert value(now, "chronosched_worker_slots") == 3
        assert value(now, "chronosched_worker_reconnects_total") == 0

        # One job held by its handler: the running gauge shows it.
        held = await api.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=NS,
                name="held",
                jobs=[
                    dag_pb2.JobSpec(key="h", def_id=ok.def_id, payload=grpc_helpers.struct({"wait": True}))
                ],
                start=True,
            )
        )
        await asyncio.wait_for(entered.wait(), 10.0)
        during, _ = await scrape_port(worker.metrics_port)
        assert value(during, "chronosched_worker_jobs_running") == 1
        gate.set()

        async def held_done() -> bool:
            finished = await dag_jobs(api, NS, held.dag_id)
            return bool(finished["h"].state == job_pb2.Job.STATE_SUCCEEDED)

        await poll(held_done, within=10.0, what="the held job's result to be applied")
        # Another stream under the worker's id ends the worker's stream (a
        # worker holds one); the worker reconnects, and its new stream ends
        # that one in turn.
        impostor = grpc_helpers.RawWorker(
            worker_pb2_grpc.WorkerServiceStub(api.channel),
            worker_id=worker.worker_id,
            namespaces=[NS],
            kinds=["ok"],
            slots=0,
        )
        await impostor.start()

        async def reconnected() -> bool:
            assert worker.metrics_port is not None
            now, _ = await scrape_port(worker.metrics_port)
            return (
                value(now, "chronosched_worker_reconnects_total") == 1
                and value(now, "chronosched_worker_connected") == 1
            )

        await poll(reconnected, within=20.0, what="the worker to reconnect")
        await impostor.close()
        final, _ = await scrape_port(worker.metrics_port)
        assert value(final, "chronosched_worker_jobs_running") == 0
        assert value(final, "chronosched_worker_jobs_finished_total", kind="ok", outcome="succeeded") == 3
        theirs, _ = await scrape_port(other.metrics_port)
        assert value(theirs, "chronosched_worker_jobs_finished_total", kind="ok", outcome="succeeded") == 0
        assert value(theirs, "chronosched_worker_slots") == 16
    # Stopped with the worker: the port no longer answers.
    assert worker.metrics_port is not None
    with pytest.raises(httpx.TransportError):
        await scrape_port(worker.metrics_port)


async def test_the_worker_process_serves_metrics_on_its_flag(database_url: str) -> None:
    async with serving(database_url) as api:
        await namespace(api, NS)
        command = await definition(
            api, NS, "echo", kind="command", payload_template=grpc_helpers.struct({"argv": ["true"]})
        )
        port = free_port()
        env = clean_env({"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])})
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chronosched_worker",
            "--server",
            f"127.0.0.1:{api.server.port}",
            "--namespace",
            NS,
            "--kinds",
            "command",
            "--metrics-port",
            str(port),
            env=env,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await dag(api, NS, command.def_id, ["one"], [])

            async def ran() -> Samples | None:
                try:
                    now, _ = await scrape_port(port)
                except httpx.TransportError:
                    return None  # not listening yet
                done = value(
                    now, "chronosched_worker_jobs_finished_total", kind="command", outcome="succeeded"
                )
                return now if done == 1 else None

            now = await poll(ran, within=30.0, what="the worker process to run the job")
            assert value(now, "chronosched_worker_connected") == 1
            assert value(now, "chronosched_worker_slots") == 16
            assert value(now, "chronosched_worker_handler_duration_seconds_count", kind="command") == 1
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
