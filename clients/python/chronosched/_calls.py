"""What the sync and async clients share: each RPC as a `Call` (method path,
request, how to read the response, whether a retry is safe), the retry
policy, channel set-up and definition references. Nothing here does I/O;
`client.py` runs calls on a blocking channel and `_async.py` on grpc.aio.

Which calls are retried after UNAVAILABLE (and only after UNAVAILABLE):

- reads (Get*, List*);
- creates that carry a `request_id` (CreateDefinition, Tick, CreateDag,
  CreateJobs): the client puts a fresh uuid4 in every logical call and sends
  the same one again on a retry, so a create whose answer was lost returns
  the first result instead of creating twice;
- calls the API documents as idempotent: PauseSchedule, ResumeSchedule,
  RetireDefinition, RevokeToken, and CompleteJob with `attempt` set.

Everything else (CreateNamespace, DeleteNamespace, StartDag, CancelDag,
DeleteDag, AddDependency/ies, FailJob, CompleteJob without attempt, Prune,
CreateToken) is sent once: a retry after a lost answer would fail or act twice. Healthz is
not retried either: a health probe wants the answer of now.
"""

from __future__ import annotations

import os
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import empty_pb2
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message

from chronosched import _convert as convert
from chronosched.errors import make_error
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
from chronosched.v1 import (
    admin_pb2,
    dag_pb2,
    definition_pb2,
    job_pb2,
    namespace_pb2,
    schedule_pb2,
    token_pb2,
    worker_pb2,
)

T = TypeVar("T")

#: The page size list iterators ask for (the server's maximum is 1000).
ITERATOR_PAGE_SIZE = 500

# The server accepts messages up to 256 MiB (big DAGs); so does the client.
_MAX_MESSAGE = 256 << 20
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    # gRPC waits 1 s (growing) before reconnecting after a failed connect,
    # and fails calls at once meanwhile: longer than the client's own retry
    # budget, so a retry would only meet the same failure.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


