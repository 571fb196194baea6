"""What each operator command does, through `chronosched.Client`.

Exit statuses: 0 done; 1 the server refused (its message and field
violations on stderr), a watched DAG failed or was cancelled, or a file names
definitions the server does not have; 2 the server could not be reached, or
the input is bad (argparse's usage errors, unreadable or invalid files).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from rich.table import Table

from chronosched._calls import parse_ref
from chronosched.cli import _show, _watch
from chronosched.cli._output import Output, data, fields_table, list_table
from chronosched.cli._specs import DagSpec, JobEntry, Origins, Problem, SpecError, load_dag, load_definitions
from chronosched.cli._values import parse_json_object
from chronosched.client import Client
from chronosched.dag import DagRun
from chronosched.errors import ChronoschedError, InvalidArgument
from chronosched.types import ConnectedWorker, Dag, DagState, Definition, Job, JobRun, JobSpec

T = TypeVar("T")

#: gRPC's page maximum: a DAG of 10,000 jobs is ten pages.
SHOW_PAGE_SIZE = 1000


class Usage(Exception):
    """Bad input found after parsing (an unreadable file): exit 2."""


class Refused(Exception):
    """The server's answer makes the command fail, already explained: exit 1."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass
class Context:
    """One command's run: its arguments, output and (lazily) its client."""

    args: argparse.Namespace
    out: Output
    server: str
    token: str | None
    # TLS: the CA to trust, and a client certificate and key (PEM paths).
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    _client: Client | None = field(default=None, init=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client(
                    self.server,
                    token=self.token,
                    ca=self.ca,
                    timeout=self.args.timeout,
                    cert=self.cert,
                    key=self.key,
                )
            except ValueError as exc:
                raise Usage(f"{exc} (--tls-cert, --tls-key)") from exc
            except OSError as exc:
                raise Usage(f"cannot read {exc.filename}: {exc.strerror or exc}") from exc
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def run(
    args: argparse.Namespace,
    *,
    server: str,
    token: str | None,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
) -> int:
    out = Output(args.output)
    ctx = Context(args, out, server, token, ca, cert, key)
    try:
        return HANDLERS[args.operator](ctx)
    except SpecError as exc:
        for problem in exc.problems:
            out.error(str(problem))
        return 2
    except Usage as exc:
        out.error(f"chronosched: error: {exc}")
        return 2
    except Refused as exc:
        for line in exc.lines:
            out.error(line)
        return 1
    except ChronoschedError as exc:
        return report(ctx, exc)
    except KeyboardInterrupt:
        out.error("chronosched: interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        ctx.close()


def _unreachable(exc: ChronoschedError) -> bool:
    # No ErrorInfo domain: the status came from gRPC itself (no connection,
    # or no answer in time), not from the server.
    return exc.domain is None and exc.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def report(ctx: Context, exc: ChronoschedError, origins: Origins | None = None) -> int:
    """Print a failed call on stderr; return its exit status."""
    if _unreachable(exc):
        ctx.out.error(f"chronosched: error: cannot reach the server at {ctx.server}: {exc.message}")
        return 2
    lines = error_lines(exc, origins)
    for line in lines:
        ctx.out.error(line)
    return 1


def error_lines(exc: ChronoschedError, origins: Origins | None) -> list[str]:
    """The server's message, then each field violation: at its file line
    when the request came from a file, else indented under the message."""
    where = f"{origins.file}: " if origins is not None else "chronosched: error: "
    violations = list(exc.violations) if isinstance(exc, InvalidArgument) else []
    reason = f" [{exc.reason}]" if exc.reason and exc.reason != exc.code.name else ""
    # With violations itemised below, the server's message (which repeats
    # the first few) gives way to a count.
    count = len(violations)
    message = f"invalid request ({count} field{'s' if count > 1 else ''})" if violations else exc.message
    lines = [f"{where}{exc.code.name}{reason}: {message}"]
    for v in violations:
        text = f"{v.description} ({v.reason})" if v.reason else v.description
        lines.append(str(origins.problem(v.field, text)) if origins is not None else f"  {v.field}: {text}")
    named = exc.metadata.get("field")
    if origins is not None and named and not violations:
        lines.append(str(origins.problem(named, exc.reason or "refused")))
    return lines


# --- helpers ---------------------------------------------------------------------


def _take(items: Iterator[T], limit: int, ctx: Context, what: str) -> list[T]:
    if not limit:
        return list(items)
    taken = list(itertools.islice(items, limit + 1))
    if len(taken) > limit:
        ctx.out.error(f"(the first {limit:,} {what}; --limit N shows more, --limit 0 all)")
        return taken[:limit]
    return taken


def _done(ctx: Context, message: str) -> int:
    """A command that returns nothing: `{}` for scripts, a sentence for people."""
    if ctx.out.format == "table":
        ctx.out.line(message)
    else:
        ctx.out.emit({}, lambda: None)
    return 0


def _one(ctx: Context, value: Any, skip: Sequence[str] = ()) -> int:
    ctx.out.emit(value, lambda: fields_table(value, skip))
    return 0


def _read(path: str) -> tuple[str, str]:
    """A file's text and the name problems cite it by."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(), path
    except OSError as exc:
        raise Usage(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise Usage(f"cannot read {path}: not UTF-8 text ({exc.reason})") from None


def _definition(ctx: Context, namespace: str, ref: str) -> Definition:
    try:
        return ctx.client.resolve_definition(namespace, ref)
    except ValueError as exc:
        raise Usage(str(exc)) from None


# --- namespaces ------------------------------------------------------------------


def ns_create(ctx: Context) -> int:
    return _one(ctx, ctx.client.create_namespace(ctx.args.namespace, ctx.args.description))


def ns_list(ctx: Context) -> int:
    spaces = list(ctx.client.list_namespaces())
    rows = [(n.namespace_id, n.description, n.create_time) for n in spaces]
    ctx.out.emit(spaces, lambda: list_table(("NAMESPACE", "DESCRIPTION", "CREATED"), rows))
    return 0


def ns_get(ctx: Context) -> int:
    return _one(ctx, ctx.client.get_namespace(ctx.args.namespace))


def ns_delete(ctx: Context) -> int:
    ctx.client.delete_namespace(ctx.args.namespace)
    return _done(ctx, f"namespace {ctx.args.namespace} deleted")


# --- definitions -----------------------------------------------------------------

_DEF_COLUMNS = ("NAME", "VERSION", "KIND", "CRON", "DEF_ID", "CREATED", "RETIRED")


def _def_rows(defs: Iterable[Definition]) -> list[tuple[Any, ...]]:
    return [(d.name, d.version, d.kind, d.cron_spec, d.def_id, d.create_time, d.retire_time) for d in defs]


def _def_data(definition: Definition) -> dict[str, Any]:
    """A definition as printed data, without `warnings`: those go to stderr
    (`def create`), so what scripts read on stdout is the definition alone."""
    shown: dict[str, Any] = data(definition)
    del shown["warnings"]
    return shown


def _one_def(ctx: Context, definition: Definition) -> int:
    ctx.out.emit(_def_data(definition), lambda: fields_table(definition, ("warnings",)))
    return 0


def _defs(ctx: Context, defs: Sequence[Definition]) -> None:
    ctx.out.emit([_def_data(d) for d in defs], lambda: list_table(_DEF_COLUMNS, _def_rows(defs)))


def def_create(ctx: Context) -> int:
    text, file = _read(ctx.args.file)
    specs = load_definitions(text, file)
    created: list[Definition] = []
    for spec in specs:
        options = {key: value for key, value in spec.options.items() if value is not None}
        try:
            made = ctx.client.create_definition(ctx.args.namespace, spec.name, spec.kind, **options)
        except ChronoschedError as exc:
            if _unreachable(exc):
                raise
            lines = error_lines(exc, spec.origins)
            if created:
                lines.append(f"(created before the error: {', '.join(d.ref for d in created)})")
            raise Refused(lines) from None
        created.append(made)
        # On stderr, as each is made: a warning does not stop the create,
        # and stdout stays the data a script reads.
        for warning in made.warnings:
            ctx.out.error(f"chronosched: warning: {made.ref}: {warning}")
    value: Any = _def_data(created[0]) if len(created) == 1 else [_def_data(d) for d in created]
    ctx.out.emit(value, lambda: list_table(_DEF_COLUMNS, _def_rows(created)))
    return 0


def def_list(ctx: Context) -> int:
    _defs(ctx, list(ctx.client.list_definitions(ctx.args.namespace)))
    return 0


def def_get(ctx: Context) -> int:
    return _one_def(ctx, _definition(ctx, ctx.args.namespace, ctx.args.definition))


def def_versions(ctx: Context) -> int:
    versions = ctx.client.definition_versions(ctx.args.namespace, ctx.args.name)
    if not versions:
        raise Refused(
            [f"chronosched: error: no definition named {ctx.args.name!r} in namespace {ctx.args.namespace!r}"]
        )
    _defs(ctx, versions)
    return 0


def def_fires(ctx: Context) -> int:
    definition = _definition(ctx, ctx.args.namespace, ctx.args.definition)
    fires = _take(ctx.client.list_fires(ctx.args.namespace, definition.def_id), ctx.args.limit, ctx, "fires")
    rows = [(f.scheduled_time, f.status, f.def_version, f.job_id, f.reason) for f in fires]
    ctx.out.emit(fires, lambda: list_table(("SCHEDULED", "STATUS", "VERSION", "JOB_ID", "REASON"), rows))
    return 0


def def_retire(ctx: Context) -> int:
    definition = _definition(ctx, ctx.args.namespace, ctx.args.definition)
    return _one_def(ctx, ctx.client.retire_definition(ctx.args.namespace, definition.def_id))


# --- DAGs ------------------------------------------------------------------------


def _resolve(ctx: Context, namespace: str, spec: DagSpec) -> list[JobSpec]:
    """The jobs of a DAG file with their definitions resolved to def_ids:
    one lookup per distinct reference. Every reference the server does not
    know (or that is retired) is reported at its line."""
    by_ref: dict[str, list[tuple[int, JobEntry]]] = {}
    for i, job in enumerate(spec.jobs):
        by_ref.setdefault(job.definition, []).append((i, job))
    found: dict[str, str] = {}
    problems: list[Problem] = []
    for ref, uses in by_ref.items():
        definition, problem = _lookup(ctx, namespace, ref)
        if definition is not None and definition.is_retired:
            when = f"{definition.retire_time:%Y-%m-%dT%H:%M:%SZ}"
            problem = (
                f"definition {definition.ref} is retired (since {when}); create it again for a new version"
            )
        if problem is not None:
            problems += [
                Problem(spec.origins.file, j.definition_line, f"jobs[{i}].definition", problem)
                for i, j in uses
            ]
        elif definition is not None:
            found[ref] = definition.def_id
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise Refused([str(p) for p in problems])
    return [JobSpec(job.key, found[job.definition], job.payload, job.priority) for job in spec.jobs]


def _lookup(ctx: Context, namespace: str, ref: str) -> tuple[Definition | None, str | None]:
    parsed = parse_ref(ref)  # checked when the file was read
    if parsed.def_id is not None:
        try:
            return ctx.client.get_definition(namespace, parsed.def_id), None
        except ChronoschedError as exc:
            if exc.reason != "DEFINITION_NOT_FOUND":
                raise
            return None, f"no definition {parsed.def_id} in namespace {namespace}"
    assert parsed.name is not None
    versions = ctx.client.definition_versions(namespace, parsed.name)
    if not versions:
        return None, f"unknown definition {parsed.name!r} in namespace {namespace}"
    if parsed.version is None:
        return versions[-1], None
    for version in versions:
        if version.version == parsed.version:
            return version, None
    known = ", ".join(str(v.version) for v in versions)
    missing = f"definition {parsed.name!r} has no version {parsed.version} in namespace {namespace}"
    return None, f"{missing} (versions: {known})"


def dag_submit(ctx: Context) -> int:
    args = ctx.args
    if args.watch and args.no_start:
        raise Usage("--watch and --no-start do not go together: a DAG that is not started does not run")
    text, file = _read(args.file)
    spec = load_dag(text, file)
    jobs = _resolve(ctx, args.namespace, spec)
    start = spec.start and not args.no_start
    try:
        dag = ctx.client.create_dag(args.namespace, spec.name, jobs, spec.dependencies, start=start)
    except ChronoschedError as exc:
        if _unreachable(exc):
            raise
        raise Refused(error_lines(exc, spec.origins)) from None
    if not args.watch:
        return _one(ctx, dag)
    ctx.out.line(f"dag {_show.title(dag)} created: {dag.job_count:,} jobs, {dag.state.name}")
    return _follow(ctx, DagRun(ctx.client, dag))


def _dag_rows(dags: Iterable[Dag]) -> list[tuple[Any, ...]]:
    return [
        (
            d.dag_id,
            d.name or "-",
            d.state,
            f"{d.job_count - d.unfinished_job_count:,}/{d.job_count:,}",
            d.create_time,
            d.end_time,
        )
        for d in dags
    ]


def dag_list(ctx: Context) -> int:
    args = ctx.args
    dags = _take(ctx.client.list_dags(args.namespace, state=args.state), args.limit, ctx, "DAGs")
    columns = ("DAG_ID", "NAME", "STATE", "FINISHED", "CREATED", "ENDED")
    ctx.out.emit(dags, lambda: list_table(columns, _dag_rows(dags)))
    return 0


def dag_get(ctx: Context) -> int:
    return _one(ctx, ctx.client.get_dag(ctx.args.namespace, ctx.args.dag))


def dag_start(ctx: Context) -> int:
    return _one(ctx, ctx.client.start_dag(ctx.args.namespace, ctx.args.dag))


def dag_cancel(ctx: Context) -> int:
    return _one(ctx, ctx.client.cancel_dag(ctx.args.namespace, ctx.args.dag))


def dag_delete(ctx: Context) -> int:
    ctx.client.delete_dag(ctx.args.namespace, ctx.args.dag)
    return _done(ctx, f"dag {ctx.args.dag} deleted")


def dag_watch(ctx: Context) -> int:
    return _follow(ctx, ctx.client.dag_run(ctx.args.namespace, ctx.args.dag))


def _follow(ctx: Context, run: DagRun) -> int:
    """Watch until the DAG settles; 0 if it succeeded, else 1."""
    interval = ctx.args.interval
    if ctx.out.format != "table":
        dag = _watch.wait_quietly(run, interval)
        ctx.out.emit(dag, lambda: None)
    elif ctx.out.is_terminal:
        dag = _watch.watch_live(run, ctx.out.console, interval)
    else:
        dag = _watch.watch_plain(run, ctx.out.stdout, interval)
    return 0 if dag.state is DagState.SUCCEEDED else 1


def dag_show(ctx: Context) -> int:
    args = ctx.args
    client = ctx.client
    # Three independent reads at once: the edges' pages (twice as many as
    # the jobs') then cost no time of their own. A channel serves threads.
    with ThreadPoolExecutor(max_workers=3) as pool:
        reading_dag = pool.submit(client.get_dag, args.namespace, args.dag)
        reading_jobs = pool.submit(
            lambda: list(client.list_dag_jobs(args.namespace, args.dag, page_size=SHOW_PAGE_SIZE))
        )
        reading_edges = pool.submit(
            lambda: list(client.list_dependencies(args.namespace, args.dag, page_size=SHOW_PAGE_SIZE))
        )
        dag, jobs, edges = reading_dag.result(), reading_jobs.result(), reading_edges.result()
    graph = _show.Graph.of(dag, jobs, edges)
    if ctx.out.format != "table":
        by_id = {job.job_id: job.key for job in jobs}
        value = {
            "dag": dag,
            "jobs": [{"key": j.key, "job_id": j.job_id, "state": j.state} for j in jobs],
            "dependencies": [
                {"parent": by_id[e.parent_job_id], "child": by_id[e.child_job_id]}
                for e in edges
                if e.parent_job_id in by_id and e.child_job_id in by_id
            ],
        }
        ctx.out.emit(value, lambda: None)
        return 0
    limits = _show.Limits(args.max_children, args.max_depth, args.max_lines)
    if args.format == "mermaid":
        ctx.out.stdout.write(_show.mermaid(graph, limits))
    elif args.format == "dot":
        ctx.out.stdout.write(_show.dot(graph, limits))
    elif ctx.out.is_terminal:
        from rich.text import Text

        from chronosched.cli._output import STATE_STYLE

        for before, state, after in _show.tree(graph, limits):
            styled = (state.name, STATE_STYLE.get(state.name, "")) if state is not None else ""
            ctx.out.console.print(Text.assemble(before, styled, after), soft_wrap=True)
    else:
        ctx.out.stdout.write(_show.plain(_show.tree(graph, limits)))
    ctx.out.stdout.flush()
    return 0


# --- jobs ------------------------------------------------------------------------


def jobs_list(ctx: Context) -> int:
    args = ctx.args
    jobs = _take(
        ctx.client.list_jobs(args.namespace, state=args.state, dag_id=args.dag), args.limit, ctx, "jobs"
    )
    rows = [
        (
            j.job_id,
            j.key,
            j.state,
            f"{j.attempt}/{j.max_attempts}",
            j.kind,
            j.dag_id,
            j.update_time or j.create_time,
            # Last: a sentence, and the column most rows leave empty.
            None if j.waiting is None else j.waiting.message,
        )
        for j in jobs
    ]
    columns = ("JOB_ID", "KEY", "STATE", "ATTEMPT", "KIND", "DAG_ID", "UPDATED", "WAITING")
    ctx.out.emit(jobs, lambda: list_table(columns, rows))
    return 0


def _one_job(ctx: Context, job: Job) -> int:
    """A job field by field; `waiting` as its reason and sentence, and the
    parents it names with their ids (to look them up next)."""

    def table() -> Table:
        shown = fields_table(job)
        if job.waiting is not None and job.waiting.parents:
            parents = ", ".join(f"{p.key} {p.job_id} ({p.state.name})" for p in job.waiting.parents)
            shown.add_row("waiting_parents", parents)
        return shown

    ctx.out.emit(job, table)
    return 0


def jobs_get(ctx: Context) -> int:
    return _one_job(ctx, ctx.client.get_job(ctx.args.namespace, ctx.args.job))


def jobs_enqueue(ctx: Context) -> int:
    args = ctx.args
    shared = args.payload or {}
    if args.file is None:
        payloads = [shared] * args.count
    else:
        payloads = [{**shared, **line} for line in _json_lines(*_read(args.file))]
        if not payloads:
            raise Usage(f"{args.file}: no runs (one JSON object per line)")
    definition = _definition(ctx, args.namespace, args.definition)
    runs = [JobRun(definition.def_id, payload or None, args.priority) for payload in payloads]
    ids = ctx.client.enqueue_jobs(args.namespace, runs)
    ctx.out.emit({"job_ids": ids}, lambda: list_table(("JOB_ID",), [(job_id,) for job_id in ids]))
    return 0


def _json_lines(text: str, name: str) -> list[dict[str, Any]]:
    """Each non-empty line of a file as a JSON object, the first bad one named."""
    out: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(parse_json_object(line))
        except ValueError as exc:
            raise Usage(f"{name}:{number}: {exc}") from None
    return out


def jobs_complete(ctx: Context) -> int:
    args = ctx.args
    job = ctx.client.complete_job(args.job, args.result, attempt=args.attempt, namespace_id=args.namespace)
    return _one_job(ctx, job)


def jobs_fail(ctx: Context) -> int:
    args = ctx.args
    job = ctx.client.fail_job(
        args.job,
        args.error,
        attempt=args.attempt,
        non_retryable=args.non_retryable,
        namespace_id=args.namespace,
    )
    return _one_job(ctx, job)


# --- workers ---------------------------------------------------------------------


def _worker_rows(workers: Iterable[ConnectedWorker]) -> list[tuple[Any, ...]]:
    return [
        (
            w.worker_id,
            "*" if w.all_namespaces else w.namespaces,
            w.kinds,
            w.slots,
            w.jobs_in_flight,
            w.connect_time,
            w.heartbeat_time,
        )
        for w in workers
    ]


def workers_list(ctx: Context) -> int:
    args = ctx.args
    found = _take(ctx.client.list_workers(args.namespace), args.limit, ctx, "workers")
    columns = ("WORKER", "NAMESPACES", "KINDS", "SLOTS", "IN_FLIGHT", "CONNECTED", "LAST_HEARTBEAT")
    ctx.out.emit(found, lambda: list_table(columns, _worker_rows(found)))
    return 0


# --- tick, schedules, prune -------------------------------------------------------


def tick(ctx: Context) -> int:
    args = ctx.args
    definition = _definition(ctx, args.namespace, args.definition)
    return _one_job(ctx, ctx.client.tick(args.namespace, definition.def_id, args.payload))


def schedules_get(ctx: Context) -> int:
    return _one(ctx, ctx.client.get_schedule(ctx.args.namespace, ctx.args.name))


def schedules_pause(ctx: Context) -> int:
    return _one(ctx, ctx.client.pause_schedule(ctx.args.namespace, ctx.args.name))


def schedules_resume(ctx: Context) -> int:
    return _one(ctx, ctx.client.resume_schedule(ctx.args.namespace, ctx.args.name))


def prune(ctx: Context) -> int:
    return _one(ctx, ctx.client.prune(ctx.args.older_than, ctx.args.namespace))


# --- tokens ----------------------------------------------------------------------


def token_create(ctx: Context) -> int:
    args = ctx.args
    made = ctx.client.create_token(args.scope, args.namespace, description=args.description, ttl=args.expires)
    if ctx.out.format != "table":
        ctx.out.emit(made, lambda: None)
        return 0
    ctx.out.emit(made.token, lambda: fields_table(made.token, ()))
    ctx.out.error("the token follows, alone on the last line; it is shown only now, so store it")
    # Alone on the last line, so `... | tail -n 1` captures it.
    ctx.out.line(made.secret)
    return 0


def token_list(ctx: Context) -> int:
    args = ctx.args
    found = _take(ctx.client.list_tokens(args.namespace, show_inactive=args.all), args.limit, ctx, "tokens")
    rows = [
        (
            t.token_id,
            t.scope,
            t.namespace_id,
            t.description or "-",
            t.create_time,
            t.expire_time,
            t.revoke_time,
            t.last_used_time,
        )
        for t in found
    ]
    columns = ("TOKEN_ID", "SCOPE", "NAMESPACE", "DESCRIPTION", "CREATED", "EXPIRES", "REVOKED", "LAST_USED")
    ctx.out.emit(found, lambda: list_table(columns, rows))
    return 0


def token_revoke(ctx: Context) -> int:
    return _one(ctx, ctx.client.revoke_token(ctx.args.token_id))


HANDLERS: dict[str, Callable[[Context], int]] = {
    "ns.create": ns_create,
    "ns.list": ns_list,
    "ns.get": ns_get,
    "ns.delete": ns_delete,
    "def.create": def_create,
    "def.list": def_list,
    "def.get": def_get,
    "def.versions": def_versions,
    "def.fires": def_fires,
    "def.retire": def_retire,
    "dag.submit": dag_submit,
    "dag.list": dag_list,
    "dag.get": dag_get,
    "dag.start": dag_start,
    "dag.cancel": dag_cancel,
    "dag.delete": dag_delete,
    "dag.watch": dag_watch,
    "dag.show": dag_show,
    "jobs.list": jobs_list,
    "jobs.get": jobs_get,
    "jobs.enqueue": jobs_enqueue,
    "jobs.complete": jobs_complete,
    "jobs.fail": jobs_fail,
    "workers.list": workers_list,
    "tick": tick,
    "schedules.get": schedules_get,
    "schedules.pause": schedules_pause,
    "schedules.resume": schedules_resume,
    "prune": prune,
    "token.create": token_create,
    "token.list": token_list,
    "token.revoke": token_revoke,
}
