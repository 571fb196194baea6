"""Invariants every fault test ends with: what must hold however workers,
servers and PostgreSQL fail (docs/workers.md, "Delivery guarantee").

Two halves:

- `ExecutionLog`: an append-only JSON-lines file that test handlers in *any*
  process write to (SDK handlers, and `command` jobs through
  `python -m tests.faults.exec_job`): one line when an attempt starts, one
  when it ends, and "tick" lines while it works, so that a run killed
  mid-job still shows how long it was alive.
  Every line is written with a single `write(2)` on an `O_APPEND` descriptor,
  so lines of concurrent processes never interleave. Times are wall-clock
  `time.time()` floats (comparable across processes and with PostgreSQL's
  `now()` on the same machine).

      log = ExecutionLog(tmp_path / "exec.jsonl")
      with log.execution(ctx.job_id, ctx.attempt, worker_id) as run:
          ...
          run.tick()                     # optional; after each step of work
          run.result = {"n": 1}          # optional; recorded on success

  A run's span is from its start to its end; for a run that ended
  "cancelled" (it stopped, or was stopped, before its next step) or never
  ended (its process was killed), to its last tick, or its start without
  ticks. Handlers that may be stopped or killed therefore tick as they work
  (`work()` does).

- `check_invariants(database_url, log, ...)`: reads the database in one
  REPEATABLE READ snapshot (plus the log) and raises one AssertionError that
  lists every violation found:

  (a) terminal states: with `expect_terminal`, every job is SUCCEEDED,
      FAILED, CANCELLED or SKIPPED and no DAG is RUNNING. Always: a READY
      job has a due time (the claim orders and filters on it), every job
      carries its definition's kind (the claim filters on the job's copy),
      a job id is never both live and in history, terminal jobs have an end time and no
      lease, SUCCEEDED jobs have a result.
  (b) attempts (from the log): no two executions share one (job, attempt);
      no execution ran an attempt above the job's current attempt; a
      SUCCEEDED job that the log saw run has exactly one execution of its
      final attempt and it ended "success" (with the recorded result, if the
      handler recorded one); at most one "success" per job reached the
      database. No two executions of one job overlap in time (docs/workers.md,
      "Leases by the worker's clock: never two runs at once"), frozen and
      cut-off workers included: the worker stops a run whose lease it cannot
      confirm.
  (c) order: no execution of a job started before the end_time of any of
      its parents, and no job that ran (READY/RUNNING/SUCCEEDED/FAILED) has a
      parent that is not SUCCEEDED.
  (d) edges: for a PENDING job, pending_parents equals its number of
      non-SUCCEEDED parents (each edge unlocked exactly once); for
      READY/RUNNING/SUCCEEDED/FAILED jobs it is 0; never negative or above
      the parent count.
  (e) DAG counters: job_count is the number of jobs, unfinished_job_count is
      the number of non-terminal jobs, a started DAG whose jobs all SUCCEEDED
      is SUCCEEDED, a DAG with a FAILED job is FAILED or CANCELLED, a
      SUCCEEDED DAG has only SUCCEEDED jobs, a CANCELLED DAG has no
      non-terminal job.
  (f) acknowledged writes: every job in `acked` is SUCCEEDED with exactly
      that result.
  (g) references: every job's DAG and definition exist, and every edge's
      jobs (no foreign key checks these; the storage layer keeps them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

__all__ = [
    "TERMINAL_STATES",
    "Execution",
    "ExecutionLog",
    "Run",
    "Stopped",
    "check_invariants",
    "work",
]

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"})
# States a job reaches only once all its parents SUCCEEDED.
_RAN_STATES = frozenset({"READY", "RUNNING", "SUCCEEDED", "FAILED"})

# Outcomes handlers usually record; any string is accepted.
SUCCESS = "success"
FAILURE = "failure"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class Execution:
    """One attempt as one process ran it. `end`/`outcome` are None when the
    process never recorded the end (killed mid-job, or still running)."""

    run_id: str
    job_id: str
    attempt: int
    worker: str
    pid: int
    start: float
    end: float | None = None
    outcome: str | None = None
    result: dict[str, Any] | None = None
    # The newest tick: the last moment the run is known to have worked.
    last_tick: float | None = None

    @property
    def until(self) -> float:
        """The end of the run's span (see the module doc)."""
        if self.end is not None and self.outcome != CANCELLED:
            return self.end
        return self.last_tick if self.last_tick is not None else self.start

    def overlaps(self, other: Execution) -> bool:
        """True when the two runs' spans intersect."""
        return self.start < other.until and other.start < self.until


