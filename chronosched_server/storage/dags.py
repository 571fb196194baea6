"""DAGs: creation with whole topologies, incremental building, start, cancel, delete."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from psycopg.rows import DictRow

from chronosched_server import topology
from chronosched_server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Why
from chronosched_server.ids import uuid7, uuid7_strs
from chronosched_server.storage import definitions, leases, namespaces
from chronosched_server.storage.bulk import copy_rows, copy_text
from chronosched_server.storage.db import (
    Conn,
    Database,
    Pending,
    begin,
    commit,
    execute,
    fetch_all,
    fetch_record,
    fetch_records,
    pending,
    pending_records,
    with_retries,
)
from chronosched_server.storage.metrics import Tally
from chronosched_server.storage.records import Dag, Dependency, Job
from chronosched_server.validation import MAX_JOBS_PER_DAG, Violations, check_kind_payload
from chronosched_worker.kinds import payload_problem

log = logging.getLogger(__name__)

W = TypeVar("W")


class NewJob(NamedTuple):
    """A validated JobSpec; `payload` None means the template as it is. A
    tuple: a 1,000-job enqueue builds a thousand of them, and a frozen
    dataclass's constructor costs three times as much."""

    key: str
    def_id: uuid.UUID
    payload: dict[str, Any] | None
    priority: int | None


def sealed(dag: Dag) -> FailedPrecondition:
    return FailedPrecondition(
        f"DAG {dag.dag_id} is {dag.state}: DAGs are immutable once started;"
        " create a new DAG to change its topology",
        reason="DAG_SEALED",
        metadata={"dag_id": str(dag.dag_id), "state": dag.state},
    )


async def _dag_or_404(conn: Conn, query: str, namespace_id: str, dag_id: uuid.UUID) -> Dag:
    """One DAG by `query` (lock_dag, read_dag or get_dag); NOT_FOUND names
    the namespace when that is what is missing."""
    dag = await fetch_record(conn, Dag, query, {"namespace_id": namespace_id, "dag_id": dag_id})
    return await namespaces.found_or_404(conn, dag, namespace_id, "dag", str(dag_id))


async def _lock(conn: Conn, namespace_id: str, dag_id: uuid.UUID) -> Dag:
    return await _dag_or_404(conn, "lock_dag", namespace_id, dag_id)


async def _lock_pending(conn: Conn, namespace_id: str, dag_id: uuid.UUID) -> Dag:
    dag = await _lock(conn, namespace_id, dag_id)
    if dag.state != "PENDING":
        raise sealed(dag)
    return dag


class Versions(NamedTuple):
    """The distinct definition versions some new jobs run (rows of
    definitions_by_ids, held) and, per job, the index of its own there."""

    rows: list[DictRow]
    which: list[int]


class VersionsSent(NamedTuple):
    """definitions_by_ids sent (in a pipeline, unanswered yet) for some new
    jobs: the distinct def ids asked for, and per job the index of its own."""

    namespace_id: str
    asked: list[uuid.UUID]
    which: list[int]
    rows: Pending[DictRow]

    async def checked(self) -> Versions:
        """The versions, each found in the namespace and live; or the error
        naming the first job that runs one that is not."""
        found = {row["def_id"]: row for row in await self.rows.fetch()}
        rows: list[DictRow] = []
        for n, def_id in enumerate(self.asked):
            row = found.get(def_id)
            if row is None or row["retire_time"] is not None:
                i = self.which.index(n)
                if row is None:
                    raise InvalidArgument.one(
                        f"jobs[{i}].def_id",
                        f"no definition {str(def_id)!r} in namespace {self.namespace_id!r}",
                        Why.NOT_FOUND,
                        reason="DEFINITION_NOT_FOUND",
                    )
                raise definitions.retired(
                    self.namespace_id,
                    row["name"],
                    def_id,
                    row["version"],
                    row["retire_time"],
                    f"jobs[{i}].def_id",
                )
            rows.append(row)
            # Read live here: the one-statement paths may use it from now on.
            definitions.remember(self.namespace_id, def_id, row["kind"], row["payload_template"])
        return Versions(rows, self.which)