# --- the RPCs -----------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    """One unary method: its path, its response type, and whether calling it
    twice is safe (so a retry after UNAVAILABLE may resend it)."""

    path: str
    response: type[Message]
    idempotent: bool


def _rpc(
    file: FileDescriptor, service: str, method: str, response: type[Message], *, idempotent: bool
) -> Rpc:
    # Read from the descriptors, so a misspelt method or a wrong response type
    # fails when the module is imported, not on the first call.
    found = file.services_by_name[service].methods_by_name[method]
    if found.output_type.full_name != response.DESCRIPTOR.full_name:
        raise TypeError(f"{service}.{method} returns {found.output_type.full_name}")
    return Rpc(f"/{found.containing_service.full_name}/{found.name}", response, idempotent)


_NS, _DEF = namespace_pb2.DESCRIPTOR, definition_pb2.DESCRIPTOR
_DAG, _JOB = dag_pb2.DESCRIPTOR, job_pb2.DESCRIPTOR
_SCH, _ADM = schedule_pb2.DESCRIPTOR, admin_pb2.DESCRIPTOR
_TOK, _WRK = token_pb2.DESCRIPTOR, worker_pb2.DESCRIPTOR
_Empty = empty_pb2.Empty

CREATE_NAMESPACE = _rpc(_NS, "NamespaceService", "CreateNamespace", namespace_pb2.Namespace, idempotent=False)
LIST_NAMESPACES = _rpc(
    _NS, "NamespaceService", "ListNamespaces", namespace_pb2.ListNamespacesResponse, idempotent=True
)
GET_NAMESPACE = _rpc(_NS, "NamespaceService", "GetNamespace", namespace_pb2.Namespace, idempotent=True)
DELETE_NAMESPACE = _rpc(_NS, "NamespaceService", "DeleteNamespace", _Empty, idempotent=False)

CREATE_DEFINITION = _rpc(
    _DEF, "DefinitionService", "CreateDefinition", definition_pb2.JobDefinition, idempotent=True
)
LIST_DEFINITIONS = _rpc(
    _DEF, "DefinitionService", "ListDefinitions", definition_pb2.ListDefinitionsResponse, idempotent=True
)
GET_DEFINITION = _rpc(
    _DEF, "DefinitionService", "GetDefinition", definition_pb2.JobDefinition, idempotent=True
)
TICK = _rpc(_DEF, "DefinitionService", "Tick", job_pb2.Job, idempotent=True)
RETIRE_DEFINITION = _rpc(
    _DEF, "DefinitionService", "RetireDefinition", definition_pb2.JobDefinition, idempotent=True
)

LIST_FIRES = _rpc(_SCH, "ScheduleService", "ListFires", schedule_pb2.ListFiresResponse, idempotent=True)
GET_SCHEDULE = _rpc(_SCH, "ScheduleService", "GetSchedule", schedule_pb2.Schedule, idempotent=True)
PAUSE_SCHEDULE = _rpc(_SCH, "ScheduleService", "PauseSchedule", schedule_pb2.Schedule, idempotent=True)
RESUME_SCHEDULE = _rpc(_SCH, "ScheduleService", "ResumeSchedule", schedule_pb2.Schedule, idempotent=True)

CREATE_DAG = _rpc(_DAG, "DagService", "CreateDag", dag_pb2.Dag, idempotent=True)
LIST_DAGS = _rpc(_DAG, "DagService", "ListDags", dag_pb2.ListDagsResponse, idempotent=True)
GET_DAG = _rpc(_DAG, "DagService", "GetDag", dag_pb2.Dag, idempotent=True)
DELETE_DAG = _rpc(_DAG, "DagService", "DeleteDag", _Empty, idempotent=False)
START_DAG = _rpc(_DAG, "DagService", "StartDag", dag_pb2.Dag, idempotent=False)
CANCEL_DAG = _rpc(_DAG, "DagService", "CancelDag", dag_pb2.Dag, idempotent=False)
CREATE_JOBS = _rpc(_DAG, "DagService", "CreateJobs", dag_pb2.CreateJobsResponse, idempotent=True)
LIST_DAG_JOBS = _rpc(_DAG, "DagService", "ListDagJobs", dag_pb2.ListDagJobsResponse, idempotent=True)
ADD_DEPENDENCY = _rpc(_DAG, "DagService", "AddDependency", dag_pb2.Dependency, idempotent=False)
ADD_DEPENDENCIES = _rpc(
    _DAG, "DagService", "AddDependencies", dag_pb2.AddDependenciesResponse, idempotent=False
)
LIST_DEPENDENCIES = _rpc(
    _DAG, "DagService", "ListDependencies", dag_pb2.ListDependenciesResponse, idempotent=True
)

GET_JOB = _rpc(_JOB, "JobService", "GetJob", job_pb2.Job, idempotent=True)
LIST_JOBS = _rpc(_JOB, "JobService", "ListJobs", job_pb2.ListJobsResponse, idempotent=True)
# Safe to retry: every call carries a request_id (one is made if not given).
ENQUEUE_JOBS = _rpc(_JOB, "JobService", "EnqueueJobs", job_pb2.EnqueueJobsResponse, idempotent=True)
# Idempotent only with `attempt` set; the Call decides.
COMPLETE_JOB = _rpc(_JOB, "JobService", "CompleteJob", job_pb2.Job, idempotent=False)
FAIL_JOB = _rpc(_JOB, "JobService", "FailJob", job_pb2.Job, idempotent=False)

PRUNE = _rpc(_ADM, "AdminService", "Prune", admin_pb2.PruneResponse, idempotent=False)
HEALTHZ = _rpc(_ADM, "AdminService", "Healthz", admin_pb2.HealthzResponse, idempotent=False)

# A retried CreateToken would make a second token (and the first's secret
# would be lost with the answer); revoking twice changes nothing.
CREATE_TOKEN = _rpc(_TOK, "TokenService", "CreateToken", token_pb2.CreateTokenResponse, idempotent=False)
LIST_TOKENS = _rpc(_TOK, "TokenService", "ListTokens", token_pb2.ListTokensResponse, idempotent=True)
REVOKE_TOKEN = _rpc(_TOK, "TokenService", "RevokeToken", token_pb2.Token, idempotent=True)

LIST_WORKERS = _rpc(_WRK, "WorkerService", "ListWorkers", worker_pb2.ListWorkersResponse, idempotent=True)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One RPC to make: the request (with its request_id already chosen, so
    a retry resends the same one) and how to turn the response into `T`."""

    rpc: Rpc
    request: Message
    convert: Callable[[Any], T]
    retry: bool