@dataclass
class Run:
    """Handle of a started execution; `ExecutionLog.record_end` closes it.

    Inside `ExecutionLog.execution()` set `result` (and optionally `outcome`)
    before the block ends."""

    log: ExecutionLog
    run_id: str
    job_id: str
    attempt: int
    worker: str
    outcome: str | None = None
    result: dict[str, Any] | None = field(default=None)
    ended: bool = False

    def tick(self) -> None:
        """Record that the run has just done a step of work and goes on."""
        self.log.record_tick(self.run_id)


class ExecutionLog:
    """Append-only JSON-lines execution log shared by processes (see module doc).

    Pass `path` to child processes (e.g. through an environment variable) and
    build another `ExecutionLog(path)` there; all writers append to one file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # One write call per line: O_APPEND makes seek+write atomic, so
            # concurrent writers never interleave within a line.
            written = os.write(fd, line)
            if written != len(line):  # pragma: no cover - regular files do not short-write
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
        finally:
            os.close(fd)

    def record_start(self, job_id: str, attempt: int, worker: str) -> str:
        """Record that this process starts `attempt` of `job_id`; returns the run id."""
        run_id = uuid.uuid4().hex
        self._append(
            {
                "event": "start",
                "run": run_id,
                "job_id": str(job_id),
                "attempt": int(attempt),
                "worker": worker,
                "pid": os.getpid(),
                "start": time.time(),
            }
        )
        return run_id

    def record_tick(self, run_id: str) -> None:
        self._append({"event": "tick", "run": run_id, "at": time.time()})

    def record_end(self, run_id: str, outcome: str, result: Mapping[str, Any] | None = None) -> None:
        """Record how the run ended ("success", "failure", "cancelled", ...)."""
        record: dict[str, Any] = {"event": "end", "run": run_id, "end": time.time(), "outcome": outcome}
        if result is not None:
            record["result"] = dict(result)
        self._append(record)

    @contextlib.contextmanager
    def execution(self, job_id: str, attempt: int, worker: str) -> Iterator[Run]:
        """Record start on entry and end on exit: "success" when the block
        returns (unless `run.outcome` says otherwise), "cancelled" on
        cancellation, "failure" on any other exception (re-raised)."""
        run = Run(self, self.record_start(job_id, attempt, worker), str(job_id), attempt, worker)
        try:
            yield run
        except BaseException as exc:
            if not run.ended:
                outcome = CANCELLED if isinstance(exc, asyncio.CancelledError) else FAILURE
                self.record_end(run.run_id, run.outcome or outcome)
                run.ended = True
            raise
        if not run.ended:
            self.record_end(run.run_id, run.outcome or SUCCESS, run.result)
            run.ended = True

    def load(self) -> list[Execution]:
        """Every execution in the log, in start order; end lines are merged
        into their start line. A missing file is an empty log."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        starts: dict[str, dict[str, Any]] = {}
        ends: dict[str, dict[str, Any]] = {}
        ticks: dict[str, float] = {}
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AssertionError(f"{self.path}:{number}: corrupt log line {line!r}") from exc
            if record.get("event") == "tick":
                ticks[record["run"]] = max(ticks.get(record["run"], 0.0), float(record["at"]))
                continue
            target = starts if record.get("event") == "start" else ends
            if record["run"] in target:
                raise AssertionError(f"{self.path}:{number}: run {record['run']} recorded twice")
            target[record["run"]] = record
        orphans = (set(ends) | set(ticks)) - set(starts)
        if orphans:
            raise AssertionError(f"{self.path}: end lines without a start: {sorted(orphans)}")
        out = []
        for run_id, s in starts.items():
            e = ends.get(run_id, {})
            out.append(
                Execution(
                    run_id=run_id,
                    job_id=s["job_id"],
                    attempt=s["attempt"],
                    worker=s["worker"],
                    pid=s["pid"],
                    start=s["start"],
                    end=e.get("end"),
                    outcome=e.get("outcome"),
                    result=e.get("result"),
                    last_tick=ticks.get(run_id),
                )
            )
        out.sort(key=lambda x: x.start)
        return out