async def send_versions(conn: Conn, namespace_id: str, jobs: Sequence[NewJob]) -> VersionsSent:
    """Read and hold the versions `jobs` run, without waiting for the rows
    (pipeline mode). A job's def_id is hashed once here and never again
    (uuid.UUID hashes in Python; a 1,000-job enqueue looked each up eight
    times)."""
    slot: dict[uuid.UUID, int] = {}
    which = [slot.setdefault(job.def_id, len(slot)) for job in jobs]
    params = {"namespace_id": namespace_id, "def_ids": list(slot)}
    return VersionsSent(
        namespace_id, list(slot), which, await pending(conn, "definitions_by_ids", params, _row)
    )


def _row(row: DictRow) -> DictRow:
    return row


class Opening(NamedTuple):
    """The first step of a create sent in steps (`Database.steps`): BEGIN,
    the namespace hold, the request id's claim and the versions' read, in
    the caller's pipeline (which may add statements of its own)."""

    namespace_id: str
    idem: namespaces.RequestIds
    held: Pending[datetime]
    claim: Pending[str] | None
    versions: VersionsSent

    async def answers(self) -> tuple[datetime, Versions] | list[uuid.UUID]:
        """Read in the order a caller's errors rank: NOT_FOUND for a missing
        namespace, then a replay (the first call's resource ids, returned),
        then the versions' errors; else the transaction's time and the
        versions."""
        now = await namespaces.held(self.held, self.namespace_id)
        earlier = await self.idem.earlier(self.claim)
        if earlier is not None:
            return earlier
        return now, await self.versions.checked()

    async def close(
        self,
        conn: Conn,
        few: bool,
        write: Callable[[], Awaitable[W]],
        resources: Callable[[W], list[uuid.UUID]],
    ) -> W:
        """The last steps: `write` (the rows) and then, in one pipeline, the
        request id's record (naming `resources` of what `write` returned) and
        COMMIT. With `few` rows the write joins that pipeline; otherwise it
        runs before it, as COPY cannot travel in one. Returns what `write` did."""
        if not few:
            written = await write()
            async with conn.pipeline():
                await self._end(conn, written, resources)
            return written
        async with conn.pipeline():
            written = await write()
            await self._end(conn, written, resources)
        return written

    async def _end(self, conn: Conn, written: W, resources: Callable[[W], list[uuid.UUID]]) -> None:
        if self.idem.active:
            await self.idem.record(resources(written))
        await commit(conn)


async def open_steps(
    conn: Conn, namespace_id: str, idem: namespaces.RequestIds, jobs: Sequence[NewJob]
) -> Opening:
    """Send a create's first step (in the caller's pipeline)."""
    await begin(conn)
    held = await namespaces.send_hold(conn, namespace_id)
    claim = await idem.send_claim()
    return Opening(namespace_id, idem, held, claim, await send_versions(conn, namespace_id, jobs))


# Up to this many jobs (and edges) go in as one INSERT from arrays, which a
# caller can send in the pipeline of its transaction's last step; more go by
# COPY, which costs two round trips of its own but less per row. Measured at
# the storage layer on one machine (docs/performance.md): the INSERT wins
# below about 8 to 12 rows (0.91 against 1.02 ms for one job) and loses
# above (2.50 against 1.83 ms for 64). Over a network each round trip saved
# is worth more.
INSERT_MAX = 8


def copies(n: int) -> bool:
    """Whether `insert_jobs` (or `insert_edges`) writes `n` rows by COPY,
    which must run outside a pipeline, or by an INSERT, which may run in one."""
    return n > INSERT_MAX


