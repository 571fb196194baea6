"""Worker fault tests: real worker processes, real servers and a real
PostgreSQL; each test ends with `check_invariants` (tests/faults/invariants.py:
at-least-once delivery, never two runs of one job at once, DAG order).

Lease tests use an in-process server with a 2 s lease (its Config takes the
lease, reap and poll intervals); the multi-server and 10,000-job tests run
`python -m chronosched_server server` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from psycopg.rows import dict_row

from chronosched.v1 import dag_pb2, job_pb2, worker_pb2
from chronosched_server.app import Server
from chronosched_server.config import Config
from chronosched_server.storage import leases
from tests.faults.helpers import (
    Api,
    Proc,
    fetch,
    job_row,
    jobs_by_key,
    server_proc,
    stop_all,
    wait_dag,
    wait_job,
    wait_ready,
    worker_proc,
)
from tests.faults.invariants import Execution, ExecutionLog, check_invariants
from tests.faults.worker_proc import EXIT_CODE
from tests.support.grpc_helpers import RawWorker, seconds, struct, wait_serving
from tests.support.processes import free_port, pid_alive
from tests.support.waiting import poll

LEASE_S = 2.0
REAP_S = 0.2
# The first retry after a lost lease waits this long (the definition's backoff).
BACKOFF_S = 0.1


@dataclass
class InProc:
    server: Server
    api: Api
    target: str


@contextlib.asynccontextmanager
async def in_proc(database_url: str, lease_s: float) -> AsyncIterator[InProc]:
    """An in-process server with the given lease, reaping every 0.2 s."""
    server = Server(
        Config(
            database_url=database_url,
            grpc_port=0,
            lease_s=lease_s,
            reap_interval_s=REAP_S,
            poll_interval_s=0.1,
        )
    )
    port = await server.start()
    target = f"127.0.0.1:{port}"
    api = Api.connect(target)
    try:
        yield InProc(server, api, target)
    finally:
        await api.close()
        await server.stop(grace=0)


@pytest.fixture
async def short_lease(database_url: str) -> AsyncIterator[InProc]:
    """An in-process server with a 2 s lease."""
    async with in_proc(database_url, LEASE_S) as server:
        yield server


@pytest.fixture
def exec_log(tmp_path: Path) -> ExecutionLog:
    return ExecutionLog(tmp_path / "executions.jsonl")


async def started(log: ExecutionLog, job_id: str, attempt: int, *, within: float) -> Execution:
    """The log entry of `attempt` of `job_id`, once some worker has started it."""

    async def check() -> Execution | None:
        return next((x for x in log.load() if x.job_id == job_id and x.attempt == attempt), None)

    return await poll(check, within=within, what=f"attempt {attempt} of job {job_id} to start")


def runs_of(log: ExecutionLog, job_id: str) -> list[Execution]:
    return sorted((x for x in log.load() if x.job_id == job_id), key=lambda x: x.attempt)


def proc_with_pid(procs: list[Proc], pid: int) -> Proc:
    return next(p for p in procs if p.pid == pid)


# --- 1. a DAG across 4 workers and 2 servers ----------------------------------


def layered_dag(
    rng: random.Random, def_id: str
) -> tuple[list[tuple[str, str, dict[str, Any]]], list[tuple[str, str]]]:
    """About 50 jobs in layers, each job with 1-3 parents in the layer above and
    sometimes one two layers up; the widest layer fills every worker slot."""
    widths = [1, 6, 20, 8, 12, 1]
    layers: list[list[str]] = []
    jobs: list[tuple[str, str, dict[str, Any]]] = []
    edges: list[tuple[str, str]] = []
    for depth, width in enumerate(widths):
        layer = [f"l{depth}-{i}" for i in range(width)]
        for key in layer:
            sleep = 0.25 if width >= 16 else rng.uniform(0.0, 0.08)
            jobs.append((key, def_id, {"sleep_s": sleep}))
            if layers:
                above = layers[-1]
                for parent in rng.sample(above, min(len(above), rng.randint(1, 3))):
                    edges.append((parent, key))
                if len(layers) >= 2 and rng.random() < 0.3:
                    edges.append((rng.choice(layers[-2]), key))
        layers.append(layer)
    # The last layer depends on everything without children, so it runs last.
    parents = {p for p, _ in edges}
    sink = layers[-1][0]
    for key, _, _ in jobs:
        if key not in parents and key != sink and (key, sink) not in edges:
            edges.append((key, sink))
    return jobs, edges


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_dag_runs_in_topological_order_on_four_workers_and_two_servers(
    database_url: str, tmp_path: Path, exec_log: ExecutionLog
) -> None:
    ports = [free_port(), free_port()]
    servers = [server_proc(tmp_path, f"server-{i}", database_url, port) for i, port in enumerate(ports)]
    workers = [
        worker_proc(tmp_path, f"127.0.0.1:{ports[i // 2]}", "faults", f"w{i}", exec_log.path, concurrency=4)
        for i in range(4)
    ]
    api = Api.connect(f"127.0.0.1:{ports[0]}")
    try:
        for s in servers:
            s.start()
        await asyncio.gather(
            *(
                wait_serving(f"127.0.0.1:{p}", within=60, proc=s.proc)
                for p, s in zip(ports, servers, strict=True)
            )
        )
        ns = await api.namespace("faults")
        def_id = await api.definition(ns, "step")
        for w in workers:
            w.start()
        await wait_ready(tmp_path, workers, within=60)

        jobs, edges = layered_dag(random.Random(7), def_id)
        dag_id = await api.dag(ns, jobs, edges)
        assert (
            await wait_dag(database_url, dag_id, {"SUCCEEDED", "FAILED", "CANCELLED"}, within=60)
            == "SUCCEEDED"
        )

        rows = await jobs_by_key(database_url, dag_id)
        executions = exec_log.load()
        by_job: dict[str, list[Execution]] = {}
        for x in executions:
            by_job.setdefault(x.job_id, []).append(x)
        assert {r["state"] for r in rows.values()} == {"SUCCEEDED"}
        assert all(r["attempt"] == 1 for r in rows.values())
        assert all(len(by_job.get(r["job_id"], [])) == 1 for r in rows.values()), (
            "every job runs exactly once"
        )
        # Topological order from the workers' own clocks: a child starts only
        # after its parent's handler returned.
        for parent, child in edges:
            (p,) = by_job[rows[parent]["job_id"]]
            (c,) = by_job[rows[child]["job_id"]]
            assert p.end is not None and c.start >= p.end, f"{child} started before its parent {parent} ended"
        # Both servers handed out work.
        per_server = {
            i: sum(1 for x in executions if x.worker in (f"w{2 * i}", f"w{2 * i + 1}")) for i in range(2)
        }
        assert all(per_server.values()), f"jobs per server: {per_server}"

        codes = await asyncio.gather(*(w.stop() for w in workers))
        assert codes == [0, 0, 0, 0], "workers drain and exit 0 on SIGTERM"
        await check_invariants(database_url, exec_log)
    finally:
        await api.close()
        await stop_all([*workers, *servers])


# --- 2. SIGKILL mid-job --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_worker_killed_mid_job_job_runs_again_and_succeeds_once(
    short_lease: InProc, database_url: str, tmp_path: Path, exec_log: ExecutionLog
) -> None:
    api = short_lease.api
    ns = await api.namespace("faults")
    def_id = await api.definition(ns, "step", backoff_initial=seconds(BACKOFF_S))
    workers = [
        worker_proc(tmp_path, short_lease.target, ns, f"w{i}", exec_log.path, concurrency=2) for i in range(2)
    ]
    try:
        for w in workers:
            w.start()
        await wait_ready(tmp_path, workers)
        dag_id = await api.dag(
            ns,
            [("victim", def_id, {"sleep_s": 30, "sleep_attempts": [1]}), ("after", def_id, {})],
            [("victim", "after")],
        )
        victim_id = (await jobs_by_key(database_url, dag_id))["victim"]["job_id"]
        first = await started(exec_log, victim_id, 1, within=20)
        killed = proc_with_pid(workers, first.pid)
        killed.signal(signal.SIGKILL)
        killed_at = time.time()
        assert await killed.wait_exit(5) == -signal.SIGKILL

        assert await wait_dag(database_url, dag_id, {"SUCCEEDED", "FAILED"}, within=30) == "SUCCEEDED"
        victim = await job_row(database_url, victim_id)
        runs = runs_of(exec_log, victim_id)
        assert victim["attempt"] == 2 and [x.attempt for x in runs] == [1, 2]
        assert runs[0].end is None, "attempt 1 died with its worker"
        assert runs[1].outcome == "success" and runs[1].worker != first.worker
        assert victim["result"] == runs[1].result
        # Back within the lease (plus reap interval, backoff and scheduling slack).
        assert runs[1].start - killed_at < LEASE_S + REAP_S + BACKOFF_S + 1.5, runs[1].start - killed_at
        after = (await jobs_by_key(database_url, dag_id))["after"]
        assert after["attempt"] == 1 and len(runs_of(exec_log, after["job_id"])) == 1
    finally:
        await stop_all(workers)
    await check_invariants(database_url, exec_log)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_worker_restarted_under_its_id_gets_its_job_back_before_the_lease(
    database_url: str, tmp_path: Path, exec_log: ExecutionLog
) -> None:
    # A lease far longer than the test may take: only the take-back on
    # reconnect can bring the job back in time.
    lease_s = 60.0
    async with in_proc(database_url, lease_s) as server:
        api = server.api
        first = worker_proc(tmp_path, server.target, "faults", "same-id", exec_log.path, concurrency=1)
        second = worker_proc(tmp_path, server.target, "faults", "same-id", exec_log.path, concurrency=1)
        try:
            ns = await api.namespace("faults")
            def_id = await api.definition(ns, "step", backoff_initial=seconds(BACKOFF_S))
            first.start()
            await wait_ready(tmp_path, [first])
            dag_id = await api.dag(ns, [("victim", def_id, {"sleep_s": 120, "sleep_attempts": [1]})], [])
            victim_id = (await jobs_by_key(database_url, dag_id))["victim"]["job_id"]
            await started(exec_log, victim_id, 1, within=20)
            first.signal(signal.SIGKILL)
            killed_at = time.time()
            assert await first.wait_exit(5) == -signal.SIGKILL
            (tmp_path / "same-id.ready").unlink()
            second.start()

            again = await started(exec_log, victim_id, 2, within=30)
            assert again.start - killed_at < lease_s / 2, again.start - killed_at
            assert await wait_dag(database_url, dag_id, {"SUCCEEDED", "FAILED"}, within=30) == "SUCCEEDED"
            victim = await job_row(database_url, victim_id)
            assert victim["attempt"] == 2 and victim["result"] == runs_of(exec_log, victim_id)[1].result
            assert "worker reconnected without it on attempt 1 (worker same-id)" in victim["error"]
        finally:
            await stop_all([first, second])
    await check_invariants(database_url, exec_log)


# --- 3. SIGSTOP past the lease, then SIGCONT -----------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_frozen_worker_late_result_is_rejected(
    short_lease: InProc, database_url: str, tmp_path: Path, exec_log: ExecutionLog
) -> None:
    api = short_lease.api
    ns = await api.namespace("faults")
    def_id = await api.definition(ns, "step", backoff_initial=seconds(BACKOFF_S))
    workers = [
        worker_proc(tmp_path, short_lease.target, ns, f"w{i}", exec_log.path, concurrency=1) for i in range(2)
    ]
    try:
        for w in workers:
            w.start()
        await wait_ready(tmp_path, workers)
        dag_id = await api.dag(
            ns,
            [("frozen", def_id, {"sleep_s": 1.0, "sleep_attempts": [1]}), ("child", def_id, {})],
            [("frozen", "child")],
        )
        job_id = (await jobs_by_key(database_url, dag_id))["frozen"]["job_id"]
        first = await started(exec_log, job_id, 1, within=20)
        frozen = proc_with_pid(workers, first.pid)
        frozen.signal(signal.SIGSTOP)
        try:
            # The other worker gets attempt 2 once the lease lapses, and the child after it.
            assert await wait_dag(database_url, dag_id, {"SUCCEEDED", "FAILED"}, within=30) == "SUCCEEDED"
            before = await job_row(database_url, job_id)
            assert before["attempt"] == 2 and before["result"]["worker"] != first.worker
        finally:
            frozen.signal(signal.SIGCONT)

        # The frozen attempt finishes (or notices its lost lease) and reports;
        # the server must refuse it.
        async def late_attempt_ended() -> Execution | None:
            x = runs_of(exec_log, job_id)[0]
            return x if x.end is not None else None

        late = await poll(late_attempt_ended, within=15, what="the frozen attempt to end")
        rejected = f"result of job {job_id} attempt 1 rejected by the server: STALE_ATTEMPT"
        await poll(
            lambda: _true_if(rejected in frozen.output()), within=15, what="the late result to be rejected"
        )
        after = await job_row(database_url, job_id)
        assert (after["end_time"], after["result"], after["attempt"]) == (
            before["end_time"],
            before["result"],
            2,
        ), f"the late {late.outcome} of attempt 1 changed the job"
        child = (await jobs_by_key(database_url, dag_id))["child"]
        assert child["state"] == "SUCCEEDED" and child["pending_parents"] == 0 and child["attempt"] == 1
        assert len(runs_of(exec_log, child["job_id"])) == 1, "the child ran once"
    finally:
        await stop_all(workers)
    await check_invariants(database_url, exec_log)


def _exec_sleep_pid(pid_file: Path) -> int | None:
    """The pid the command wrote, once that process has exec'd `sleep`."""
    text = pid_file.read_text() if pid_file.exists() else ""
    if not text.endswith("\n"):
        return None
    pid = int(text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if cmdline.startswith(b"sleep\0") else None


async def _true_if(value: bool) -> bool:
    return value


# --- 4. duplicate completions -------------------------------------------------


@pytest.mark.timeout(60)
async def test_duplicate_completions_make_one_transition(short_lease: InProc, database_url: str) -> None:
    api = short_lease.api
    ns = await api.namespace("faults")
    streamed = await api.definition(ns, "streamed", kind="noop")
    manual = await api.definition(ns, "manual", kind="manual")
    dag_id = await api.dag(
        ns, [("a", streamed, {}), ("b", manual, {}), ("c", manual, {})], [("a", "b"), ("b", "c")]
    )
    owner = RawWorker(api.workers, worker_id="raw-1", namespaces=[ns], kinds=["noop"])
    other = RawWorker(api.workers, worker_id="raw-2", namespaces=[ns], kinds=["noop"])
    await owner.start()
    try:
        assignment = await owner.next("assignment")
        a = assignment.job
        assert a.key == "a"
        # Subscribed only now, so the job cannot go to it first.
        await other.start()
        # The same completion 5 times on the owner's stream (without waiting
        # for acks) and 5 times on another stream, at once.
        done = RawWorker.result(a.job_id, a.attempt, {"n": 1})

        async def burst(w: RawWorker) -> list[Any]:
            for _ in range(5):
                await w.call.write(done)
            return [await w.next("ack") for _ in range(5)]

        mine, theirs = await asyncio.gather(burst(owner), burst(other))
        # The owner's repeats are acknowledged (one transition, then acks);
        # the other stream does not hold the attempt, so its copies are
        # rejected without effect (docs/security.md, "Workers").
        assert all(ack.accepted and ack.job.job_id == a.job_id for ack in mine), mine
        assert all(not ack.accepted and ack.reason == "JOB_NOT_HELD" for ack in theirs), theirs
        rows = await fetch(
            database_url,
            "select key, state, pending_parents, end_time, update_time, result,"
            " due_time is not null as due"
            " from jobs j where dag_id = %s",
            (dag_id,),
        )
        jobs = {r["key"]: r for r in rows}
        assert jobs["a"]["state"] == "SUCCEEDED" and jobs["a"]["result"] == {"n": 1}
        # One write: the row was not touched after the transition that ended it.
        assert jobs["a"]["update_time"] == jobs["a"]["end_time"]
        assert (jobs["b"]["state"], jobs["b"]["pending_parents"], jobs["b"]["due"]) == ("READY", 0, True)
        assert (jobs["c"]["state"], jobs["c"]["pending_parents"]) == ("PENDING", 1)

        # Unary CompleteJob of b, 5 at once, fenced to attempt 1.
        b_id = (await jobs_by_key(database_url, dag_id))["b"]["job_id"]
        replies = await asyncio.gather(
            *(
                api.jobs.CompleteJob(
                    job_pb2.CompleteJobRequest(job_id=b_id, attempt=1, result=struct({"via": "unary"}))
                )
                for _ in range(5)
            )
        )
        assert {r.state for r in replies} == {job_pb2.Job.STATE_SUCCEEDED}
        assert len({r.end_time.ToNanoseconds() for r in replies}) == 1, "one transition, one end_time"
        rows = await fetch(
            database_url,
            "select key, state, pending_parents, end_time, update_time,"
            " due_time is not null as due"
            " from jobs j where dag_id = %s",
            (dag_id,),
        )
        jobs = {r["key"]: r for r in rows}
        assert jobs["b"]["update_time"] == jobs["b"]["end_time"]
        assert jobs["b"]["end_time"].timestamp() == pytest.approx(replies[0].end_time.ToNanoseconds() / 1e9)
        assert (jobs["c"]["state"], jobs["c"]["pending_parents"], jobs["c"]["due"]) == ("READY", 0, True)
        dag = await fetch(database_url, "select unfinished_job_count from dags where dag_id = %s", (dag_id,))
        assert dag[0]["unfinished_job_count"] == 1

        c_id = (await jobs_by_key(database_url, dag_id))["c"]["job_id"]
        await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=c_id, result=struct({"last": True})))
        final = await api.dags.GetDag(dag_pb2.GetDagRequest(namespace_id=ns, dag_id=dag_id))
        assert final.state == dag_pb2.Dag.STATE_SUCCEEDED
    finally:
        await owner.close()
        await other.close()
    acked: dict[str, dict[str, Any]] = {a.job_id: {"n": 1}, b_id: {"via": "unary"}, c_id: {"last": True}}
    await check_invariants(database_url, None, acked=acked)


