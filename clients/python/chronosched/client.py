"""The blocking client: `Client`, one typed method per RPC of every service."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from chronosched import _calls as calls
from chronosched._calls import CA, Call, DefinitionRef, RetryPolicy
from chronosched._convert import Seconds
from chronosched.dag import DagBuilder, DagRun
from chronosched.errors import from_rpc_error
from chronosched.types import (
    ConnectedWorker,
    Dag,
    DagState,
    Definition,
    Dependency,
    Fire,
    Health,
    Job,
    JobRun,
    JobSpec,
    JobState,
    MisfirePolicy,
    Namespace,
    NewToken,
    OverlapPolicy,
    Page,
    PruneResult,
    Schedule,
    Token,
    TokenScope,
)

T = TypeVar("T")

DEFAULT_TARGET = "127.0.0.1:50051"


class _Keep:
    """The default of `with_options` arguments: keep the current value."""


_KEEP = _Keep()


class Client:
    """A blocking client of a chronosched server.

    `target` is `host:port` of the gRPC server. `token`, if given, is sent as
    `authorization: Bearer <token>` on every call. `ca` (PEM bytes, PEM text
    or a file path) switches to TLS, trusting that CA; `cert` and `key` (the
    same forms) are a client certificate for a server that requires one
    (mutual TLS; with them alone, gRPC's default roots check the server).
    Every call has a
    deadline of `timeout` seconds (None: no deadline), retries included;
    `retry` says how calls that are safe to repeat are retried after
    UNAVAILABLE (see `RetryPolicy`). `options` are extra gRPC channel
    options.

    Use it as a context manager, or call `close()`:

        with Client("127.0.0.1:50051") as client:
            client.create_namespace("team-a")

    Failed calls raise `chronosched.errors.ChronoschedError` subclasses.
    Lists come back as iterators that fetch the next page as you go; the
    `*_page` methods return one `Page`. An iterator asks for the next page
    only when the previous one is used up, so an error can surface in the
    middle of a `for` loop.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str | None = None,
        ca: CA | None = None,
        timeout: float | None = 30.0,
        *,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, Any]] = (),
        cert: CA | None = None,
        key: CA | None = None,
    ) -> None:
        opts = calls.channel_options(options)
        credentials = calls.channel_credentials(ca, cert, key)
        if credentials is not None:
            self._channel = grpc.secure_channel(target, credentials, opts)
        else:
            self._channel = grpc.insecure_channel(target, opts)
        self._owns_channel = True
        self._metadata = calls.call_metadata(token)
        self._timeout = timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._methods: dict[str, grpc.UnaryUnaryMultiCallable[Any, Any]] = {}
        #: The server this client talks to.
        self.target = target

    # --- life cycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the channel (a copy made by `with_options` leaves it open)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def with_options(
        self, *, timeout: float | _Keep | None = _KEEP, retry: RetryPolicy | _Keep = _KEEP
    ) -> Client:
        """A client on the same channel with another deadline or retry policy
        (e.g. `client.with_options(timeout=2).get_dag(...)`). The copy does
        not own the channel: closing it does nothing."""
        clone = copy.copy(self)
        clone._owns_channel = False
        if not isinstance(timeout, _Keep):
            clone._timeout = timeout
        if not isinstance(retry, _Keep):
            clone._retry = retry
        return clone

    # --- running calls ------------------------------------------------------------

    def _method(self, rpc: calls.Rpc) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        method = self._methods.get(rpc.path)
        if method is None:
            method = self._channel.unary_unary(
                rpc.path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=rpc.response.FromString,
            )
            self._methods[rpc.path] = method
        return method

    def _run(self, call: Call[T]) -> T:
        deadline = math.inf if self._timeout is None else time.monotonic() + self._timeout
        method = self._method(call.rpc)
        attempt = 0
        while True:
            attempt += 1
            left = deadline - time.monotonic()
            try:
                response = method(
                    call.request,
                    timeout=None if left == math.inf else max(left, 0.0),
                    metadata=self._metadata,
                )
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                wait = self._retry.delay(call, error.code, attempt, deadline - time.monotonic())
                if wait is None:
                    raise error from exc
                time.sleep(wait)
                continue
            return call.convert(response)

    def _pages(self, make: Callable[[str], Call[Page[T]]]) -> Iterator[T]:
        token = ""
        while True:
            page = self._run(make(token))
            yield from page.items
            if page.next_page_token is None:
                return
            token = page.next_page_token

    # --- admin --------------------------------------------------------------------

    def healthz(self) -> Health:
        """The server's health; raises Unavailable when it cannot reach its
        database. Never retried: the answer is about now."""
        return self._run(calls.healthz())

    def prune(self, older_than: Seconds | None = None, namespace_id: str | None = None) -> PruneResult:
        """Move finished DAGs and standalone jobs that ended more than
        `older_than` ago (default 7 days) into history; `namespace_id`
        narrows it to one namespace."""
        return self._run(calls.prune(older_than, namespace_id))

    # --- namespaces -------------------------------------------------------------

    def create_namespace(self, namespace_id: str, description: str = "") -> Namespace:
        """Create a namespace; AlreadyExists if the id is taken."""
        return self._run(calls.create_namespace(namespace_id, description))

    def list_namespaces(self, *, page_size: int = calls.ITERATOR_PAGE_SIZE) -> Iterator[Namespace]:
        """Every namespace, in id order."""
        return self._pages(lambda token: calls.list_namespaces(page_size, token))

    def list_namespaces_page(self, *, page_size: int = 0, page_token: str | None = None) -> Page[Namespace]:
        """One page of namespaces (`page_size` 0: the server's default of 50)."""
        return self._run(calls.list_namespaces(page_size, page_token or ""))

    def get_namespace(self, namespace_id: str) -> Namespace:
        """One namespace; NotFound if there is none."""
        return self._run(calls.get_namespace(namespace_id))

    def delete_namespace(self, namespace_id: str) -> None:
        """Delete a namespace and everything finished in it. FailedPrecondition
        (reason NAMESPACE_NOT_EMPTY, counts in `metadata`) while anything in it
        could still run or fire."""
        self._run(calls.delete_namespace(namespace_id))

    # --- definitions ------------------------------------------------------------

    def create_definition(
        self,
        namespace_id: str,
        name: str,
        kind: str,
        payload_template: Mapping[str, Any] | None = None,
        *,
        cron_spec: str | None = None,
        time_zone: str | None = None,
        misfire_policy: MisfirePolicy | None = None,
        overlap_policy: OverlapPolicy | None = None,
        starting_deadline: Seconds | None = None,
        max_attempts: int | None = None,
        backoff_initial: Seconds | None = None,
        backoff_max: Seconds | None = None,
        backoff_multiplier: float | None = None,
        execution_timeout: Seconds | None = None,
        default_priority: int | None = None,
        delay_after_parents: Seconds | None = None,
        request_id: str | None = None,
    ) -> Definition:
        """Create the next version of definition `name` (version 1 if the name
        is new). Unset arguments take the server's defaults; durations are
        timedeltas or seconds. `request_id` (default: a fresh uuid4) makes
        the call safe to retry: the same id returns the first result."""
        return self._run(
            calls.create_definition(
                namespace_id,
                name,
                kind,
                payload_template=payload_template,
                cron_spec=cron_spec,
                time_zone=time_zone,
                misfire_policy=misfire_policy,
                overlap_policy=overlap_policy,
                starting_deadline=starting_deadline,
                max_attempts=max_attempts,
                backoff_initial=backoff_initial,
                backoff_max=backoff_max,
                backoff_multiplier=backoff_multiplier,
                execution_timeout=execution_timeout,
                default_priority=default_priority,
                delay_after_parents=delay_after_parents,
                request_id=request_id,
            )
        )

    def list_definitions(
        self, namespace_id: str, name: str | None = None, *, page_size: int = calls.ITERATOR_PAGE_SIZE
    ) -> Iterator[Definition]:
        """Every definition version of a namespace (only those of `name` if
        given), in creation order."""
        return self._pages(lambda token: calls.list_definitions(namespace_id, name, page_size, token))

    def list_definitions_page(
        self, namespace_id: str, name: str | None = None, *, page_size: int = 0, page_token: str | None = None
    ) -> Page[Definition]:
        """One page of definition versions."""
        return self._run(calls.list_definitions(namespace_id, name, page_size, page_token or ""))

    def get_definition(self, namespace_id: str, def_id: str) -> Definition:
        """One definition version by its def_id."""
        return self._run(calls.get_definition(namespace_id, def_id))

    def definition_versions(self, namespace_id: str, name: str) -> list[Definition]:
        """Every version of definition `name`, oldest first (empty if none)."""
        return list(self.list_definitions(namespace_id, name))

    def resolve_definition(self, namespace_id: str, ref: DefinitionRef) -> Definition:
        """The definition version `ref` names: a Definition or def_id (UUID)
        as is, `name@N` that version, a bare name its latest version.
        NotFound (reason DEFINITION_NOT_FOUND) if there is none."""
        if isinstance(ref, Definition):
            return ref
        parsed = calls.parse_ref(ref)
        if parsed.def_id is not None:
            return self.get_definition(namespace_id, parsed.def_id)
        assert parsed.name is not None
        return calls.pick_version(namespace_id, parsed, self.list_definitions(namespace_id, parsed.name))

    def tick(
        self,
        namespace_id: str,
        def_id: str,
        payload: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> Job:
        """Enqueue one standalone run of a definition version now, with
        `payload` merged over its template. Safe to retry (request_id)."""
        return self._run(calls.tick(namespace_id, def_id, payload, request_id))

    def retire_definition(self, namespace_id: str, def_id: str) -> Definition:
        """Retire the line of versions `def_id` belongs to (no new jobs of it,
        its schedule stops); returns `def_id`'s version with `retire_time`."""
        return self._run(calls.retire_definition(namespace_id, def_id))

    def list_fires(
        self, namespace_id: str, def_id: str, *, page_size: int = calls.ITERATOR_PAGE_SIZE
    ) -> Iterator[Fire]:
        """The fire ledger of the definition's name (any version's def_id),
        newest scheduled time first."""
        return self._pages(lambda token: calls.list_fires(namespace_id, def_id, page_size, token))

    def list_fires_page(
        self, namespace_id: str, def_id: str, *, page_size: int = 0, page_token: str | None = None
    ) -> Page[Fire]:
        """One page of the fire ledger."""
        return self._run(calls.list_fires(namespace_id, def_id, page_size, page_token or ""))

    # --- schedules --------------------------------------------------------------

    def get_schedule(self, namespace_id: str, name: str) -> Schedule:
        """The cron schedule of definition name `name`."""
        return self._run(calls.get_schedule(namespace_id, name))

    def pause_schedule(self, namespace_id: str, name: str) -> Schedule:
        """Stop `name`'s schedule from firing until resumed (idempotent)."""
        return self._run(calls.pause_schedule(namespace_id, name))

    def resume_schedule(self, namespace_id: str, name: str) -> Schedule:
        """Let a paused schedule fire again from its next tick (idempotent)."""
        return self._run(calls.resume_schedule(namespace_id, name))

    # --- DAGs -------------------------------------------------------------------

    def dag(self, namespace_id: str, name: str = "") -> DagBuilder:
        """A builder for a new DAG: add jobs with `.job()`, wire them with
        `>>`, then `.submit()` creates it in one call."""
        return DagBuilder(self, namespace_id, name)

    def dag_run(self, namespace_id: str, dag_id: str) -> DagRun:
        """A handle (wait, watch, cancel, ...) on an existing DAG."""
        return DagRun(self, self.get_dag(namespace_id, dag_id))

    def create_dag(
        self,
        namespace_id: str,
        name: str = "",
        jobs: Iterable[JobSpec] = (),
        dependencies: Iterable[tuple[str, str]] = (),
        *,
        start: bool = False,
        request_id: str | None = None,
    ) -> Dag:
        """Create a DAG with its jobs and (parent key, child key) edges in one
        call, started at once if `start`. Safe to retry (request_id)."""
        return self._run(calls.create_dag(namespace_id, name, jobs, dependencies, start, request_id))

    def list_dags(
        self, namespace_id: str, *, state: DagState | None = None, page_size: int = calls.ITERATOR_PAGE_SIZE
    ) -> Iterator[Dag]:
        """The live DAGs of a namespace (only those in `state`), in creation order."""
        return self._pages(lambda token: calls.list_dags(namespace_id, state, page_size, token))

    def list_dags_page(
        self,
        namespace_id: str,
        *,
        state: DagState | None = None,
        page_size: int = 0,
        page_token: str | None = None,
    ) -> Page[Dag]:
        """One page of DAGs."""
        return self._run(calls.list_dags(namespace_id, state, page_size, page_token or ""))

    def get_dag(self, namespace_id: str, dag_id: str) -> Dag:
        """One DAG (also after it was pruned into history)."""
        return self._run(calls.get_dag(namespace_id, dag_id))

    def start_dag(self, namespace_id: str, dag_id: str) -> Dag:
        """Seal a PENDING DAG and run its roots."""
        return self._run(calls.start_dag(namespace_id, dag_id))

    def cancel_dag(self, namespace_id: str, dag_id: str) -> Dag:
        """Cancel every unfinished job of the DAG."""
        return self._run(calls.cancel_dag(namespace_id, dag_id))

    def delete_dag(self, namespace_id: str, dag_id: str) -> None:
        """Cancel the DAG and remove it and its jobs from the live tables."""
        self._run(calls.delete_dag(namespace_id, dag_id))

    def add_jobs(
        self, namespace_id: str, dag_id: str, jobs: Iterable[JobSpec], *, request_id: str | None = None
    ) -> list[Job]:
        """Add jobs to a PENDING DAG, all or nothing. Safe to retry (request_id)."""
        return self._run(calls.create_jobs(namespace_id, dag_id, jobs, request_id))

    def add_dependency(
        self, namespace_id: str, dag_id: str, parent_job_id: str, child_job_id: str
    ) -> Dependency:
        """Add one parent->child edge (by job id) to a PENDING DAG."""
        return self._run(calls.add_dependency(namespace_id, dag_id, parent_job_id, child_job_id))

    def add_dependencies(
        self, namespace_id: str, dag_id: str, pairs: Iterable[tuple[str, str]]
    ) -> list[Dependency]:
        """Add (parent job id, child job id) edges to a PENDING DAG, all or nothing."""
        return self._run(calls.add_dependencies(namespace_id, dag_id, pairs))

    def list_dag_jobs(
        self,
        namespace_id: str,
        dag_id: str,
        *,
        state: JobState | None = None,
        page_size: int = calls.ITERATOR_PAGE_SIZE,
    ) -> Iterator[Job]:
        """The jobs of one DAG (only those in `state`), ordered by key."""
        return self._pages(lambda token: calls.list_dag_jobs(namespace_id, dag_id, state, page_size, token))

    def list_dag_jobs_page(
        self,
        namespace_id: str,
        dag_id: str,
        *,
        state: JobState | None = None,
        page_size: int = 0,
        page_token: str | None = None,
    ) -> Page[Job]:
        """One page of a DAG's jobs."""
        return self._run(calls.list_dag_jobs(namespace_id, dag_id, state, page_size, page_token or ""))

    def list_dependencies(
        self, namespace_id: str, dag_id: str, *, page_size: int = calls.ITERATOR_PAGE_SIZE
    ) -> Iterator[Dependency]:
        """The edges of one DAG, by job id."""
        return self._pages(lambda token: calls.list_dependencies(namespace_id, dag_id, page_size, token))

    def list_dependencies_page(
        self, namespace_id: str, dag_id: str, *, page_size: int = 0, page_token: str | None = None
    ) -> Page[Dependency]:
        """One page of a DAG's edges."""
        return self._run(calls.list_dependencies(namespace_id, dag_id, page_size, page_token or ""))

    # --- jobs -------------------------------------------------------------------

    def enqueue_jobs(
        self, namespace_id: str, runs: Iterable[JobRun], *, request_id: str | None = None
    ) -> list[str]:
        """Enqueue standalone runs (no DAG), all or none, READY and due now;
        returns their job ids in the order of `runs`. One call for many
        independent jobs. Safe to retry (request_id)."""
        return self._run(calls.enqueue_jobs(namespace_id, runs, request_id))

    def get_job(self, namespace_id: str, job_id: str) -> Job:
        """One job (also after it was pruned into history)."""
        return self._run(calls.get_job(namespace_id, job_id))

    def list_jobs(
        self,
        namespace_id: str,
        *,
        state: JobState | None = None,
        dag_id: str | None = None,
        def_id: str | None = None,
        page_size: int = calls.ITERATOR_PAGE_SIZE,
    ) -> Iterator[Job]:
        """The live jobs of a namespace, filtered by state, DAG and definition
        version, in creation order."""
        return self._pages(
            lambda token: calls.list_jobs(namespace_id, state, dag_id, def_id, page_size, token)
        )

    def list_jobs_page(
        self,
        namespace_id: str,
        *,
        state: JobState | None = None,
        dag_id: str | None = None,
        def_id: str | None = None,
        page_size: int = 0,
        page_token: str | None = None,
    ) -> Page[Job]:
        """One page of a namespace's jobs."""
        return self._run(calls.list_jobs(namespace_id, state, dag_id, def_id, page_size, page_token or ""))

    def complete_job(
        self,
        job_id: str,
        result: Mapping[str, Any] | None = None,
        *,
        attempt: int | None = None,
        namespace_id: str | None = None,
    ) -> Job:
        """Record the success of a READY or RUNNING job. With `attempt` the
        call is fenced (a stale attempt is FailedPrecondition STALE_ATTEMPT)
        and safe to retry; without it, it acts on the current attempt and is
        sent once. With `namespace_id`, a job of another namespace is
        NotFound (as is one outside the token's namespace either way)."""
        return self._run(calls.complete_job(job_id, result, attempt, namespace_id))

    def fail_job(
        self,
        job_id: str,
        error: str,
        *,
        attempt: int | None = None,
        non_retryable: bool = False,
        namespace_id: str | None = None,
    ) -> Job:
        """Record a failure: the job is retried while it has attempts left
        (unless `non_retryable`), else it ends FAILED. Sent once.
        `namespace_id` as in `complete_job`."""
        return self._run(calls.fail_job(job_id, error, attempt, non_retryable, namespace_id))

    # --- workers ------------------------------------------------------------------

    def list_workers(
        self, namespace_id: str | None = None, *, page_size: int = calls.ITERATOR_PAGE_SIZE
    ) -> Iterator[ConnectedWorker]:
        """The worker streams open on every server replica of the database,
        in (worker_id, stream_id) order: those taking jobs from
        `namespace_id` (naming it, or serving every namespace) if given, else
        all the token may see. A worker shows from its subscribe until its
        stream closes; counts and heartbeat_time lag by up to one heartbeat
        interval."""
        return self._pages(lambda token: calls.list_workers(namespace_id, page_size, token))

    def list_workers_page(
        self, namespace_id: str | None = None, *, page_size: int = 0, page_token: str | None = None
    ) -> Page[ConnectedWorker]:
        """One page of connected workers."""
        return self._run(calls.list_workers(namespace_id, page_size, page_token or ""))

    # --- tokens (admin) -----------------------------------------------------------

    def create_token(
        self,
        scope: TokenScope,
        namespace_id: str | None = None,
        *,
        description: str = "",
        ttl: Seconds | None = None,
    ) -> NewToken:
        """Make a bearer token (admin only): `scope` in `namespace_id` ("*"
        for every namespace; None for an admin token), working for `ttl`
        (None: until revoked). The secret is in the answer, and only there.
        Sent once: a retry would make a second token."""
        return self._run(calls.create_token(scope, namespace_id, description, ttl))

    def list_tokens(
        self,
        namespace_id: str | None = None,
        *,
        show_inactive: bool = False,
        page_size: int = calls.ITERATOR_PAGE_SIZE,
    ) -> Iterator[Token]:
        """The tokens (admin only), in id order, never with their secrets:
        those of `namespace_id` ("*": the every-namespace ones) if given, and
        revoked or expired ones too with `show_inactive`."""
        return self._pages(lambda page: calls.list_tokens(namespace_id, show_inactive, page_size, page))

    def list_tokens_page(
        self,
        namespace_id: str | None = None,
        *,
        show_inactive: bool = False,
        page_size: int = 0,
        page_token: str | None = None,
    ) -> Page[Token]:
        """One page of tokens."""
        return self._run(calls.list_tokens(namespace_id, show_inactive, page_size, page_token or ""))

    def revoke_token(self, token_id: str) -> Token:
        """Revoke a token (admin only): refused from now on. Idempotent."""
        return self._run(calls.revoke_token(token_id))