async def insert_jobs(
    conn: Conn,
    namespace_id: str,
    dag_id: uuid.UUID | None,
    jobs: Sequence[NewJob],
    indegrees: Sequence[int],
    ready_at: datetime | None,
    tally: Tally | None = None,
    versions: Versions | None = None,
) -> list[str]:
    """Write the jobs; with `ready_at`, jobs without parents go in READY, due then.
    `versions`: theirs, if the caller read them already (send_versions).
    By COPY or by one INSERT, as `copies` says for their number.

    `dag_id` None makes standalone jobs (EnqueueJobs), keyed by their
    definition's name as Tick and cron fires key theirs; the jobs' own keys
    are not used then. Returns the new job ids as text, the form COPY needs;
    adds them to `tally.created` by kind.
    """
    if versions is None:
        versions = await (await send_versions(conn, namespace_id, jobs)).checked()
    defs, which = versions
    copying = copies(len(jobs))
    # COPY's text format doubles backslashes (the only character JSON text
    # can hold that it escapes); an INSERT takes the JSON as it is.
    escape: Callable[[str], str] = copy_text if copying else str
    templates = [row["payload_template"] for row in defs]
    kinds = [row["kind"] for row in defs]
    template_text = [escape(json.dumps(t, separators=(",", ":"))) for t in templates]
    # Built-in kinds' payloads are checked before anything is written; a
    # template once per definition, a merged payload per job that has one
    # (merged once: its text is rendered here too).
    v = Violations()
    bad_template = [payload_problem(kind, t) is not None for kind, t in zip(kinds, templates, strict=True)]
    payloads: list[str] = []
    for i, (job, d) in enumerate(zip(jobs, which, strict=True)):
        if job.payload:
            merged = {**templates[d], **job.payload}
            check_kind_payload(v, f"jobs[{i}].payload", kinds[d], merged)
            payloads.append(escape(json.dumps(merged, separators=(",", ":"))))
        else:
            if bad_template[d]:
                check_kind_payload(v, f"jobs[{i}].payload", kinds[d], templates[d])
            payloads.append(template_text[d])
    v.raise_if_any()
    ids = uuid7_strs(len(jobs))
    # The row rules, for both writers: a job's own priority over its
    # definition's default, and READY (due at `ready_at`) only for a job
    # without parents in a started DAG or run.
    priorities = [
        defs[d]["default_priority"] if job.priority is None else job.priority
        for job, d in zip(jobs, which, strict=True)
    ]
    starts = [parents == 0 for parents in indegrees] if ready_at is not None else [False] * len(jobs)
    if not copying:
        rows = [defs[d] for d in which]
        await execute(
            conn,
            "insert_job_rows",
            {
                "namespace_id": namespace_id,
                "dag_id": dag_id,
                "job_ids": ids,
                "def_ids": [row["def_id"] for row in rows],
                "kinds": [row["kind"] for row in rows],
                # A standalone job's key is its definition's name (below).
                "keys": [row["name"] for row in rows] if dag_id is None else [job.key for job in jobs],
                "states": ["READY" if start else "PENDING" for start in starts],
                "max_attempts": [row["max_attempts"] for row in rows],
                "priorities": priorities,
                "pending_parents": list(indegrees),
                "payloads": payloads,
                "due_times": [ready_at if start else None for start in starts],
            },
        )
    else:
        due = ready_at.isoformat() if ready_at else r"\N"
        # Per definition, the constant parts of a row (UUIDs rendered once:
        # str() per row dominated the COPY otherwise); the loop only glues.
        # A standalone job's key is its definition's name, so it is part of
        # the constant middle; a DAG job's own key follows it.
        if dag_id is None:
            middle = [f"\t{namespace_id}\t\\N\t{row['def_id']}\t{row['kind']}\t{row['name']}" for row in defs]
            keys: Sequence[str] = [""] * len(jobs)
        else:
            dag_text = str(dag_id)
            middle = [f"\t{namespace_id}\t{dag_text}\t{row['def_id']}\t{row['kind']}\t" for row in defs]
            keys = [job.key for job in jobs]
        lines: list[str] = []
        for job_id, key, d, parents, payload, priority, start in zip(
            ids, keys, which, indegrees, payloads, priorities, starts, strict=True
        ):
            row = defs[d]
            if start:
                lines.append(
                    f"{job_id}{middle[d]}{key}\tREADY\t{row['max_attempts']}\t{priority}\t0\t{payload}\t{due}\n"
                )
            else:
                lines.append(
                    f"{job_id}{middle[d]}{key}\tPENDING\t{row['max_attempts']}\t{priority}\t{parents}"
                    f"\t{payload}\t\\N\n"
                )
        await copy_rows(
            conn,
            b"copy jobs (job_id, namespace_id, dag_id, def_id, kind, key, state, max_attempts, priority,"
            b" pending_parents, payload, due_time) from stdin",
            lines,
        )
    if tally is not None:
        for d, n in Counter(which).items():
            tally.created[namespace_id, kinds[d]] += n
    return ids


