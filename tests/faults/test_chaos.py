"""Long `command` jobs while workers are SIGKILLed and restarted under their
own ids, as `chronosched up` restarts its local workers; and a result that
outlives its worker.

The jobs (tests/faults/exec_job.py) write their own start, ticks and end to
the execution log and hold a per-job flock while they run, so "no two runs of
one job overlap" is checked twice: from the timestamps by check_invariants,
and exactly by the lock (a second live run finds it taken).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from chronosched_worker.reaper import reap_session
from tests.faults.helpers import Api, fetch, server_proc, wait_dag
from tests.faults.infra_proxy import BlackHoleProxy
from tests.faults.invariants import ExecutionLog, check_invariants
from tests.support.grpc_helpers import seconds, wait_serving
from tests.support.processes import clean_env, free_port
from tests.support.waiting import poll

REPO = Path(__file__).resolve().parents[2]
LEASE_S = 5.0
WORKERS = 3
SLOTS = 4
JOBS = 60
CHAOS_S = 20.0


@dataclass
class LocalWorker:
    """`chronosched worker` in a session of its own, restartable under its id."""

    worker_id: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    kills: int = 0
    leftovers: int = 0

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=clean_env(),
                start_new_session=True,
            )

    def kill_and_reap(self) -> None:
        """What `up` does to a worker that died: reap its session, then restart."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        self.kills += 1
        self.leftovers += len(reap_session(self.popen.pid))

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
            reap_session(self.popen.pid)


def local_worker(tmp: Path, target: str, ns: str, worker_id: str, *, slots: int = SLOTS) -> LocalWorker:
    args = [
        sys.executable,
        "-m",
        "chronosched_worker",
        "--server",
        target,
        "--namespace",
        ns,
        "--kinds",
        "command",
        "--worker-id",
        worker_id,
        "--concurrency",
        str(slots),
        "--grace",
        "2",
        "--state-dir",
        str(tmp / "state"),
    ]
    return LocalWorker(worker_id, args, tmp / f"{worker_id}.log")


def exec_job(log: ExecutionLog, locks: Path, run_s: float) -> dict[str, object]:
    return {
        "argv": [sys.executable, "-m", "tests.faults.exec_job", str(log.path), str(locks), f"{run_s:.2f}"]
    }


def overlaps_caught(locks: Path) -> list[dict[str, object]]:
    path = locks / "overlaps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_long_jobs_never_overlap_while_workers_are_killed_and_restarted(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    server = server_proc(tmp_path, "server", database_url, port, "--lease-seconds", str(LEASE_S)).start()
    log = ExecutionLog(tmp_path / "exec.jsonl")
    locks = tmp_path / "locks"
    locks.mkdir()
    workers = [local_worker(tmp_path, target, "chaos", f"chaos-{i}") for i in range(WORKERS)]
    api = Api.connect(target)
    rng = random.Random(8)
    try:
        await wait_serving(target, within=30, proc=server.proc)
        ns = await api.namespace("chaos")
        def_id = await api.definition(
            ns,
            "long",
            kind="command",
            max_attempts=10,
            backoff_initial=seconds(0.1),
            backoff_max=seconds(0.5),
        )
        for w in workers:
            w.start()
        jobs = [(f"j{i:03d}", def_id, exec_job(log, locks, rng.uniform(1.0, 3.0))) for i in range(JOBS)]
        dag_id = await api.dag(ns, jobs)

        began = time.monotonic()
        while time.monotonic() - began < CHAOS_S:
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            victim = rng.choice(workers)
            victim.kill_and_reap()
            victim.start()

        state = await wait_dag(database_url, dag_id, {"SUCCEEDED", "FAILED"}, within=150)
        rows = await fetch(database_url, "select key, state, attempt from jobs where dag_id = %s", (dag_id,))
    finally:
        for w in workers:
            w.stop()
        await api.close()
        server.signal(signal.SIGTERM)
        await server.wait_exit(30)

    kills = sum(w.kills for w in workers)
    states = Counter(r["state"] for r in rows)
    retried = [r["key"] for r in rows if r["attempt"] > 1]
    runs = log.load()
    killed_runs = [x for x in runs if x.end is None]
    print(
        f"\nchaos: {kills} worker kills in {CHAOS_S:g}s, {len(runs)} runs of {JOBS} jobs"
        f" ({len(killed_runs)} killed mid-run, {len(retried)} jobs retried),"
        f" {sum(w.leftovers for w in workers)} leftovers reaped; DAG {state}"
    )
    assert kills >= 6
    # The chaos did hit running jobs (else this proved nothing).
    assert killed_runs and retried
    assert overlaps_caught(locks) == []
    assert (state, dict(states)) == ("SUCCEEDED", {"SUCCEEDED": JOBS})
    await check_invariants(database_url, log)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_result_the_server_never_acknowledged_survives_the_worker(
    database_url: str, tmp_path: Path
) -> None:
    """The run succeeds behind a silent link, the worker is SIGKILLed before
    its result gets through, and the worker restarted under its id (with its
    state dir) reports it: the job succeeds at attempt 1 after one run. Without
    the spool the take-back on reconnect would cost the attempt and run the
    job again."""
    port = free_port()
    target = f"127.0.0.1:{port}"
    server = server_proc(tmp_path, "server", database_url, port, "--lease-seconds", "30").start()
    log = ExecutionLog(tmp_path / "exec.jsonl")
    locks = tmp_path / "locks"
    locks.mkdir()
    proxy = BlackHoleProxy("127.0.0.1", port)
    api = Api.connect(target)
    try:
        await wait_serving(target, within=30, proc=server.proc)
        proxy_port = await proxy.start()
        ns = await api.namespace("spool")
        def_id = await api.definition(ns, "once", kind="command", max_attempts=3)
        worker = local_worker(tmp_path, f"127.0.0.1:{proxy_port}", ns, "spooler", slots=1)
        worker.start()
        job_id = await api.tick(ns, def_id, exec_job(log, locks, 0.5))

        async def running() -> bool:
            return any(x.job_id == job_id for x in log.load())

        await poll(running, within=30, what="the job to start")
        proxy.pause()

        async def finished() -> bool:
            return any(x.job_id == job_id and x.end is not None for x in log.load())

        await poll(finished, within=30, what="the run to finish behind the silent link")
        spooled = tmp_path / "state" / "spooler"

        async def in_spool() -> bool:
            return any(spooled.iterdir())

        await poll(in_spool, within=10, what="the result to be spooled")
        worker.kill_and_reap()
        # Back under its id, straight to the server this time.
        worker.args[worker.args.index("--server") + 1] = target
        worker.start()

        async def succeeded() -> list[object] | None:
            rows = await fetch(database_url, "select state, attempt from jobs where job_id = %s", (job_id,))
            return [rows[0]["state"], rows[0]["attempt"]] if rows[0]["state"] != "RUNNING" else None

        assert await poll(succeeded, within=30, what="the job to finish") == ["SUCCEEDED", 1]
        assert [(x.attempt, x.outcome) for x in log.load()] == [(1, "success")]
        assert "resending 1 result(s)" in worker.log_path.read_text()
        # The server commits before the worker hears the ack and drops the
        # spooled file, so the empty spool is awaited, not read once.

        async def spool_empty() -> bool:
            return not any(spooled.iterdir())

        await poll(spool_empty, within=10, what="the acknowledged result to leave the spool")
    finally:
        await proxy.close()
        for w in [worker] if "worker" in locals() else []:
            w.stop()
        await api.close()
        server.signal(signal.SIGTERM)
        await server.wait_exit(30)
    await check_invariants(database_url, log)