def _call(rpc: Rpc, request: Message, read: Callable[[Any], T], *, retry: bool | None = None) -> Call[T]:
    return Call(rpc, request, read, rpc.idempotent if retry is None else retry)


def _none(_: Any) -> None:
    return None


def _request_id(given: str | None) -> str:
    return given if given else str(uuid.uuid4())


def _page_of(read: Callable[[Any], T], field: str) -> Callable[[Any], Page[T]]:
    def page(response: Any) -> Page[T]:
        return Page(tuple(read(m) for m in getattr(response, field)), response.next_page_token or None)

    return page


_Def = definition_pb2.JobDefinition


def _job_state(value: JobState | None) -> job_pb2.Job.State.ValueType:
    return job_pb2.Job.State.ValueType(0 if value is None else value.value)


def _dag_state(value: DagState | None) -> dag_pb2.Dag.State.ValueType:
    return dag_pb2.Dag.State.ValueType(0 if value is None else value.value)


# --- namespaces -----------------------------------------------------------------


def create_namespace(namespace_id: str, description: str) -> Call[Namespace]:
    request = namespace_pb2.CreateNamespaceRequest(namespace_id=namespace_id, description=description)
    return _call(CREATE_NAMESPACE, request, convert.namespace)


def list_namespaces(page_size: int, page_token: str) -> Call[Page[Namespace]]:
    request = namespace_pb2.ListNamespacesRequest(page_size=page_size, page_token=page_token)
    return _call(LIST_NAMESPACES, request, _page_of(convert.namespace, "namespaces"))


def get_namespace(namespace_id: str) -> Call[Namespace]:
    return _call(
        GET_NAMESPACE, namespace_pb2.GetNamespaceRequest(namespace_id=namespace_id), convert.namespace
    )


def delete_namespace(namespace_id: str) -> Call[None]:
    return _call(DELETE_NAMESPACE, namespace_pb2.DeleteNamespaceRequest(namespace_id=namespace_id), _none)


# --- definitions ----------------------------------------------------------------


def create_definition(
    namespace_id: str,
    name: str,
    kind: str,
    *,
    payload_template: Mapping[str, Any] | None,
    cron_spec: str | None,
    time_zone: str | None,
    misfire_policy: MisfirePolicy | None,
    overlap_policy: OverlapPolicy | None,
    starting_deadline: convert.Seconds | None,
    max_attempts: int | None,
    backoff_initial: convert.Seconds | None,
    backoff_max: convert.Seconds | None,
    backoff_multiplier: float | None,
    execution_timeout: convert.Seconds | None,
    default_priority: int | None,
    delay_after_parents: convert.Seconds | None,
    request_id: str | None,
) -> Call[Definition]:
    request = definition_pb2.CreateDefinitionRequest(
        namespace_id=namespace_id,
        name=name,
        kind=kind,
        payload_template=convert.struct(payload_template),
        cron_spec=cron_spec or "",
        time_zone=time_zone or "",
        misfire_policy=_Def.MisfirePolicy.ValueType(0 if misfire_policy is None else misfire_policy.value),
        overlap_policy=_Def.OverlapPolicy.ValueType(0 if overlap_policy is None else overlap_policy.value),
        starting_deadline=convert.duration(starting_deadline),
        max_attempts=max_attempts,
        backoff_initial=convert.duration(backoff_initial),
        backoff_max=convert.duration(backoff_max),
        backoff_multiplier=backoff_multiplier,
        execution_timeout=convert.duration(execution_timeout),
        default_priority=default_priority,
        delay_after_parents=convert.duration(delay_after_parents),
        request_id=_request_id(request_id),
    )
    return _call(CREATE_DEFINITION, request, convert.definition)