async def insert_edges(conn: Conn, dag_id: uuid.UUID, edges: Sequence[tuple[str, str]]) -> None:
    """Write a DAG's edges (parent and child job ids), by COPY or by one
    INSERT as `copies` says for their number."""
    if not copies(len(edges)):
        await execute(
            conn,
            "insert_edge_rows",
            {"dag_id": dag_id, "parents": [p for p, _ in edges], "children": [c for _, c in edges]},
        )
        return
    dag_text = str(dag_id)
    await copy_rows(
        conn,
        b"copy dependencies (dag_id, parent_job_id, child_job_id) from stdin",
        (f"{dag_text}\t{p}\t{c}\n" for p, c in edges),
    )


async def create(
    db: Database,
    namespace_id: str,
    name: str,
    jobs: Sequence[NewJob],
    edges: Sequence[tuple[int, int]],
    start: bool,
    request_id: str,
    tally: Tally | None = None,
) -> Dag:
    """Create a DAG with its topology in one transaction; `edges` are validated and acyclic.

    A small DAG of versions read here before goes in one statement
    (`_create_one_statement`); otherwise, or when that made nothing, in
    steps: the namespace hold, the request id's claim, the versions' read
    and the DAG row go out together (with BEGIN); then the COPYs, if the
    jobs or edges are many; then the jobs and edges if they are few, the
    request id's record and COMMIT together. The first step's answers are
    read in the order a caller's errors rank: namespace, replay, versions."""
    indegrees = topology.indegrees(len(jobs), edges)
    made_at_once = await _create_one_statement(
        db, namespace_id, name, jobs, edges, indegrees, start, request_id, tally
    )
    if made_at_once is not None:
        return made_at_once
    dag_id = uuid7()
    async with db.steps() as conn:
        idem = namespaces.RequestIds(conn, namespace_id, CREATE_DAG, request_id)
        async with conn.pipeline():
            opening = await open_steps(conn, namespace_id, idem, jobs)
            params = {
                "dag_id": dag_id,
                "namespace_id": namespace_id,
                "name": name,
                "job_count": len(jobs),
                "start": start,
            }
            made = await pending_records(conn, "insert_dag", params, Dag)
        answers = await opening.answers()
        if isinstance(answers, list):
            # Ours is rolled back; the first call's DAG has committed.
            return await _get(conn, namespace_id, answers[0])
        _, checked = answers
        (dag,) = await made.fetch()

        async def write() -> None:
            if jobs:
                ready_at = dag.start_time if start else None
                ids = await insert_jobs(conn, namespace_id, dag_id, jobs, indegrees, ready_at, tally, checked)
                if edges:
                    await insert_edges(conn, dag_id, [(ids[p], ids[c]) for p, c in edges])

        few = not copies(len(jobs)) and not copies(len(edges))
        await opening.close(conn, few, write, lambda _: [dag_id])
    after_bulk_load(db, len(jobs))
    return dag


# CreateDag's method name in request_ids (idempotency keys are per method).
CREATE_DAG = "CreateDag"


async def _create_one_statement(
    db: Database,
    namespace_id: str,
    name: str,
    jobs: Sequence[NewJob],
    edges: Sequence[tuple[int, int]],
    indegrees: Sequence[int],
    start: bool,
    request_id: str,
    tally: Tally | None,
) -> Dag | None:
    """A small DAG (jobs and edges few enough for one INSERT each) whose
    versions this process has read, in one statement and one round trip:
    the payloads are merged and checked here first, then create_dag_one
    holds, inserts and returns the DAG. None when that path does not apply
    or made nothing (something missing or retired, a payload to refuse, or
    the request id taken: a replay); the steps path then says which."""
    if not jobs or copies(len(jobs)) or copies(len(edges)):
        return None
    known = [definitions.known(namespace_id, job.def_id) for job in jobs]
    payloads: list[str] = []
    for job, version in zip(jobs, known, strict=True):
        if version is None:
            return None
        merged = {**version.payload_template, **job.payload} if job.payload else version.payload_template
        if payload_problem(version.kind, merged) is not None:
            return None  # refused by the steps path, after what they check first
        payloads.append(json.dumps(merged, separators=(",", ":")))
    ids = uuid7_strs(len(jobs))
    params = {
        "dag_id": uuid7(),
        "namespace_id": namespace_id,
        "name": name,
        "job_count": len(jobs),
        "start": start,
        "method": CREATE_DAG,
        "request_id": request_id or None,
        "def_ids": list(dict.fromkeys(job.def_id for job in jobs)),
        "job_ids": ids,
        "job_def_ids": [job.def_id for job in jobs],
        "keys": [job.key for job in jobs],
        "priorities": [job.priority for job in jobs],
        "pending_parents": list(indegrees),
        "payloads": payloads,
        "parents": [ids[p] for p, _ in edges],
        "children": [ids[c] for _, c in edges],
    }
    async with db.statement() as conn:
        dag = await fetch_record(conn, Dag, "create_dag_one", params)
    if dag is not None and tally is not None:
        for version in known:
            assert version is not None
            tally.created[namespace_id, version.kind] += 1
    return dag


