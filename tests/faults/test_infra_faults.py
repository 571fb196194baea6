"""Infrastructure faults with real processes: the server, PostgreSQL and the
network fail under load, and the guarantees hold (docs/workers.md, "Delivery
guarantee" and "Leases by the worker's clock").

Every test runs `python -m chronosched_server server` and worker processes
(`tests/faults/infra_worker.py`, the SDK's Worker with a handler that writes
the shared ExecutionLog) against a real PostgreSQL, breaks one piece of
infrastructure while jobs flow, and ends with `check_invariants`:

1/2. the server stopped with SIGTERM / killed with SIGKILL under load and
     started again on the same port: the workers reconnect by themselves and
     resend unacknowledged results; every job finishes.
3.   PostgreSQL stopped and started again under load: health goes NOT_SERVING
     while it is down and SERVING again by itself; the pool and the LISTEN
     connection come back; every job finishes.
4.   a worker's stream silently black-holed by a TCP proxy mid-job: the lease
     runs out, a directly connected worker runs attempt 2, and the stale
     attempt-1 result that arrives when the proxy heals is rejected.

The only re-runs allowed are the documented at-least-once ones: an attempt
whose result the server never applied may be followed by another attempt;
two accepted results for one job never happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from chronosched.v1 import (
    dag_pb2,
    dag_pb2_grpc,
    definition_pb2,
    definition_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
)
from chronosched_server.dispatch.dispatcher import CANCEL_CHANNEL
from chronosched_server.local.embedded import EmbeddedPostgres
from chronosched_server.storage.migrate import migrate
from tests.faults.infra_proxy import BlackHoleProxy
from tests.faults.infra_worker import KIND
from tests.faults.invariants import ExecutionLog, check_invariants
from tests.support.grpc_helpers import health_status, seconds, struct
from tests.support.processes import clean_env, server_argv
from tests.support.processes import free_port as free_port  # test_health_fast.py imports it from here
from tests.support.waiting import poll

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Leases for the restart tests: longer than any outage here, so no running
# attempt loses its lease merely because the server or database was away.
RESTART_LEASE_S = 10.0
# The dropped-stream test waits for a lease to run out: keep it short.
SHORT_LEASE_S = 2.0
REAP_INTERVAL_S = 0.2

SERVER_READY_S = 30.0
FINISH_S = 60.0
EXIT_S = 30.0


# --- processes ---------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, max_chars: int = 3000) -> str:
        return f"--- {self.name} (pid {self.pid}, {self.log_path}) ---\n{self.log_text()[-max_chars:]}"


@dataclass
class Harness:
    """Every process a test starts, its files, and their clean-up."""

    root: Path
    database_url: str
    namespace: str = "faults"
    procs: list[Proc] = field(default_factory=list)
    _seq: int = 0

    @property
    def exec_log(self) -> ExecutionLog:
        return ExecutionLog(self.root / "exec.jsonl")

    @property
    def acks_path(self) -> Path:
        return self.root / "acks.jsonl"

    def _spawn(self, name: str, args: list[str]) -> Proc:
        self._seq += 1
        log_path = self.root / f"{self._seq:02d}-{name}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=REPO,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_server(self, port: int, *, lease_s: float, name: str = "server") -> Proc:
        return self._spawn(
            name,
            server_argv(
                self.database_url,
                port,
                "--lease-seconds",
                str(lease_s),
                "--reap-interval-seconds",
                str(REAP_INTERVAL_S),
            ),
        )

    def start_worker(self, worker_id: str, target: str, *, concurrency: int = 8) -> Proc:
        return self._spawn(
            worker_id,
            [
                sys.executable,
                "-m",
                "tests.faults.infra_worker",
                "--server",
                target,
                "--namespace",
                self.namespace,
                "--worker-id",
                worker_id,
                "--exec-log",
                str(self.exec_log.path),
                "--acks",
                str(self.acks_path),
                "--concurrency",
                str(concurrency),
            ],
        )

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(10)

    def acks(self) -> list[dict[str, Any]]:
        try:
            lines = self.acks_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]


@contextlib.contextmanager
def temp_root() -> Iterator[Path]:
    # Not pytest's tmp_path: as root, pgserver opens every parent of its data
    # directory to its own user, which another pytest session may undo
    # (tests/e2e/conftest.py).
    # INFRA_FAULTS_KEEP=DIR keeps every test's logs (processes, execution
    # log, acks) under DIR for a post-mortem.
    root = Path(tempfile.mkdtemp(prefix="chronosched-faults-"))
    try:
        yield root
    finally:
        keep = os.environ.get("INFRA_FAULTS_KEEP")
        if keep:
            shutil.copytree(root, Path(keep) / root.name, ignore=shutil.ignore_patterns("data"))
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def harness(database_url: str) -> AsyncIterator[Harness]:
    with temp_root() as root:
        h = Harness(root=root, database_url=database_url)
        try:
            yield h
        except BaseException:
            # The processes' own words are the best clue to a failure.
            print(h.tails(), file=sys.stderr)
            raise
        finally:
            h.kill_all()


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    within_s: float,
    what: str,
    h: Harness | None = None,
    every_s: float = 0.02,
) -> T:
    """`poll` with every process's log tail (of `h`) in the failure message."""
    return await poll(probe, within=within_s, what=what, every=every_s, detail=h.tails if h else None)