def list_definitions(
    namespace_id: str, name: str | None, page_size: int, page_token: str
) -> Call[Page[Definition]]:
    request = definition_pb2.ListDefinitionsRequest(
        namespace_id=namespace_id, name=name or "", page_size=page_size, page_token=page_token
    )
    return _call(LIST_DEFINITIONS, request, _page_of(convert.definition, "definitions"))


def get_definition(namespace_id: str, def_id: str) -> Call[Definition]:
    request = definition_pb2.GetDefinitionRequest(namespace_id=namespace_id, def_id=def_id)
    return _call(GET_DEFINITION, request, convert.definition)


def tick(
    namespace_id: str, def_id: str, payload: Mapping[str, Any] | None, request_id: str | None
) -> Call[Job]:
    request = definition_pb2.TickRequest(
        namespace_id=namespace_id,
        def_id=def_id,
        payload=convert.struct(payload),
        request_id=_request_id(request_id),
    )
    return _call(TICK, request, convert.job)


def retire_definition(namespace_id: str, def_id: str) -> Call[Definition]:
    request = definition_pb2.RetireDefinitionRequest(namespace_id=namespace_id, def_id=def_id)
    return _call(RETIRE_DEFINITION, request, convert.definition)


# --- schedules ------------------------------------------------------------------


def list_fires(namespace_id: str, def_id: str, page_size: int, page_token: str) -> Call[Page[Fire]]:
    request = schedule_pb2.ListFiresRequest(
        namespace_id=namespace_id, def_id=def_id, page_size=page_size, page_token=page_token
    )
    return _call(LIST_FIRES, request, _page_of(convert.fire, "fires"))


def get_schedule(namespace_id: str, name: str) -> Call[Schedule]:
    request = schedule_pb2.GetScheduleRequest(namespace_id=namespace_id, name=name)
    return _call(GET_SCHEDULE, request, convert.schedule)


def pause_schedule(namespace_id: str, name: str) -> Call[Schedule]:
    request = schedule_pb2.PauseScheduleRequest(namespace_id=namespace_id, name=name)
    return _call(PAUSE_SCHEDULE, request, convert.schedule)


def resume_schedule(namespace_id: str, name: str) -> Call[Schedule]:
    request = schedule_pb2.ResumeScheduleRequest(namespace_id=namespace_id, name=name)
    return _call(RESUME_SCHEDULE, request, convert.schedule)


# --- DAGs -----------------------------------------------------------------------


def _job_spec(spec: JobSpec) -> dag_pb2.JobSpec:
    return dag_pb2.JobSpec(
        key=spec.key, def_id=spec.def_id, payload=convert.struct(spec.payload), priority=spec.priority
    )


def create_dag(
    namespace_id: str,
    name: str,
    jobs: Iterable[JobSpec],
    dependencies: Iterable[tuple[str, str]],
    start: bool,
    request_id: str | None,
) -> Call[Dag]:
    request = dag_pb2.CreateDagRequest(
        namespace_id=namespace_id,
        name=name,
        jobs=[_job_spec(j) for j in jobs],
        dependencies=[dag_pb2.DagEdge(parent=parent, child=child) for parent, child in dependencies],
        start=start,
        request_id=_request_id(request_id),
    )
    return _call(CREATE_DAG, request, convert.dag)


def list_dags(namespace_id: str, state: DagState | None, page_size: int, page_token: str) -> Call[Page[Dag]]:
    request = dag_pb2.ListDagsRequest(
        namespace_id=namespace_id,
        state=_dag_state(state),
        page_size=page_size,
        page_token=page_token,
    )
    return _call(LIST_DAGS, request, _page_of(convert.dag, "dags"))