# After a bulk load this large the planner's row estimates are far off until
# autovacuum analyzes (up to a minute later), and generic plans of the hot
# completion statements may fall back to sequential scans meanwhile.
ANALYZE_AFTER_JOBS = 10_000
_background: set[asyncio.Task[None]] = set()


def after_bulk_load(db: Database, jobs: int) -> None:
    """Refresh the queue tables' statistics in the background once a call
    has loaded `jobs` jobs, if that many can mislead the planner."""
    if jobs < ANALYZE_AFTER_JOBS:
        return

    async def run() -> None:
        try:
            async with db.transaction() as conn:
                await execute(conn, "analyze_queue_tables", {})
        except Exception:
            log.warning("analyze after a bulk load failed", exc_info=True)

    task = asyncio.create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _get(conn: Conn, namespace_id: str, dag_id: uuid.UUID) -> Dag:
    """Live or pruned (history)."""
    return await _dag_or_404(conn, "get_dag", namespace_id, dag_id)


async def get(db: Database, namespace_id: str, dag_id: uuid.UUID) -> Dag:
    async with db.reads() as conn:
        return await _get(conn, namespace_id, dag_id)


async def list_page(
    db: Database, namespace_id: str, state: str | None, after: uuid.UUID | None, limit: int
) -> list[Dag]:
    async with db.reads() as conn:
        await namespaces.require(conn, namespace_id)
        return await fetch_records(
            conn,
            Dag,
            "list_dags",
            {"namespace_id": namespace_id, "state": state, "after": after, "limit": limit},
        )


@contextlib.contextmanager
def _in_dag(namespace_id: str, dag_id: uuid.UUID) -> Iterator[None]:
    """A duplicate (job key, edge) names its DAG, not a constraint."""
    try:
        yield
    except AlreadyExists as exc:
        raise AlreadyExists(
            exc.message, reason=exc.reason, metadata={"namespace_id": namespace_id, "dag_id": str(dag_id)}
        ) from exc


async def create_jobs(
    db: Database,
    namespace_id: str,
    dag_id: uuid.UUID,
    jobs: Sequence[NewJob],
    request_id: str,
    tally: Tally | None = None,
) -> list[Job]:
    with _in_dag(namespace_id, dag_id):
        return await _create_jobs(db, namespace_id, dag_id, jobs, request_id, tally)


async def add_dependencies(
    db: Database,
    namespace_id: str,
    dag_id: uuid.UUID,
    edges: Sequence[tuple[uuid.UUID, uuid.UUID]],
    field: str,
) -> None:
    """Add edges between jobs of one PENDING DAG, all or nothing, keeping it acyclic."""
    with _in_dag(namespace_id, dag_id):
        await _add_dependencies(db, namespace_id, dag_id, edges, field)