# --- 5. a poison job that kills its worker every time ------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_poison_job_fails_after_max_attempts_while_other_jobs_flow(
    short_lease: InProc, database_url: str, tmp_path: Path, exec_log: ExecutionLog
) -> None:
    api = short_lease.api
    ns = await api.namespace("faults")
    poison_def = await api.definition(
        ns, "poison", payload={"exit": True}, max_attempts=3, backoff_initial=seconds(BACKOFF_S)
    )
    normal_def = await api.definition(ns, "normal", payload={"sleep_s": 0.02})
    generation = {"a": 0, "b": 0}
    live: dict[str, Proc] = {}
    dead: list[Proc] = []

    def spawn(slot: str) -> None:
        p = worker_proc(
            tmp_path, short_lease.target, ns, f"w{slot}{generation[slot]}", exec_log.path, concurrency=1
        )
        generation[slot] += 1
        live[slot] = p.start()

    async def supervise() -> None:
        # Like `chronosched up`: a worker that dies is started again.
        while True:
            for slot, p in list(live.items()):
                if not p.alive():
                    dead.append(p)
                    spawn(slot)
            await asyncio.sleep(0.05)

    for slot in generation:
        spawn(slot)
    supervisor = asyncio.create_task(supervise())
    normal: list[list[str]] = []
    try:
        await wait_ready(tmp_path, list(live.values()))
        poison_id = await api.tick(ns, poison_def)
        for attempt in (1, 2, 3):
            await started(exec_log, poison_id, attempt, within=30)
            batch = [await api.tick(ns, normal_def, {"batch": attempt}) for _ in range(5)]
            normal.append(batch)
            for job_id in batch:
                assert (await wait_job(database_url, job_id, {"SUCCEEDED", "FAILED"}, within=30))[
                    "state"
                ] == "SUCCEEDED"
        poison = await wait_job(database_url, poison_id, {"FAILED", "SUCCEEDED"}, within=30)
        assert poison["state"] == "FAILED" and poison["attempt"] == 3
        assert "lease expired on attempt 3" in poison["error"] and "no attempts left" in poison["error"], (
            poison["error"]
        )
        runs = runs_of(exec_log, poison_id)
        assert [x.attempt for x in runs] == [1, 2, 3] and all(x.end is None for x in runs)
        assert len({x.pid for x in runs}) == 3, "each attempt killed a different process"
        # Jobs ticked while the poison job was still being retried finished
        # before it failed: the queue kept flowing.
        for job_id in normal[0] + normal[1]:
            row = await fetch(database_url, "select end_time from jobs where job_id = %s", (job_id,))
            assert row[0]["end_time"] < poison["end_time"]
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        await stop_all(list(live.values()))
    assert [p.proc.returncode for p in dead if p.proc] == [EXIT_CODE] * 3, [p.output()[-2000:] for p in dead]
    await check_invariants(database_url, exec_log)