def get_dag(namespace_id: str, dag_id: str) -> Call[Dag]:
    return _call(GET_DAG, dag_pb2.GetDagRequest(namespace_id=namespace_id, dag_id=dag_id), convert.dag)


def delete_dag(namespace_id: str, dag_id: str) -> Call[None]:
    return _call(DELETE_DAG, dag_pb2.DeleteDagRequest(namespace_id=namespace_id, dag_id=dag_id), _none)


def start_dag(namespace_id: str, dag_id: str) -> Call[Dag]:
    return _call(START_DAG, dag_pb2.StartDagRequest(namespace_id=namespace_id, dag_id=dag_id), convert.dag)


def cancel_dag(namespace_id: str, dag_id: str) -> Call[Dag]:
    return _call(CANCEL_DAG, dag_pb2.CancelDagRequest(namespace_id=namespace_id, dag_id=dag_id), convert.dag)


def create_jobs(
    namespace_id: str, dag_id: str, jobs: Iterable[JobSpec], request_id: str | None
) -> Call[list[Job]]:
    request = dag_pb2.CreateJobsRequest(
        namespace_id=namespace_id,
        dag_id=dag_id,
        jobs=[_job_spec(j) for j in jobs],
        request_id=_request_id(request_id),
    )
    return _call(CREATE_JOBS, request, lambda r: [convert.job(j) for j in r.jobs])


def list_dag_jobs(
    namespace_id: str, dag_id: str, state: JobState | None, page_size: int, page_token: str
) -> Call[Page[Job]]:
    request = dag_pb2.ListDagJobsRequest(
        namespace_id=namespace_id,
        dag_id=dag_id,
        state=_job_state(state),
        page_size=page_size,
        page_token=page_token,
    )
    return _call(LIST_DAG_JOBS, request, _page_of(convert.job, "jobs"))


def add_dependency(namespace_id: str, dag_id: str, parent_job_id: str, child_job_id: str) -> Call[Dependency]:
    request = dag_pb2.AddDependencyRequest(
        namespace_id=namespace_id, dag_id=dag_id, parent_job_id=parent_job_id, child_job_id=child_job_id
    )
    return _call(ADD_DEPENDENCY, request, convert.dependency)


def add_dependencies(
    namespace_id: str, dag_id: str, pairs: Iterable[tuple[str, str]]
) -> Call[list[Dependency]]:
    request = dag_pb2.AddDependenciesRequest(
        namespace_id=namespace_id,
        dag_id=dag_id,
        dependencies=[dag_pb2.Dependency(parent_job_id=p, child_job_id=c) for p, c in pairs],
    )
    return _call(ADD_DEPENDENCIES, request, lambda r: [convert.dependency(d) for d in r.dependencies])


def list_dependencies(
    namespace_id: str, dag_id: str, page_size: int, page_token: str
) -> Call[Page[Dependency]]:
    request = dag_pb2.ListDependenciesRequest(
        namespace_id=namespace_id, dag_id=dag_id, page_size=page_size, page_token=page_token
    )
    return _call(LIST_DEPENDENCIES, request, _page_of(convert.dependency, "dependencies"))


# --- jobs -----------------------------------------------------------------------


def get_job(namespace_id: str, job_id: str) -> Call[Job]:
    return _call(GET_JOB, job_pb2.GetJobRequest(namespace_id=namespace_id, job_id=job_id), convert.job)


def list_jobs(
    namespace_id: str,
    state: JobState | None,
    dag_id: str | None,
    def_id: str | None,
    page_size: int,
    page_token: str,
) -> Call[Page[Job]]:
    request = job_pb2.ListJobsRequest(
        namespace_id=namespace_id,
        state=_job_state(state),
        dag_id=dag_id or "",
        def_id=def_id or "",
        page_size=page_size,
        page_token=page_token,
    )
    return _call(LIST_JOBS, request, _page_of(convert.job, "jobs"))