async def _create_jobs(
    db: Database,
    namespace_id: str,
    dag_id: uuid.UUID,
    jobs: Sequence[NewJob],
    request_id: str,
    tally: Tally | None,
) -> list[Job]:
    async with db.transaction() as conn:
        await namespaces.hold(conn, namespace_id)
        idem = namespaces.RequestIds(conn, namespace_id, "CreateJobs", request_id)
        dag = await _lock(conn, namespace_id, dag_id)
        ids = await idem.claim()
        if ids is None:
            if dag.state != "PENDING":
                raise sealed(dag)
            if dag.job_count + len(jobs) > MAX_JOBS_PER_DAG:
                raise FailedPrecondition(
                    f"DAG {dag_id} would have {dag.job_count + len(jobs)} jobs;"
                    f" the limit is {MAX_JOBS_PER_DAG} (docs/limits.md)",
                    reason="DAG_TOO_LARGE",
                )
            ids = [
                uuid.UUID(i)
                for i in await insert_jobs(conn, namespace_id, dag_id, jobs, [0] * len(jobs), None, tally)
            ]
            await execute(conn, "add_dag_jobs", {"dag_id": dag_id, "n": len(jobs)})
            await idem.record(ids)
        return await fetch_records(conn, Job, "get_jobs_by_ids", {"job_ids": ids})


async def _add_dependencies(
    db: Database,
    namespace_id: str,
    dag_id: uuid.UUID,
    edges: Sequence[tuple[uuid.UUID, uuid.UUID]],
    field: str,
) -> None:
    async with db.transaction() as conn:
        await _lock_pending(conn, namespace_id, dag_id)
        key_rows = await fetch_all(conn, "dag_job_keys", {"dag_id": dag_id})
        index = {row["job_id"]: i for i, row in enumerate(key_rows)}
        names = [row["key"] for row in key_rows]
        await _check_members(conn, namespace_id, index, edges, field)
        existing = {
            (r["parent_job_id"], r["child_job_id"])
            for r in await fetch_all(conn, "dag_edges", {"dag_id": dag_id})
        }
        seen: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        for n, edge in enumerate(edges):
            if edge in existing:
                raise AlreadyExists(
                    f"{field}[{n}]: the dependency {edge[0]} -> {edge[1]} already exists",
                    reason="DEPENDENCY_EXISTS",
                )
            if edge in seen:
                raise InvalidArgument.one(
                    f"{field}[{n}]", f"duplicate of {field}[{seen[edge]}]", Why.DUPLICATE
                )
            seen[edge] = n
        all_edges = [(index[p], index[c]) for p, c in [*existing, *edges]]
        topology.check_acyclic(len(names), all_edges, names)
        await execute(
            conn,
            "insert_edges",
            {"dag_id": dag_id, "parents": [p for p, _ in edges], "children": [c for _, c in edges]},
        )
        counts: dict[uuid.UUID, int] = {}
        for _, child in edges:
            counts[child] = counts.get(child, 0) + 1
        await execute(conn, "add_pending_parents", {"job_ids": list(counts), "counts": list(counts.values())})


async def _check_members(
    conn: Conn,
    namespace_id: str,
    index: dict[uuid.UUID, int],
    edges: Sequence[tuple[uuid.UUID, uuid.UUID]],
    field: str,
) -> None:
    """Every edge joins jobs of the DAG (`index`). A job of another DAG of
    the namespace is CROSS_DAG_EDGE; one of another namespace is looked for
    only in this one, so it is NOT_FOUND exactly like a missing job."""
    outside = sorted({j for edge in edges for j in edge if j not in index})
    if not outside:
        return
    rows = await fetch_all(conn, "jobs_dag_of", {"job_ids": outside, "namespace_id": namespace_id})
    homes = {r["job_id"]: r["dag_id"] for r in rows}
    for n, (parent, child) in enumerate(edges):
        for side, job_id in (("parent_job_id", parent), ("child_job_id", child)):
            if job_id in index:
                continue
            if job_id in homes:
                raise FailedPrecondition(
                    f"{field}[{n}].{side}: job {job_id} belongs to another DAG;"
                    " edges across DAGs are not allowed",
                    reason="CROSS_DAG_EDGE",
                )
            raise NotFound("job", str(job_id))


async def start(db: Database, namespace_id: str, dag_id: uuid.UUID) -> Dag:
    async with db.transaction() as conn:
        dag = await _lock(conn, namespace_id, dag_id)
        if dag.state != "PENDING":
            raise FailedPrecondition(
                f"DAG {dag_id} is already {dag.state}; only a PENDING DAG can be started",
                reason="DAG_ALREADY_STARTED",
            )
        if dag.job_count == 0:
            raise FailedPrecondition(
                f"DAG {dag_id} has no jobs; add jobs before starting it", reason="DAG_EMPTY"
            )
        started = await fetch_record(conn, Dag, "start_dag", {"dag_id": dag_id})
        await execute(conn, "start_dag_roots", {"dag_id": dag_id})
        assert started is not None
        return started