# --- 6. cancelling a DAG while its command runs --------------------------------


@pytest.mark.timeout(60)
async def test_cancel_dag_stops_running_command_within_a_second(
    short_lease: InProc, database_url: str, tmp_path: Path
) -> None:
    api = short_lease.api
    ns = await api.namespace("faults")
    pid_file = tmp_path / "sleep.pid"
    sleeper_def = await api.definition(
        ns, "sleeper", kind="command", payload={"argv": ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"]}
    )
    after_def = await api.definition(ns, "after", kind="command", payload={"argv": ["true"]})
    worker = Proc(
        "worker",
        [
            sys.executable,
            "-m",
            "chronosched_worker",
            "--server",
            short_lease.target,
            "--namespace",
            ns,
            "--kinds",
            "command",
            "--worker-id",
            "cmd-worker",
        ],
        tmp_path / "worker.log",
    )
    try:
        worker.start()
        dag_id = await api.dag(
            ns, [("sleeper", sleeper_def, {}), ("after", after_def, {})], [("sleeper", "after")]
        )

        async def sleeping_pid() -> int | None:
            return _exec_sleep_pid(pid_file)

        pid = await poll(sleeping_pid, within=30, what="the command to exec sleep")
        jobs = await jobs_by_key(database_url, dag_id)
        assert jobs["sleeper"]["state"] == "RUNNING"

        cancelled = await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=dag_id))
        t0 = time.monotonic()
        assert cancelled.state == dag_pb2.Dag.STATE_CANCELLED

        async def gone() -> bool:
            return not pid_alive(pid)

        await poll(gone, within=10, what=f"sleep (pid {pid}) to stop", every=0.01)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0, f"the worker took {elapsed:.2f}s to stop the command"
        jobs = await jobs_by_key(database_url, dag_id)
        assert (jobs["sleeper"]["state"], jobs["after"]["state"]) == ("CANCELLED", "CANCELLED")
        assert await wait_dag(database_url, dag_id, {"CANCELLED"}, within=1) == "CANCELLED"
        # The worker's failure report for the stopped attempt is refused.
        rejected = (
            f"result of job {jobs['sleeper']['job_id']} attempt 1 rejected by the server: JOB_CANCELLED"
        )
        await poll(
            lambda: _true_if(rejected in worker.output()), within=10, what="the cancelled result's rejection"
        )
        assert worker.alive(), "the worker keeps serving"
    finally:
        code = await worker.stop()
    assert code == 0, worker.output()[-3000:]
    await check_invariants(database_url, None)