async def wait_exit(proc: Proc, within_s: float = EXIT_S) -> int:
    async def ended() -> int | None:
        return proc.popen.poll()

    return await eventually(ended, within_s, f"{proc.name} (pid {proc.pid}) to exit")


async def stop_workers(h: Harness, workers: list[Proc]) -> None:
    """SIGTERM: each drains (its results acknowledged) and exits 0."""
    for w in workers:
        w.popen.send_signal(signal.SIGTERM)
    for w in workers:
        code = await wait_exit(w)
        assert code == 0, f"{w.name} exited with {code}\n{w.tail()}"


# --- gRPC --------------------------------------------------------------------


async def wait_health(target: str, want: int, within_s: float, h: Harness, server: Proc) -> None:
    async def probe() -> bool:
        code = server.popen.poll()
        assert code is None, f"{server.name} exited with {code}\n{server.tail()}"
        return await health_status(target) == want

    name = health_pb2.HealthCheckResponse.ServingStatus.Name(want)
    await eventually(probe, within_s, f"{target} to report {name}", h, every_s=0.05)


async def define(target: str, namespace: str, *, max_attempts: int = 5) -> str:
    """The namespace and one `fault` definition with quick retries; its def_id."""
    async with grpc.aio.insecure_channel(target) as channel:
        await namespace_pb2_grpc.NamespaceServiceStub(channel).CreateNamespace(
            namespace_pb2.CreateNamespaceRequest(namespace_id=namespace)
        )
        definition = await definition_pb2_grpc.DefinitionServiceStub(channel).CreateDefinition(
            definition_pb2.CreateDefinitionRequest(
                namespace_id=namespace,
                name="fault",
                kind=KIND,
                max_attempts=max_attempts,
                backoff_initial=seconds(0.05),
                backoff_max=seconds(0.5),
            )
        )
        def_id: str = definition.def_id
        return def_id


@dataclass
class DagSpec:
    jobs: list[tuple[str, dict[str, Any]]]
    edges: list[tuple[str, str]]


def layered_dag(rng: random.Random, layers: int, width: int) -> DagSpec:
    """`layers` x `width` jobs; each job past the first layer has two parents
    in the layer before (fan-in and fan-out both)."""
    jobs = [
        (f"l{layer}-{i}", {"sleep_ms": rng.randint(15, 60)}) for layer in range(layers) for i in range(width)
    ]
    edges = [
        (f"l{layer - 1}-{p}", f"l{layer}-{i}")
        for layer in range(1, layers)
        for i in range(width)
        for p in rng.sample(range(width), 2)
    ]
    return DagSpec(jobs, edges)