def enqueue_jobs(namespace_id: str, runs: Iterable[JobRun], request_id: str | None) -> Call[list[str]]:
    request = job_pb2.EnqueueJobsRequest(
        namespace_id=namespace_id,
        jobs=[
            job_pb2.JobRun(def_id=r.def_id, payload=convert.struct(r.payload), priority=r.priority)
            for r in runs
        ],
        request_id=_request_id(request_id),
    )
    return _call(ENQUEUE_JOBS, request, lambda response: list(response.job_ids))


def complete_job(
    job_id: str, result: Mapping[str, Any] | None, attempt: int | None, namespace_id: str | None = None
) -> Call[Job]:
    request = job_pb2.CompleteJobRequest(
        job_id=job_id, result=convert.struct(result), attempt=attempt, namespace_id=namespace_id or ""
    )
    # Fenced by `attempt`, a repeat is acknowledged without a second
    # transition; unfenced, it would act on whatever attempt is current.
    return _call(COMPLETE_JOB, request, convert.job, retry=attempt is not None)


def fail_job(
    job_id: str, error: str, attempt: int | None, non_retryable: bool, namespace_id: str | None = None
) -> Call[Job]:
    request = job_pb2.FailJobRequest(
        job_id=job_id,
        error=error,
        attempt=attempt,
        non_retryable=non_retryable,
        namespace_id=namespace_id or "",
    )
    return _call(FAIL_JOB, request, convert.job)


# --- workers --------------------------------------------------------------------


def list_workers(namespace_id: str | None, page_size: int, page_token: str) -> Call[Page[ConnectedWorker]]:
    request = worker_pb2.ListWorkersRequest(
        namespace_id=namespace_id or "", page_size=page_size, page_token=page_token
    )
    return _call(LIST_WORKERS, request, _page_of(convert.connected_worker, "workers"))


# --- tokens ---------------------------------------------------------------------


def create_token(
    scope: TokenScope, namespace_id: str | None, description: str, ttl: convert.Seconds | None
) -> Call[NewToken]:
    request = token_pb2.CreateTokenRequest(
        scope=token_pb2.Token.Scope.ValueType(scope.value),
        namespace_id=namespace_id or "",
        description=description,
        ttl=convert.duration(ttl),
    )
    return _call(CREATE_TOKEN, request, lambda r: NewToken(token=convert.token(r.token), secret=r.secret))


def list_tokens(
    namespace_id: str | None, show_inactive: bool, page_size: int, page_token: str
) -> Call[Page[Token]]:
    request = token_pb2.ListTokensRequest(
        namespace_id=namespace_id or "",
        show_inactive=show_inactive,
        page_size=page_size,
        page_token=page_token,
    )
    return _call(LIST_TOKENS, request, _page_of(convert.token, "tokens"))


def revoke_token(token_id: str) -> Call[Token]:
    return _call(REVOKE_TOKEN, token_pb2.RevokeTokenRequest(token_id=token_id), convert.token)


# --- admin ----------------------------------------------------------------------


def prune(older_than: convert.Seconds | None, namespace_id: str | None) -> Call[PruneResult]:
    request = admin_pb2.PruneRequest(older_than=convert.duration(older_than), namespace_id=namespace_id or "")
    return _call(
        PRUNE,
        request,
        lambda r: PruneResult(
            dags_pruned=r.dags_pruned, jobs_pruned=r.jobs_pruned, dependencies_pruned=r.dependencies_pruned
        ),
    )


def healthz() -> Call[Health]:
    return _call(HEALTHZ, admin_pb2.HealthzRequest(), lambda r: Health(status=r.status, version=r.version))