# --- 7. 50 streams over 10,000 READY jobs ------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_fifty_streams_lease_every_job_exactly_once(database_url: str, tmp_path: Path) -> None:
    total, clients, slots = 10_000, 50, 8
    port = free_port()
    server = server_proc(tmp_path, "server", database_url, port)
    api = Api.connect(f"127.0.0.1:{port}")
    got: list[list[str]] = [[] for _ in range(clients)]
    acked: dict[str, dict[str, Any]] = {}
    rejected: list[Any] = []
    all_acked = asyncio.Event()
    try:
        server.start()
        await wait_serving(f"127.0.0.1:{port}", within=60, proc=server.proc)
        ns = await api.namespace("faults")
        def_id = await api.definition(ns, "noop", kind="noop")

        async def client(i: int) -> None:
            call = api.workers.Dequeue()
            await call.write(
                worker_pb2.DequeueRequest(
                    subscribe=worker_pb2.Subscribe(
                        worker_id=f"raw-{i}", namespaces=[ns], kinds=["noop"], slots=slots
                    )
                )
            )
            try:
                async for msg in call:
                    for ack in msg.acks:
                        if ack.accepted:
                            acked[ack.job.job_id] = {"client": i}
                            if len(acked) == total:
                                all_acked.set()
                        else:
                            rejected.append(ack)
                    jobs = [a.job for a in msg.assignments]
                    got[i].extend(job.job_id for job in jobs)
                    if jobs:
                        await call.write(
                            RawWorker.results([(job.job_id, job.attempt, {"client": i}) for job in jobs])
                        )
            finally:
                call.cancel()

        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        dag_id = await api.dag(ns, [(f"j{n}", def_id, {}) for n in range(total)])
        try:
            done = asyncio.create_task(all_acked.wait())
            finished, _ = await asyncio.wait({done, *tasks}, timeout=150, return_when=asyncio.FIRST_COMPLETED)
            assert done in finished, (
                f"{len(acked)} of {total} acknowledged; streams ended: {[t for t in tasks if t.done()]}"
            )
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        leased = [job_id for ids in got for job_id in ids]
        assert not rejected, rejected[:5]
        assert len(leased) == len(set(leased)) == total, "every job leased exactly once"
        rows = await fetch(
            database_url, "select job_id::text, state, attempt from jobs where dag_id = %s", (dag_id,)
        )
        assert {r["job_id"] for r in rows} == set(leased)
        assert {(r["state"], r["attempt"]) for r in rows} == {("SUCCEEDED", 1)}
        assert sum(1 for ids in got if ids) > 1, "the work was spread over several streams"
        assert await wait_dag(database_url, dag_id, {"SUCCEEDED"}, within=5) == "SUCCEEDED"
    finally:
        await api.close()
        await server.stop()
    await check_invariants(database_url, None, acked=acked)