class Stopped(Exception):
    """A run stopped before its next step because it was told to."""


class _Signal(Protocol):
    def is_set(self) -> bool: ...

    @property
    def reason(self) -> str: ...


TICK_S = 0.05


async def work(
    run: Run, cancelled: _Signal, seconds: float, *, until: Callable[[], bool] | None = None
) -> None:
    """Work for `seconds` (or, with `until`, until it returns true) in steps
    of at most TICK_S, ticking after each. Before every step it checks
    `cancelled` (the SDK's signal also turns true by itself once the lease may
    have lapsed) and raises Stopped instead: a run told to stop does no more
    work, which is what the overlap rule holds workers to."""
    deadline = time.monotonic() + seconds
    while True:
        # First: a process frozen and resumed must not count time it spent
        # frozen as work done (nor finish, which is a step too).
        if cancelled.is_set():
            run.outcome = CANCELLED
            raise Stopped(f"stopped: {cancelled.reason}")
        if until is not None and until():
            return
        left = deadline - time.monotonic()
        if until is None and left <= 0:
            return
        if until is not None and left <= 0:
            raise TimeoutError(f"the condition did not hold within {seconds}s")
        await asyncio.sleep(min(TICK_S, left))
        if cancelled.is_set():
            run.outcome = CANCELLED
            raise Stopped(f"stopped: {cancelled.reason}")
        run.tick()


