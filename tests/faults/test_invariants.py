"""The checker itself: `check_invariants` passes on a clean run and names
each kind of violation when the database or the execution log is broken on
purpose; `ExecutionLog` survives concurrent writers in several processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chronosched.v1 import job_pb2
from chronosched_server.app import Server
from chronosched_server.config import Config
from tests.faults.helpers import REPO, Api, fetch, jobs_by_key
from tests.faults.invariants import ExecutionLog, check_invariants
from tests.support.grpc_helpers import struct

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    server = Server(Config(database_url=database_url, grpc_port=0))
    port = await server.start()
    client = Api.connect(f"127.0.0.1:{port}")
    try:
        yield client
    finally:
        await client.close()
        await server.stop(grace=0)


async def execute(database_url: str, query: str, *params: object) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(query, params)


async def finished_dag(api: Api, database_url: str, log: ExecutionLog) -> dict[str, str]:
    """a -> b, both completed by hand with logged executions; returns key -> job id."""
    ns = await api.namespace("inv")
    def_id = await api.definition(ns, "manual", kind="manual")
    dag_id = await api.dag(ns, [("a", def_id, {}), ("b", def_id, {})], [("a", "b")])
    ids = {k: r["job_id"] for k, r in (await jobs_by_key(database_url, dag_id)).items()}
    for key in ("a", "b"):
        with log.execution(ids[key], 1, "w1") as run:
            run.result = {"key": key}
        await api.jobs.CompleteJob(
            job_pb2.CompleteJobRequest(job_id=ids[key], attempt=1, result=struct(run.result))
        )
    return ids


async def violations(database_url: str, log: ExecutionLog | None, **kwargs: object) -> str:
    with pytest.raises(AssertionError) as info:
        await check_invariants(database_url, log, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


async def test_clean_run_passes(api: Api, database_url: str, tmp_path: Path) -> None:
    log = ExecutionLog(tmp_path / "log.jsonl")
    ids = await finished_dag(api, database_url, log)
    await check_invariants(database_url, log, acked={ids["a"]: {"key": "a"}, ids["b"]: {"key": "b"}})


async def test_log_violations_are_named(api: Api, database_url: str, tmp_path: Path) -> None:
    log = ExecutionLog(tmp_path / "log.jsonl")
    ids = await finished_dag(api, database_url, log)
    # The same attempt run again elsewhere, a second attempt that never was,
    # and a child start before its parent ended.
    with log.execution(ids["a"], 1, "w2"):
        pass
    with log.execution(ids["a"], 2, "w3"):
        pass
    a_end = (await fetch(database_url, "select end_time from jobs where job_id = %s", (ids["a"],)))[0][
        "end_time"
    ]
    log._append(
        {"event": "start", "run": "early", "job_id": ids["b"], "attempt": 1, "worker": "w9", "pid": 1,
         "start": a_end.timestamp() - 1.0}
    )  # fmt: skip
    text = await violations(database_url, log)
    assert "attempt 1 ran twice, on w1 and w2" in text
    assert "attempt 2 ran but the job is only at attempt 1" in text
    assert "started 1.0" in text and "before its last parent ended" in text


async def test_overlapping_runs_of_one_job_are_a_violation(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    ns = await api.namespace("inv")
    def_id = await api.definition(ns, "manual", kind="manual", max_attempts=3)
    job_id = await api.tick(ns, def_id)
    log = ExecutionLog(tmp_path / "log.jsonl")
    # Attempt 1 is abandoned to its lease but goes on working while attempt 2 runs.
    first = log.record_start(job_id, 1, "frozen")
    await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=job_id, attempt=1, error="lease lost"))
    second = log.record_start(job_id, 2, "other")
    log.record_end(second, "success", {"w": "other"})
    log.record_end(first, "success", {"w": "frozen"})
    await execute(database_url, "update jobs set due_time = now() where job_id = %s", job_id)
    await api.jobs.CompleteJob(
        job_pb2.CompleteJobRequest(job_id=job_id, attempt=2, result=struct({"w": "other"}))
    )
    assert "attempts 1 (frozen" in await violations(database_url, log)
    # The stored result must be the accepted (final) attempt's.
    await execute(database_url, """update jobs set result = '{"w": "frozen"}' where job_id = %s""", job_id)
    assert "is not that of the accepted attempt 2" in await violations(database_url, log)


async def test_run_spans_end_at_the_last_tick_of_killed_and_cancelled_runs(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    ns = await api.namespace("inv")
    def_id = await api.definition(ns, "manual", kind="manual", max_attempts=3)
    job_id = await api.tick(ns, def_id)
    log = ExecutionLog(tmp_path / "log.jsonl")
    killed = log.record_start(job_id, 1, "killed")
    log.record_tick(killed)
    # Killed after its tick: its span ends there, so attempt 2 after it is fine.
    await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=job_id, attempt=1, error="lease lost"))
    await execute(database_url, "update jobs set due_time = now() where job_id = %s", job_id)
    stopped = log.record_start(job_id, 2, "stopped")
    log.record_tick(stopped)
    await api.jobs.FailJob(job_pb2.FailJobRequest(job_id=job_id, attempt=2, error="lease lost"))
    await execute(database_url, "update jobs set due_time = now() where job_id = %s", job_id)
    third = log.record_start(job_id, 3, "third")
    # Attempt 2 noticed its lost lease only now, after attempt 3 began, and
    # did no work since its tick: no overlap.
    log.record_end(stopped, "cancelled")
    log.record_end(third, "success", {"w": "third"})
    await api.jobs.CompleteJob(
        job_pb2.CompleteJobRequest(job_id=job_id, attempt=3, result=struct({"w": "third"}))
    )
    await check_invariants(database_url, log)
    # One more tick of attempt 2 after attempt 3 began is an overlap.
    log.record_tick(stopped)
    assert "attempts 2 (stopped" in await violations(database_url, log)
    # So is a killed run whose last tick came after a later run began.
    log.record_tick(killed)
    assert "attempts 1 (killed" in await violations(database_url, log)


async def test_database_violations_are_named(api: Api, database_url: str, tmp_path: Path) -> None:
    log = ExecutionLog(tmp_path / "log.jsonl")
    ids = await finished_dag(api, database_url, log)
    ns = "inv"
    def_id = await api.definition(ns, "other", kind="other")
    ready = await api.tick(ns, def_id)
    await execute(database_url, "update jobs set pending_parents = 1 where job_id = %s", ids["b"])
    await execute(database_url, "update dags set unfinished_job_count = 1")
    await execute(database_url, "update jobs set kind = 'wrong', due_time = null where job_id = %s", ready)
    text = await violations(
        database_url, None, acked={ids["a"]: {"key": "x"}, "00000000-0000-0000-0000-000000000000": {}}
    )
    assert "(a) job " + ready in text and "is READY, expected a terminal state" in text
    assert f"(a) job {ready} (other) has kind 'wrong', its definition 'other'" in text
    assert f"(a) job {ready} (other) is READY without a due time" in text
    assert "(d) job " + ids["b"] + " (b) is SUCCEEDED with pending_parents 1" in text
    assert "unfinished_job_count 1 but 0 unfinished jobs" in text
    assert """has result {'key': 'a'}, acked {'key': 'x'}""" in text
    assert "acknowledged job 00000000-0000-0000-0000-000000000000 is missing" in text
    # Without expect_terminal a READY job is fine, the wrong kind is not.
    text = await violations(database_url, None, expect_terminal=False)
    assert "expected a terminal state" not in text and "has kind 'wrong'" in text


async def test_orphans_are_named(api: Api, database_url: str) -> None:
    """No foreign key stops these (migration 0012), so the check must."""
    ns = await api.namespace("inv")
    def_id = await api.definition(ns, "manual", kind="manual")
    dag_id = await api.dag(ns, [("a", def_id, {}), ("b", def_id, {})], [("a", "b")])
    ids = {k: r["job_id"] for k, r in (await jobs_by_key(database_url, dag_id)).items()}
    await check_invariants(database_url, None, expect_terminal=False)
    await execute(database_url, "delete from dags where dag_id = %s", dag_id)
    await execute(database_url, "delete from jobs where job_id = %s", ids["b"])
    ghost = "00000000-0000-7000-8000-000000000001"
    await execute(database_url, "update jobs set def_id = %s where job_id = %s", ghost, ids["a"])
    text = await violations(database_url, None, expect_terminal=False)
    assert f"(g) job {ids['a']} (a) belongs to DAG {dag_id}, which does not exist" in text
    assert f"(g) job {ids['a']} (a) runs definition {ghost}, which does not exist" in text
    assert f"(g) edge {ids['a']}->{ids['b']}: child job does not exist" in text


async def test_pending_child_counts_and_order(api: Api, database_url: str) -> None:
    ns = await api.namespace("inv")
    def_id = await api.definition(ns, "manual", kind="manual")
    dag_id = await api.dag(
        ns, [("a", def_id, {}), ("b", def_id, {}), ("c", def_id, {})], [("a", "c"), ("b", "c")]
    )
    ids = {k: r["job_id"] for k, r in (await jobs_by_key(database_url, dag_id)).items()}
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=ids["a"], result=struct({})))
    await check_invariants(database_url, None, expect_terminal=False)
    # An edge unlocked twice / a child run early.
    await execute(database_url, "update jobs set pending_parents = 0 where job_id = %s", ids["c"])
    assert "PENDING with pending_parents 0 but 1 parents unfinished" in await violations(
        database_url, None, expect_terminal=False
    )
    await execute(database_url, "update jobs set state = 'RUNNING' where job_id = %s", ids["c"])
    text = await violations(database_url, None, expect_terminal=False)
    assert "(c) job " + ids["c"] + " (c) is RUNNING but parents" in text


def test_log_survives_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    script = (
        "import sys\n"
        "from tests.faults.invariants import ExecutionLog\n"
        "log = ExecutionLog(sys.argv[1])\n"
        "for i in range(400):\n"
        "    with log.execution(f'job-{sys.argv[2]}-{i}', 1, 'w' + sys.argv[2]) as run:\n"
        "        run.result = {'pad': 'x' * (i % 97) * 40}\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], cwd=REPO) for n in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    lines = path.read_bytes().splitlines()
    assert len(lines) == 4 * 400 * 2
    assert all(json.loads(line)["run"] for line in lines)
    runs = ExecutionLog(path).load()
    assert len(runs) == 1600 and all(r.outcome == "success" and r.end is not None for r in runs)