# --- 8. cancelling a DAG while 8 streams claim its jobs -------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_cancel_dag_while_streams_claim_its_jobs(database_url: str) -> None:
    # The default 30 s lease: nothing is requeued behind the cancel's back here.
    server = Server(Config(database_url=database_url, grpc_port=0, poll_interval_s=0.1))
    api = Api.connect(f"127.0.0.1:{await server.start()}")
    try:
        await _cancel_while_claiming(api, database_url)
    finally:
        await api.close()
        await server.stop(grace=0)


async def _cancel_while_claiming(api: Api, database_url: str) -> None:
    ns = await api.namespace("faults")
    def_id = await api.definition(ns, "noop", kind="noop")
    failures: list[str] = []

    async def client(i: int) -> None:
        call = api.workers.Dequeue()
        subscribe = worker_pb2.Subscribe(worker_id=f"raw-{i}", namespaces=[ns], kinds=["noop"], slots=100)
        await call.write(worker_pb2.DequeueRequest(subscribe=subscribe))
        try:
            async for msg in call:
                if msg.assignments:
                    await call.write(
                        RawWorker.results([(a.job.job_id, a.job.attempt, {}) for a in msg.assignments])
                    )
        finally:
            call.cancel()

    tasks = [asyncio.create_task(client(i)) for i in range(8)]
    try:
        for round_ in range(6):
            dag_id = await api.dag(ns, [(f"j{n}", def_id, {}) for n in range(3000)])

            async def progressed(dag_id: str = dag_id) -> bool:
                rows = await fetch(
                    database_url,
                    "select count(*) as n from jobs where dag_id = %s and state = 'SUCCEEDED'",
                    (dag_id,),
                )
                return bool(rows[0]["n"] >= 200)

            await poll(progressed, within=30, what="the streams to make progress", every=0.01)
            cancelled = False
            for _ in range(5):
                # A client retries UNAVAILABLE.
                try:
                    await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=dag_id))
                    cancelled = True
                    break
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"round {round_}: CancelDag {exc.code().name}: {exc.details()}")
            state = await wait_dag(database_url, dag_id, {"CANCELLED", "SUCCEEDED", "FAILED"}, within=10)
            # A cancel that never got through leaves the DAG to finish.
            assert cancelled and state == "CANCELLED", (state, failures)
            if failures:
                break  # shown once is enough; each deadlock costs a deadlock_timeout (1 s)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await check_invariants(database_url, None)
    # Cancels lock job rows in job_id order (claims skip locked rows) and
    # retry a lost deadlock themselves: a client never sees one.
    assert failures == []