async def create_dags(target: str, namespace: str, def_id: str, specs: list[DagSpec]) -> list[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = dag_pb2_grpc.DagServiceStub(channel)
        dag_ids = []
        for n, spec in enumerate(specs):
            dag = await stub.CreateDag(
                dag_pb2.CreateDagRequest(
                    namespace_id=namespace,
                    name=f"load-{n}",
                    jobs=[dag_pb2.JobSpec(key=k, def_id=def_id, payload=struct(p)) for k, p in spec.jobs],
                    dependencies=[dag_pb2.DagEdge(parent=p, child=c) for p, c in spec.edges],
                    start=True,
                )
            )
            dag_ids.append(dag.dag_id)
        return dag_ids


# --- the database ------------------------------------------------------------


async def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


async def job_counts(url: str) -> dict[str, int]:
    rows = await query(url, "select state, count(*) from jobs group by state")
    return {str(state): int(n) for state, n in rows}


async def wait_all_finished(h: Harness, url: str, within_s: float = FINISH_S) -> dict[str, int]:
    async def probe() -> dict[str, int] | None:
        rows = await query(url, "select state, count(*) from dags group by state")
        states = {str(state): int(n) for state, n in rows}
        return None if states.get("RUNNING") or states.get("PENDING") else states

    return await eventually(probe, within_s, "every DAG to finish", h, every_s=0.05)


async def wait_progress(h: Harness, url: str, at_least: int) -> dict[str, int]:
    """Wait until `at_least` jobs succeeded; returns the counts, which must
    show jobs running (the fault lands under load, not after it)."""

    async def probe() -> dict[str, int] | None:
        counts = await job_counts(url)
        return counts if counts.get("SUCCEEDED", 0) >= at_least else None

    counts = await eventually(probe, FINISH_S, f"{at_least} jobs to succeed", h)
    assert counts.get("RUNNING", 0) > 0, counts
    return counts


# --- shared checks -----------------------------------------------------------


def accepted_results(h: Harness) -> dict[str, dict[str, Any]]:
    """job_id -> the result the server accepted (from the workers' acks),
    after checking no job ever had two different attempts accepted."""
    accepted: dict[str, set[int]] = defaultdict(set)
    results: dict[str, dict[str, Any]] = {}
    for ack in h.acks():
        if not ack["accepted"]:
            continue
        accepted[ack["job_id"]].add(ack["attempt"])
        if ack["result"] is not None:
            results[ack["job_id"]] = ack["result"]
    doubled = {job_id: sorted(a) for job_id, a in accepted.items() if len(a) > 1}
    assert not doubled, f"jobs with more than one accepted attempt: {doubled}"
    return results


async def final_checks(h: Harness, url: str, *, jobs_total: int) -> dict[str, Any]:
    """After the workers drained: every job SUCCEEDED, every success result
    acknowledged, the invariants hold. Returns figures for the report."""
    counts = await job_counts(url)
    assert counts == {"SUCCEEDED": jobs_total}, counts
    dags = await query(url, "select state, count(*) from dags group by state")
    assert {str(s) for s, _ in dags} == {"SUCCEEDED"}, dags
    acked = accepted_results(h)
    # The workers exited 0 after draining, so every result the database
    # applied reached its worker as an acknowledgement (resent if need be).
    assert len(acked) == jobs_total, f"{jobs_total - len(acked)} applied results never acknowledged"
    await check_invariants(url, h.exec_log, acked=acked)
    executions = h.exec_log.load()
    reruns = len(executions) - jobs_total
    runs: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for x in executions:
        runs[x.job_id].append((x.worker, x.attempt))
    # Jobs past attempt 1, with why (the last error) and who ran which
    # attempt: the at-least-once re-runs, for the report.
    retried = [
        (str(key), int(attempt), str(error)[:80], runs.get(str(job_id), []))
        for job_id, key, attempt, error in await query(
            url, "select job_id::text, key, attempt, error from jobs where attempt > 1 order by key"
        )
    ]
    return {
        "executions": len(executions),
        "reruns": reruns,
        "retried": retried,
    }


def connected_workers(server: Proc) -> set[str]:
    return set(re.findall(r"worker (\S+) connected", server.log_text()))


# --- 1 and 2: server restart under load --------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_server_restart_under_load(database_url: str, sig: signal.Signals) -> None:
    async with harness(database_url) as h:
        port = free_port()
        target = f"127.0.0.1:{port}"
        first = h.start_server(port, lease_s=RESTART_LEASE_S, name="server-1")
        await wait_health(target, SERVING, SERVER_READY_S, h, first)
        def_id = await define(target, h.namespace)
        workers = [h.start_worker(w, target) for w in ("w1", "w2")]
        rng = random.Random(sig.value)
        specs = [layered_dag(rng, layers=4, width=10) for _ in range(8)]
        jobs_total = sum(len(s.jobs) for s in specs)
        await create_dags(target, h.namespace, def_id, specs)

        at_fault = await wait_progress(h, database_url, jobs_total // 4)
        fault_time = time.time()
        first.popen.send_signal(sig)
        code = await wait_exit(first)
        stop_s = time.time() - fault_time
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), first.tail()
        assert all(w.popen.poll() is None for w in workers), h.tails()

        # The old server is gone (no SO_REUSEPORT sharing of the port with it).
        restart_time = time.time()
        second = h.start_server(port, lease_s=RESTART_LEASE_S, name="server-2")
        await wait_health(target, SERVING, SERVER_READY_S, h, second)
        await wait_all_finished(h, database_url)

        # Nobody restarted the workers: they find the new server themselves.
        # One may still be in its reconnect backoff (up to 5 s, twice: ours
        # and the channel's) when the other has finished every job.
        async def both_connected() -> bool:
            return connected_workers(second) >= {"w1", "w2"}

        await eventually(both_connected, 20, "both workers connected to the new server", h)
        await stop_workers(h, workers)

        # Results of attempts that ended while no server could acknowledge
        # them (the jobs in flight at the fault), acknowledged by the second
        # server: the workers kept them and resent them on the new stream.
        ended = {(x.job_id, x.attempt): x.end for x in h.exec_log.load() if x.end is not None}
        resent = [
            a
            for a in h.acks()
            if a["time"] > restart_time
            and (end := ended.get((a["job_id"], a["attempt"]))) is not None
            and end < restart_time
        ]
        figures = await final_checks(h, database_url, jobs_total=jobs_total)
        assert resent, f"no result was resent after the restart ({figures})"
        print(
            f"\n{sig.name}: {jobs_total} jobs, at the fault {at_fault}; exited in {stop_s:.1f}s;"
            f" {len(resent)} results resent"
            f" and acknowledged by the new server; {figures}"
        )
        second.popen.send_signal(signal.SIGTERM)
        assert await wait_exit(second) == 0, second.tail()


# --- 3: PostgreSQL restart under load ----------------------------------------


async def dispatcher_listening(url: str) -> bool:
    """Whether a session sits on the dispatcher's LISTEN (its last statement
    is the second `listen`, after which it only waits for notifications)."""
    rows = await query(
        url,
        "select count(*) from pg_stat_activity where datname = current_database()"
        " and pid <> pg_backend_pid() and query = %s",
        (f"listen {CANCEL_CHANNEL}",),
    )
    return int(rows[0][0]) > 0


@dataclass
class OwnPostgres:
    """A server process on a PostgreSQL of its own (which a test may stop)."""

    pg: EmbeddedPostgres
    url: str
    h: Harness
    server: Proc
    target: str


@contextlib.asynccontextmanager
async def server_on_own_postgres() -> AsyncIterator[OwnPostgres]:
    """A fresh embedded PostgreSQL, migrated, and a serving server on it."""
    with temp_root() as pg_root:
        pg = EmbeddedPostgres(pg_root / "data")
        url = await asyncio.to_thread(pg.start)
        try:
            await migrate(url)
            async with harness(url) as h:
                port = free_port()
                target = f"127.0.0.1:{port}"
                server = h.start_server(port, lease_s=RESTART_LEASE_S)
                await wait_health(target, SERVING, SERVER_READY_S, h, server)
                yield OwnPostgres(pg, url, h, server, target)
        finally:
            await asyncio.to_thread(pg.stop)


@pytest.mark.timeout(150)
async def test_postgres_restart_under_load() -> None:
    async with server_on_own_postgres() as own:
        pg, url, h, server, target = own.pg, own.url, own.h, own.server, own.target
        await eventually(lambda: dispatcher_listening(url), 10, "the server's LISTEN connection", h)
        def_id = await define(target, h.namespace)
        workers = [h.start_worker(w, target) for w in ("w1", "w2")]
        rng = random.Random(3)
        specs = [layered_dag(rng, layers=4, width=10) for _ in range(8)]
        jobs_total = sum(len(s.jobs) for s in specs)
        await create_dags(target, h.namespace, def_id, specs)

        at_fault = await wait_progress(h, url, jobs_total // 4)
        down_at = time.monotonic()
        await asyncio.to_thread(pg.stop)
        await wait_health(target, NOT_SERVING, 15, h, server)
        detected_s = time.monotonic() - down_at
        assert server.popen.poll() is None and all(w.popen.poll() is None for w in workers)

        again = await asyncio.to_thread(pg.start)
        # pgserver keeps the socket in the data directory (or a
        # directory named after it), so the URL survives the restart;
        # were it to change, no server could find the database again.
        assert again == url
        up_at = time.monotonic()
        await wait_health(target, SERVING, 20, h, server)
        recovered_s = time.monotonic() - up_at
        # The LISTEN connection is back, not just the pool (the slow
        # poll alone would also finish the jobs, only later).
        await eventually(lambda: dispatcher_listening(url), 20, "LISTEN to reconnect", h)
        await wait_all_finished(h, url)
        await stop_workers(h, workers)
        figures = await final_checks(h, url, jobs_total=jobs_total)
        print(
            f"\npostgres restart: {jobs_total} jobs, at the fault {at_fault}; NOT_SERVING after"
            f" {detected_s:.1f}s, SERVING {recovered_s:.1f}s after the restart; {figures}"
        )
        server.popen.send_signal(signal.SIGTERM)
        assert await wait_exit(server) == 0, server.tail()


# --- 4: a stream silently dropped --------------------------------------------


@pytest.mark.timeout(90)
async def test_silently_cut_off_worker_stops_its_run_before_the_lease_could_pass(database_url: str) -> None:
    async with harness(database_url) as h:
        port = free_port()
        target = f"127.0.0.1:{port}"
        server = h.start_server(port, lease_s=SHORT_LEASE_S)
        await wait_health(target, SERVING, SERVER_READY_S, h, server)
        def_id = await define(target, h.namespace, max_attempts=3)
        proxy = BlackHoleProxy("127.0.0.1", port)
        proxy_port = await proxy.start()
        try:
            release = h.root / "release"
            spec = DagSpec(
                jobs=[("held", {"wait_for": str(release)}), ("after", {"sleep_ms": 10})],
                edges=[("held", "after")],
            )
            # One slot: the held job is the only one this worker gets.
            behind = h.start_worker("behind-proxy", f"127.0.0.1:{proxy_port}", concurrency=1)
            (dag_id,) = await create_dags(target, h.namespace, def_id, [spec])
            held_id = (await query(database_url, "select job_id::text from jobs where key = 'held'"))[0][0]

            def run_of(job_id: str, attempt: int, *, ended: bool = False) -> Callable[[], Awaitable[bool]]:
                async def probe() -> bool:
                    return any(
                        x.job_id == job_id and x.attempt == attempt and (x.end is not None or not ended)
                        for x in h.exec_log.load()
                    )

                return probe

            await eventually(run_of(held_id, 1), 30, "attempt 1 to start behind the proxy", h)
            # Mid-job: the link goes silent both ways; nobody closes anything.
            # The job itself would go on for ever (its file never appears).
            proxy.pause()
            paused_at = time.monotonic()
            direct = h.start_worker("direct", target, concurrency=4)

            await eventually(run_of(held_id, 1, ended=True), 10, "the cut-off attempt 1 to stop", h)
            stopped_s = time.monotonic() - paused_at

            async def attempt_2_succeeded() -> tuple[Any, ...] | None:
                rows = await query(
                    database_url,
                    "select state, attempt, worker_id, result from jobs where job_id = %s",
                    (held_id,),
                )
                return rows[0] if rows[0][0] == "SUCCEEDED" else None

            release.touch()
            _, attempt, worker_id, result = await eventually(
                attempt_2_succeeded, 30, "the held job to succeed as attempt 2", h
            )
            lost_s = time.monotonic() - paused_at
            assert (attempt, worker_id, result["worker"], result["attempt"]) == (2, "direct", "direct", "2")
            await wait_all_finished(h, database_url)
            runs = {x.attempt: x for x in h.exec_log.load() if x.job_id == held_id}
            assert sorted(runs) == [1, 2], runs
            first, second = runs[1], runs[2]
            # The cut-off run stopped by its own clock, before the lease could
            # pass to the other worker: no overlap, and within the lease.
            assert first.outcome == "cancelled" and first.until < second.start, (first, second)
            assert stopped_s < SHORT_LEASE_S, stopped_s
            # Both sides give the silent stream up after the silence timeout
            # (three heartbeat intervals of a third of the lease each), the
            # server at its next timer tick (0.5 s); tests/faults/test_silence.py
            # holds them to the bound.
            silence_s = SHORT_LEASE_S

            def logged(proc: Proc, text: str) -> Callable[[], Awaitable[bool]]:
                async def probe() -> bool:
                    return text in proc.log_text()

                return probe

            await eventually(logged(behind, "no word from the server"), 5, "the worker to give up", h)
            await eventually(logged(server, "behind-proxy silent for"), 5, "the server to end the stream", h)
            assert behind.popen.poll() is None, behind.tail()

            proxy.resume()

            async def late_ack() -> dict[str, Any] | None:
                return next((a for a in h.acks() if a["worker"] == "behind-proxy"), None)

            ack = await eventually(late_ack, 30, "the late attempt-1 result to be answered", h)
            assert (ack["job_id"], ack["attempt"], ack["accepted"], ack["reason"]) == (
                held_id,
                1,
                False,
                "STALE_ATTEMPT",
            ), ack
            # The rejected result changed nothing.
            rows = await query(
                database_url, "select attempt, worker_id, result from jobs where job_id = %s", (held_id,)
            )
            assert rows[0] == (2, "direct", result)

            await stop_workers(h, [behind, direct])
            acked = accepted_results(h)
            assert set(acked) == {r[0] for r in await query(database_url, "select job_id::text from jobs")}
            await check_invariants(database_url, h.exec_log, acked=acked)
            print(
                f"\nsilent partition: cut-off run stopped {stopped_s:.2f}s after the cut"
                f" (lease {SHORT_LEASE_S}s,"
                f" silence timeout {silence_s}s); attempt 2 done {lost_s:.1f}s after it; late result"
                f" rejected ({ack['reason']}); dag {dag_id}"
            )
        finally:
            await proxy.close()
        server.popen.send_signal(signal.SIGTERM)
        assert await wait_exit(server) == 0, server.tail()