# --- retries --------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How retry-safe calls are retried after UNAVAILABLE: at most `attempts`
    calls in all, waiting `initial_backoff` seconds after the first failure,
    `multiplier` times longer after each further one, at most `max_backoff`
    (each wait drawn between half and all of that). A retry never outlives
    the call's deadline. `RetryPolicy(attempts=1)` turns retries off."""

    attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must not be negative and the multiplier not below 1")

    def delay(self, call: Call[Any], code: grpc.StatusCode, attempt: int, remaining: float) -> float | None:
        """Seconds to wait before trying `call` again after attempt number
        `attempt` ended with `code`, or None to give up."""
        if not call.retry or code != grpc.StatusCode.UNAVAILABLE or attempt >= self.attempts:
            return None
        backoff = min(self.initial_backoff * self.multiplier ** (attempt - 1), self.max_backoff)
        wait = backoff * random.uniform(0.5, 1.0)
        # A retry needs time left for the call itself, not only for the wait.
        return wait if wait < remaining else None


# --- channels -------------------------------------------------------------------

#: A CA bundle, certificate or key: PEM bytes, PEM text, or the path of a PEM file.
CA = bytes | str | os.PathLike[str]


def read_ca(ca: CA) -> bytes:
    """The PEM bytes of a CA, certificate or key argument."""
    if isinstance(ca, bytes):
        return ca
    if isinstance(ca, str) and ca.lstrip().startswith("-----BEGIN"):
        return ca.encode()
    return Path(ca).read_bytes()


def channel_credentials(
    ca: CA | None, cert: CA | None = None, key: CA | None = None
) -> grpc.ChannelCredentials | None:
    """TLS credentials trusting `ca` (gRPC's default roots without one) and
    presenting `cert`/`key` if given (mutual TLS), or None for plaintext:
    neither a CA nor a client certificate."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate (cert) and its key (key) go together")
    if ca is None and cert is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=None if ca is None else read_ca(ca),
        private_key=None if key is None else read_ca(key),
        certificate_chain=None if cert is None else read_ca(cert),
    )


def channel_options(extra: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The client's channel options, with the caller's own winning."""
    given = {name for name, _ in extra}
    return [(name, value) for name, value in _CHANNEL_OPTIONS if name not in given] + list(extra)


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata every call carries."""
    return (("authorization", f"Bearer {token}"),) if token else ()


# --- definition references ------------------------------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

#: A definition as a DAG job may name it: a `Definition`, a def_id (UUID),
#: a name (its latest version) or `name@version`.
DefinitionRef = Definition | str


@dataclass(frozen=True)
class ParsedRef:
    """A definition reference taken apart: a def_id, or a name with an
    optional version (None means the latest)."""

    def_id: str | None = None
    name: str | None = None
    version: int | None = None


def parse_ref(ref: DefinitionRef) -> ParsedRef:
    """Take a definition reference apart. A UUID is a def_id (a definition
    named like a UUID must be given as `name@version` or as a Definition)."""
    if isinstance(ref, Definition):
        return ParsedRef(def_id=ref.def_id)
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"a definition reference is a Definition or a non-empty string, not {ref!r}")
    if _UUID.fullmatch(ref):
        return ParsedRef(def_id=ref)
    name, at, version = ref.rpartition("@")
    if not at:
        return ParsedRef(name=ref)
    if not name or not version.isdigit() or int(version) < 1:
        raise ValueError(f"{ref!r}: expected name@version with a version of 1 or more")
    return ParsedRef(name=name, version=int(version))


def pick_version(namespace_id: str, ref: ParsedRef, versions: Iterable[Definition]) -> Definition:
    """The version `ref` names among a name's `versions` (in creation
    order): the given version, or the last one. NotFound if there is none."""
    chosen: Definition | None = None
    for candidate in versions:
        if ref.version is None or candidate.version == ref.version:
            chosen = candidate
            if ref.version is not None:
                break
    if chosen is not None:
        return chosen
    what = f"version {ref.version} of definition {ref.name!r}" if ref.version else f"definition {ref.name!r}"
    raise make_error(
        grpc.StatusCode.NOT_FOUND,
        f"{what} not found in namespace {namespace_id!r}",
        reason="DEFINITION_NOT_FOUND",
        metadata={
            "resource": "definition",
            "id": f"{ref.name}@{ref.version}" if ref.version else str(ref.name),
        },
    )