# --- 9. cancelling a DAG while a lease expiry requeues one of its jobs ----------


@pytest.mark.timeout(60)
async def test_cancel_racing_a_lease_requeue_cancels_the_requeued_job(database_url: str) -> None:
    # The server's own reaper stays out of the way (it runs once, at start):
    # this test holds a reaper transaction open itself.
    server = Server(Config(database_url=database_url, grpc_port=0, reap_interval_s=3600))
    api = Api.connect(f"127.0.0.1:{await server.start()}")
    raw: RawWorker | None = None
    try:
        ns = await api.namespace("faults")
        def_id = await api.definition(ns, "noop", kind="noop", backoff_initial=seconds(0))
        dag_id = await api.dag(ns, [("x", def_id, {}), ("y", def_id, {})], [("x", "y")])
        raw = RawWorker(api.workers, worker_id="raw", namespaces=[ns], kinds=["noop"], slots=1)
        await raw.start()
        x = (await raw.next("assignment")).job
        await fetch(
            database_url,
            "update jobs set lease_expire_time = now() - interval '1 second' where job_id = %s returning 1",
            (x.job_id,),
        )
        async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
            async with conn.transaction():
                # The reaper's transaction: x back to READY (attempt 2).
                assert await leases.reap(conn) == (1, 0)

                async def cancel_dag() -> dag_pb2.Dag:
                    return await api.dags.CancelDag(dag_pb2.CancelDagRequest(namespace_id=ns, dag_id=dag_id))

                cancel = asyncio.create_task(cancel_dag())

                async def cancel_waits_for_the_row() -> bool:
                    rows = await fetch(
                        database_url,
                        "select count(*) as n from pg_stat_activity"
                        " where wait_event_type = 'Lock' and query like '%%cancel%%'",
                    )
                    return bool(rows[0]["n"])

                await poll(cancel_waits_for_the_row, within=10, what="CancelDag to wait for x's row lock")
            # Committed: the cancel goes on.
            assert (await cancel).state == dag_pb2.Dag.STATE_CANCELLED
        jobs = await jobs_by_key(database_url, dag_id)
        assert (jobs["x"]["state"], jobs["x"]["attempt"], jobs["y"]["state"]) == ("CANCELLED", 2, "CANCELLED")
    finally:
        if raw is not None:
            await raw.close()
        await api.close()
        await server.stop(grace=0)
    await check_invariants(database_url, None)