async def cancel(db: Database, namespace_id: str, dag_id: uuid.UUID, tally: Tally | None = None) -> Dag:
    """Cancel a DAG's unfinished jobs; adds them to `tally.cancelled`."""
    return await with_retries(lambda: _cancel(db, namespace_id, dag_id, tally))


async def _cancel(db: Database, namespace_id: str, dag_id: uuid.UUID, tally: Tally | None) -> Dag:
    cancelled: Counter[tuple[str, str]] = Counter()
    async with db.transaction() as conn:
        # Not locked up front: completions lock job rows before the DAG row,
        # so a cancel does the same (jobs, then the DAG row).
        dag = await _read_live(conn, namespace_id, dag_id)
        # A FAILED DAG may still have jobs running on branches that do not
        # descend from the failure: cancelling stops them and keeps FAILED.
        if dag.state == "SUCCEEDED" or (dag.state == "FAILED" and dag.unfinished_job_count == 0):
            raise FailedPrecondition(
                f"DAG {dag_id} already {dag.state}; nothing to cancel", reason=f"DAG_{dag.state}"
            )
        if dag.state == "CANCELLED":
            return dag
        await _cancel_jobs(conn, namespace_id, dag_id, "DAG cancelled", cancelled)
        row = await fetch_record(conn, Dag, "cancel_dag", {"dag_id": dag_id})
        assert row is not None
    # Committed: a retried attempt (with_retries) counts only once.
    if tally is not None:
        tally.cancelled.update(cancelled)
    return row


async def _read_live(conn: Conn, namespace_id: str, dag_id: uuid.UUID) -> Dag:
    """Live, without a lock."""
    return await _dag_or_404(conn, "read_dag", namespace_id, dag_id)


async def _cancel_jobs(
    conn: Conn, namespace_id: str, dag_id: uuid.UUID, reason: str, cancelled: Counter[tuple[str, str]]
) -> None:
    """Cancel every unfinished job, counted into `cancelled` by kind; running
    attempts get a cancel pushed to their worker (the notification is
    delivered only if the transaction commits)."""
    rows = await fetch_all(conn, "cancel_dag_jobs", {"dag_id": dag_id})
    running = [row for row in rows if row["job_id"] is not None]
    for row in rows:
        if row["kind"] is not None:
            cancelled[namespace_id, row["kind"]] += row["n"]
    await leases.notify_cancelled(conn, running, reason)


async def delete(db: Database, namespace_id: str, dag_id: uuid.UUID, tally: Tally | None = None) -> None:
    """Delete a DAG; its unfinished jobs are cancelled first (`tally.cancelled`)."""
    await with_retries(lambda: _delete(db, namespace_id, dag_id, tally))


async def _delete(db: Database, namespace_id: str, dag_id: uuid.UUID, tally: Tally | None) -> None:
    cancelled: Counter[tuple[str, str]] = Counter()
    async with db.transaction() as conn:
        await _read_live(conn, namespace_id, dag_id)
        # Cancel first so workers are told to stop; late results then find no
        # job and are rejected.
        await _cancel_jobs(conn, namespace_id, dag_id, "DAG deleted", cancelled)
        await execute(conn, "delete_dag_edges", {"dag_id": dag_id})
        await execute(conn, "delete_dag", {"dag_id": dag_id})
    if tally is not None:
        tally.cancelled.update(cancelled)


async def require_in_namespace(conn: Conn, namespace_id: str, dag_id: uuid.UUID) -> None:
    await _get(conn, namespace_id, dag_id)


async def list_dependencies(
    db: Database, namespace_id: str, dag_id: uuid.UUID, after: tuple[uuid.UUID, uuid.UUID] | None, limit: int
) -> list[Dependency]:
    async with db.reads() as conn:
        await _get(conn, namespace_id, dag_id)
        return await fetch_records(
            conn,
            Dependency,
            "list_dependencies",
            {
                "dag_id": dag_id,
                "after_parent": after[0] if after else None,
                "after_child": after[1] if after else None,
                "limit": limit,
            },
        )