def _ts(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


async def check_invariants(
    database_url: str,
    log: ExecutionLog | None,
    *,
    acked: Mapping[str, Mapping[str, Any]] | Mapping[uuid.UUID, Mapping[str, Any]] | None = None,
    expect_terminal: bool = True,
    clock_tolerance_s: float = 0.0,
) -> None:
    """Check (a)-(g) of the module doc over the whole database; raise one
    AssertionError listing every violation. `clock_tolerance_s` loosens the
    parent-end vs child-start comparison for a database on another host."""
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        async with conn.transaction():
            jobs = await (
                await conn.execute(
                    "select job_id::text, dag_id::text, def_id::text, key, state, attempt, max_attempts,"
                    " pending_parents, result, end_time, start_time, lease_expire_time, due_time, kind"
                    " from jobs"
                )
            ).fetchall()
            edges = await (
                await conn.execute(
                    "select dag_id::text, parent_job_id::text as parent, child_job_id::text as child"
                    " from dependencies"
                )
            ).fetchall()
            dags = await (
                await conn.execute(
                    "select dag_id::text, state, job_count, unfinished_job_count, start_time from dags"
                )
            ).fetchall()
            definitions = {
                r["def_id"]: r["kind"]
                for r in await (
                    await conn.execute("select def_id::text, kind from job_definitions")
                ).fetchall()
            }
            in_history = {
                r["job_id"]
                for r in await (
                    await conn.execute("select h.job_id::text from jobs_history h join jobs j using (job_id)")
                ).fetchall()
            }
            history_results = {
                r["job_id"]: r
                for r in await (
                    await conn.execute("select job_id::text, state, result from jobs_history")
                ).fetchall()
            }

    violations: list[str] = []
    by_id = {j["job_id"]: j for j in jobs}
    parents: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        parents[e["child"]].append(e["parent"])
        for end in ("parent", "child"):
            if e[end] not in by_id:
                violations.append(f"(g) edge {e['parent']}->{e['child']}: {end} job does not exist")

    def name(job_id: str) -> str:
        j = by_id.get(job_id)
        return f"job {job_id}" + (f" ({j['key']})" if j and j["key"] else "")

    # (g) references that no foreign key checks (docs/architecture.md)
    dag_ids = {d["dag_id"] for d in dags}
    for j in jobs:
        if j["dag_id"] is not None and j["dag_id"] not in dag_ids:
            violations.append(f"(g) {name(j['job_id'])} belongs to DAG {j['dag_id']}, which does not exist")
        if j["def_id"] not in definitions:
            violations.append(f"(g) {name(j['job_id'])} runs definition {j['def_id']}, which does not exist")

    # (a) terminal states, and what the claim reads
    for j in jobs:
        state = j["state"]
        if expect_terminal and state not in TERMINAL_STATES:
            violations.append(f"(a) {name(j['job_id'])} is {state}, expected a terminal state")
        if state in TERMINAL_STATES:
            if j["end_time"] is None:
                violations.append(f"(a) {name(j['job_id'])} is {state} without an end_time")
            if j["lease_expire_time"] is not None and state in ("SUCCEEDED", "FAILED"):
                violations.append(f"(a) {name(j['job_id'])} is {state} but still holds a lease")
        if state == "SUCCEEDED" and j["result"] is None:
            violations.append(f"(a) {name(j['job_id'])} SUCCEEDED without a result")
        if state == "READY" and j["due_time"] is None:
            violations.append(f"(a) {name(j['job_id'])} is READY without a due time")
        kind = definitions.get(j["def_id"])
        if kind is not None and j["kind"] != kind:
            violations.append(f"(a) {name(j['job_id'])} has kind {j['kind']!r}, its definition {kind!r}")
    for job_id in sorted(in_history):
        violations.append(f"(a) {name(job_id)} is both live and in jobs_history")

    # (b) attempts, from the log
    executions = log.load() if log is not None else []
    runs: dict[str, list[Execution]] = defaultdict(list)
    for x in executions:
        runs[x.job_id].append(x)
    for job_id, xs in runs.items():
        jr = by_id.get(job_id)
        seen: dict[int, Execution] = {}
        for x in xs:
            prev = seen.get(x.attempt)
            if prev is not None:
                where = "the same worker" if prev.worker == x.worker else f"{prev.worker} and {x.worker}"
                violations.append(f"(b) {name(job_id)} attempt {x.attempt} ran twice, on {where}")
            seen[x.attempt] = x
        for i, a in enumerate(xs):
            for b in xs[i + 1 :]:
                if a.overlaps(b):
                    violations.append(
                        f"(b) {name(job_id)}: attempts {a.attempt} ({a.worker}, {a.start:.3f}-{a.until:.3f})"
                        f" and {b.attempt} ({b.worker}, {b.start:.3f}-{b.until:.3f}) overlap in time"
                    )
        if jr is None:
            hist = history_results.get(job_id)
            if hist is None:
                violations.append(f"(b) {name(job_id)} ran (per the log) but no such job exists")
            continue
        for x in xs:
            if x.attempt > jr["attempt"]:
                violations.append(
                    f"(b) {name(job_id)} attempt {x.attempt} ran but the job is only at"
                    f" attempt {jr['attempt']}"
                )
        if jr["state"] == "SUCCEEDED":
            final = [x for x in xs if x.attempt == jr["attempt"]]
            if len(final) != 1 or final[0].outcome != SUCCESS:
                violations.append(
                    f"(b) {name(job_id)} SUCCEEDED at attempt {jr['attempt']} but the log has"
                    f" {[(x.attempt, x.worker, x.outcome) for x in final]} for that attempt"
                )
            elif final[0].result is not None and final[0].result != jr["result"]:
                violations.append(
                    f"(b) {name(job_id)} result {jr['result']!r} is not that of the accepted attempt"
                    f" {jr['attempt']} ({final[0].result!r})"
                )

    # (c) no job before its parents
    for job_id, ps in parents.items():
        child = by_id.get(job_id)
        if child is None:
            continue
        bad = [p for p in ps if p in by_id and by_id[p]["state"] != "SUCCEEDED"]
        if child["state"] in _RAN_STATES and bad:
            violations.append(
                f"(c) {name(job_id)} is {child['state']} but parents"
                f" {[(name(p), by_id[p]['state']) for p in bad]} did not succeed"
            )
        parent_ends = [_ts(by_id[p]["end_time"]) for p in ps if p in by_id]
        latest = max((t for t in parent_ends if t is not None), default=None)
        for x in runs.get(job_id, []):
            if bad or latest is None:
                violations.append(
                    f"(c) {name(job_id)} attempt {x.attempt} ran at {x.start:.6f} but not all of its parents"
                    " have SUCCEEDED"
                )
            elif x.start + clock_tolerance_s < latest:
                violations.append(
                    f"(c) {name(job_id)} attempt {x.attempt} started {latest - x.start:.6f}s before its last"
                    " parent ended"
                )
        child_start = _ts(child["start_time"])
        if child_start is not None and latest is not None and child_start + clock_tolerance_s < latest:
            violations.append(f"(c) {name(job_id)} start_time is before its last parent's end_time")

    # (d) each edge unlocked exactly once
    for j in jobs:
        ps = parents.get(j["job_id"], [])
        not_done = sum(1 for p in ps if p in by_id and by_id[p]["state"] != "SUCCEEDED")
        pp = j["pending_parents"]
        if pp < 0 or pp > len(ps):
            violations.append(f"(d) {name(j['job_id'])} pending_parents {pp} with {len(ps)} parents")
        elif j["state"] == "PENDING" and pp != not_done:
            violations.append(
                f"(d) {name(j['job_id'])} PENDING with pending_parents {pp} but {not_done} parents unfinished"
            )
        elif j["state"] in _RAN_STATES and pp != 0:
            violations.append(f"(d) {name(j['job_id'])} is {j['state']} with pending_parents {pp}")
        elif j["state"] in ("CANCELLED", "SKIPPED") and pp < not_done:
            violations.append(
                f"(d) {name(j['job_id'])} {j['state']} with pending_parents {pp}"
                f" < {not_done} unfinished parents"
            )

    # (e) DAG counters and states
    dag_jobs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for j in jobs:
        if j["dag_id"] is not None:
            dag_jobs[j["dag_id"]].append(j)
    for d in dags:
        js = dag_jobs.get(d["dag_id"], [])
        states = [j["state"] for j in js]
        unfinished = sum(1 for s in states if s not in TERMINAL_STATES)
        label = f"DAG {d['dag_id']} ({d['state']})"
        if d["job_count"] != len(js):
            violations.append(f"(e) {label} job_count {d['job_count']} but {len(js)} jobs")
        if d["unfinished_job_count"] != unfinished:
            violations.append(
                f"(e) {label} unfinished_job_count {d['unfinished_job_count']}"
                f" but {unfinished} unfinished jobs"
            )
        started = js and d["start_time"] is not None
        if started and all(s == "SUCCEEDED" for s in states) and d["state"] != "SUCCEEDED":
            violations.append(f"(e) {label}: every job SUCCEEDED but the DAG is {d['state']}")
        if d["state"] == "SUCCEEDED" and any(s != "SUCCEEDED" for s in states):
            violations.append(f"(e) {label} has jobs in {sorted(set(states) - {'SUCCEEDED'})}")
        if "FAILED" in states and d["state"] not in ("FAILED", "CANCELLED"):
            violations.append(f"(e) {label} has a FAILED job")
        if d["state"] == "CANCELLED" and unfinished:
            violations.append(f"(e) {label} still has {unfinished} unfinished jobs")
        if expect_terminal and d["state"] == "RUNNING":
            violations.append(f"(e) {label} is still RUNNING")

    # (f) acknowledged writes
    for raw_id, result in (acked or {}).items():
        job_id = str(raw_id)
        jr = by_id.get(job_id) or history_results.get(job_id)
        if jr is None:
            violations.append(f"(f) acknowledged {name(job_id)} is missing")
        elif jr["state"] != "SUCCEEDED":
            violations.append(f"(f) acknowledged {name(job_id)} is {jr['state']}, not SUCCEEDED")
        elif jr["result"] != dict(result):
            violations.append(
                f"(f) acknowledged {name(job_id)} has result {jr['result']!r}, acked {dict(result)!r}"
            )

    if violations:
        shown = violations[:200]
        more = f"\n  ... and {len(violations) - len(shown)} more" if len(violations) > len(shown) else ""
        raise AssertionError(
            f"{len(violations)} invariant violation(s) over {len(jobs)} jobs, {len(dags)} DAGs,"
            f" {len(executions)} logged executions:\n  " + "\n  ".join(shown) + more
        )
