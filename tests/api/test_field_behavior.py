"""The field_behavior annotations say what the server does.

For every unary RPC the table below holds a valid baseline request that sets
every field (and every field of the first element of a nested chronosched
message). From it, for each field marked REQUIRED, a request with just that
field left empty must be refused with INVALID_ARGUMENT and a BadRequest
violation naming the field; for each field marked OPTIONAL, a request with
just that field left empty must not get a violation naming it. The annotations
are read from the generated modules, which gen-fresh keeps equal to the
protos; tests/unit/test_field_behavior.py checks their shape. WorkerService's
Dequeue (a stream) is only in the unit test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import grpc
import pytest
from google.api import field_behavior_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

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
from chronosched_server import ids
from tests.support.builders import RpcFailure, dag, dag_jobs, definition, namespace
from tests.support.grpc_helpers import seconds, struct
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(120)

PACKAGE = "chronosched.v1"
MODULES = (namespace_pb2, definition_pb2, job_pb2, dag_pb2, schedule_pb2, admin_pb2, worker_pb2, token_pb2)
STREAMS = {"WorkerService.Dequeue"}
STUB = {
    "NamespaceService": "namespaces",
    "DefinitionService": "definitions",
    "JobService": "jobs",
    "DagService": "dags",
    "ScheduleService": "schedules",
    "AdminService": "admin",
    "TokenService": "tokens",
    "WorkerService": "workers",
}
Def = definition_pb2.JobDefinition
LISTS = (
    "namespaces",
    "definitions",
    "jobs",
    "dags",
    "dag_jobs",
    "dependencies",
    "fires",
    "tokens",
    "workers",
)


def unary_rpcs() -> dict[str, MethodDescriptor]:
    """ "Service.Method" -> its descriptor, for every RPC that is not a stream."""
    found: dict[str, MethodDescriptor] = {}
    streams: set[str] = set()
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rpc = f"{service.name}.{method.name}"
                if method.client_streaming or method.server_streaming:
                    streams.add(rpc)
                else:
                    found[rpc] = method
    assert streams == STREAMS, "a new stream RPC: decide how to test its messages"
    return found


def behaviors(fd: FieldDescriptor) -> set[str]:
    options: Any = fd.GetOptions()
    return {
        field_behavior_pb2.FieldBehavior.Name(b)
        for b in options.Extensions[field_behavior_pb2.field_behavior]
    }


# --- what the baselines point at ---------------------------------------------------


@dataclass(frozen=True)
class World:
    """Resources the baselines name. Each RPC that changes something gets a
    resource of its own, so every baseline succeeds when they run in turn."""

    ns: str
    spare_ns: str  # empty: DeleteNamespace
    def_id: str  # "work", with a cron spec: Tick, schedules, DAG jobs
    retiree: str  # a name of its own: RetireDefinition
    building: str  # a PENDING DAG with jobs a, b, c, d and edges a->b, a->c
    jobs: dict[str, str]  # key -> job id in `building`
    to_start: str
    to_cancel: str
    to_delete: str
    completable: str  # READY standalone jobs
    failable: str
    tokens: dict[str, str] = field(default_factory=dict)  # list RPC -> a valid page token
    token_id: str = "0123456789abcdef"  # a stored bearer token: RevokeToken


def placeholder_world() -> World:
    """Ids that look right, for checking the table without a server."""
    some = "0190a0a0-0000-7000-8000-000000000000"
    return World(
        ns="fb",
        spare_ns="fb-spare",
        def_id=some,
        retiree=some,
        building=some,
        jobs=dict.fromkeys("abcd", some),
        to_start=some,
        to_cancel=some,
        to_delete=some,
        completable=some,
        failable=some,
        tokens=dict.fromkeys(LISTS, "dG9rZW4"),
    )


async def build_world(api: Stubs) -> World:
    ns = await namespace(api, "fb")
    spare = await namespace(api, "fb-spare")
    work = await definition(api, ns, "work", kind="work", cron_spec="0 3 * * *")
    retiree = await definition(api, ns, "retiree", kind="work")
    building = await dag(api, ns, work.def_id, ["a", "b", "c", "d"], [("a", "b"), ("a", "c")], start=False)
    jobs = {key: job.job_id for key, job in (await dag_jobs(api, ns, building.dag_id)).items()}
    to_start = await dag(api, ns, work.def_id, ["only"], [], start=False)
    to_cancel = await dag(api, ns, work.def_id, ["only"], [], start=True)
    to_delete = await dag(api, ns, work.def_id, ["only"], [], start=True)
    tick = definition_pb2.TickRequest(namespace_id=ns, def_id=work.def_id)
    completable = await api.definitions.Tick(tick)
    failable = await api.definitions.Tick(tick)
    pages: dict[str, Any] = {
        "namespaces": (await api.namespaces.ListNamespaces(namespace_pb2.ListNamespacesRequest(page_size=1))),
        "definitions": (
            await api.definitions.ListDefinitions(
                definition_pb2.ListDefinitionsRequest(namespace_id=ns, page_size=1)
            )
        ),
        "jobs": await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, page_size=1)),
        "dags": await api.dags.ListDags(dag_pb2.ListDagsRequest(namespace_id=ns, page_size=1)),
        "dag_jobs": await api.dags.ListDagJobs(
            dag_pb2.ListDagJobsRequest(namespace_id=ns, dag_id=building.dag_id, page_size=1)
        ),
        "dependencies": await api.dags.ListDependencies(
            dag_pb2.ListDependenciesRequest(namespace_id=ns, dag_id=building.dag_id, page_size=1)
        ),
    }
    stored = [
        await api.tokens.CreateToken(
            token_pb2.CreateTokenRequest(scope=token_pb2.Token.SCOPE_READ, namespace_id=ns)
        )
        for _ in range(2)
    ]
    pages["tokens"] = await api.tokens.ListTokens(token_pb2.ListTokensRequest(page_size=1))
    page_tokens = {name: page.next_page_token for name, page in pages.items()}
    # No cron fire happens in the test (the schedule is daily at 03:00), so
    # the fires token is made the way the server makes one: a scheduled time.
    page_tokens["fires"] = ids.encode_page_token(datetime(2026, 1, 1, tzinfo=UTC).isoformat())
    # No worker is connected either: the workers token is a (worker id, stream id) cursor.
    page_tokens["workers"] = ids.encode_page_token("w1 0190a0a0-0000-7000-8000-000000000000")
    assert all(page_tokens.values()) and set(page_tokens) == set(LISTS), page_tokens
    return World(
        ns=ns,
        spare_ns=spare,
        def_id=work.def_id,
        retiree=retiree.def_id,
        building=building.dag_id,
        jobs=jobs,
        to_start=to_start.dag_id,
        to_cancel=to_cancel.dag_id,
        to_delete=to_delete.dag_id,
        completable=completable.job_id,
        failable=failable.job_id,
        tokens=page_tokens,
        token_id=stored[0].token.token_id,
    )


# --- the baselines: valid, every field set -----------------------------------------


def _create_definition(w: World) -> Message:
    return definition_pb2.CreateDefinitionRequest(
        namespace_id=w.ns,
        name="created",
        kind="work",
        payload_template=struct({"region": "eu"}),
        cron_spec="0 4 * * *",
        time_zone="Europe/Berlin",
        misfire_policy=Def.MISFIRE_POLICY_FIRE_ONCE,
        overlap_policy=Def.OVERLAP_POLICY_FORBID,
        starting_deadline=seconds(30),
        max_attempts=5,
        backoff_initial=seconds(2),
        backoff_max=seconds(60),
        backoff_multiplier=3.0,
        execution_timeout=seconds(60),
        default_priority=5,
        delay_after_parents=seconds(1),
        request_id="def-1",
    )


def _spec(w: World, key: str) -> dag_pb2.JobSpec:
    return dag_pb2.JobSpec(key=key, def_id=w.def_id, payload=struct({"n": 1}), priority=7)


def _dag_ref(cls: Callable[..., Message], dag_id: Callable[[World], str]) -> Callable[[World], Message]:
    return lambda w: cls(namespace_id=w.ns, dag_id=dag_id(w))


def _schedule(cls: Callable[..., Message]) -> Callable[[World], Message]:
    return lambda w: cls(namespace_id=w.ns, name="work")


# In the order the baseline check runs them: each changes only what it names.
BASELINES: dict[str, Callable[[World], Message]] = {
    "NamespaceService.CreateNamespace": lambda w: namespace_pb2.CreateNamespaceRequest(
        namespace_id="fb-new", description="made by a baseline"
    ),
    "NamespaceService.ListNamespaces": lambda w: namespace_pb2.ListNamespacesRequest(
        page_size=10, page_token=w.tokens["namespaces"]
    ),
    "NamespaceService.GetNamespace": lambda w: namespace_pb2.GetNamespaceRequest(namespace_id=w.ns),
    "NamespaceService.DeleteNamespace": lambda w: namespace_pb2.DeleteNamespaceRequest(
        namespace_id=w.spare_ns
    ),
    "DefinitionService.CreateDefinition": _create_definition,
    "DefinitionService.ListDefinitions": lambda w: definition_pb2.ListDefinitionsRequest(
        namespace_id=w.ns, page_size=10, page_token=w.tokens["definitions"], name="work"
    ),
    "DefinitionService.GetDefinition": lambda w: definition_pb2.GetDefinitionRequest(
        namespace_id=w.ns, def_id=w.def_id
    ),
    "DefinitionService.Tick": lambda w: definition_pb2.TickRequest(
        namespace_id=w.ns, def_id=w.def_id, payload=struct({"n": 2}), request_id="tick-1"
    ),
    "DefinitionService.RetireDefinition": lambda w: definition_pb2.RetireDefinitionRequest(
        namespace_id=w.ns, def_id=w.retiree
    ),
    "JobService.GetJob": lambda w: job_pb2.GetJobRequest(namespace_id=w.ns, job_id=w.completable),
    "JobService.ListJobs": lambda w: job_pb2.ListJobsRequest(
        namespace_id=w.ns,
        page_size=10,
        page_token=w.tokens["jobs"],
        state=job_pb2.Job.STATE_PENDING,
        dag_id=w.building,
        def_id=w.def_id,
    ),
    "JobService.EnqueueJobs": lambda w: job_pb2.EnqueueJobsRequest(
        namespace_id=w.ns,
        jobs=[job_pb2.JobRun(def_id=w.def_id, payload=struct({"n": 3}), priority=4)],
        request_id="enqueue-1",
    ),
    "JobService.CompleteJob": lambda w: job_pb2.CompleteJobRequest(
        job_id=w.completable, result=struct({"ok": True}), attempt=1, namespace_id=w.ns
    ),
    "JobService.FailJob": lambda w: job_pb2.FailJobRequest(
        job_id=w.failable, error="boom", attempt=1, non_retryable=True, namespace_id=w.ns
    ),
    "DagService.CreateDag": lambda w: dag_pb2.CreateDagRequest(
        namespace_id=w.ns,
        name="nightly",
        jobs=[_spec(w, "x"), _spec(w, "y")],
        dependencies=[dag_pb2.DagEdge(parent="x", child="y")],
        start=True,
        request_id="dag-1",
    ),
    "DagService.ListDags": lambda w: dag_pb2.ListDagsRequest(
        namespace_id=w.ns, page_size=10, page_token=w.tokens["dags"], state=dag_pb2.Dag.STATE_PENDING
    ),
    "DagService.GetDag": _dag_ref(dag_pb2.GetDagRequest, lambda w: w.building),
    "DagService.DeleteDag": _dag_ref(dag_pb2.DeleteDagRequest, lambda w: w.to_delete),
    "DagService.StartDag": _dag_ref(dag_pb2.StartDagRequest, lambda w: w.to_start),
    "DagService.CancelDag": _dag_ref(dag_pb2.CancelDagRequest, lambda w: w.to_cancel),
    "DagService.CreateJobs": lambda w: dag_pb2.CreateJobsRequest(
        namespace_id=w.ns, dag_id=w.building, jobs=[_spec(w, "e")], request_id="jobs-1"
    ),
    "DagService.ListDagJobs": lambda w: dag_pb2.ListDagJobsRequest(
        namespace_id=w.ns,
        dag_id=w.building,
        page_size=10,
        page_token=w.tokens["dag_jobs"],
        state=job_pb2.Job.STATE_PENDING,
    ),
    "DagService.AddDependency": lambda w: dag_pb2.AddDependencyRequest(
        namespace_id=w.ns, dag_id=w.building, parent_job_id=w.jobs["b"], child_job_id=w.jobs["d"]
    ),
    "DagService.AddDependencies": lambda w: dag_pb2.AddDependenciesRequest(
        namespace_id=w.ns,
        dag_id=w.building,
        dependencies=[dag_pb2.Dependency(parent_job_id=w.jobs["c"], child_job_id=w.jobs["d"])],
    ),
    "DagService.ListDependencies": lambda w: dag_pb2.ListDependenciesRequest(
        namespace_id=w.ns, dag_id=w.building, page_size=10, page_token=w.tokens["dependencies"]
    ),
    "ScheduleService.ListFires": lambda w: schedule_pb2.ListFiresRequest(
        namespace_id=w.ns, def_id=w.def_id, page_size=10, page_token=w.tokens["fires"]
    ),
    "ScheduleService.GetSchedule": _schedule(schedule_pb2.GetScheduleRequest),
    "ScheduleService.PauseSchedule": _schedule(schedule_pb2.PauseScheduleRequest),
    "ScheduleService.ResumeSchedule": _schedule(schedule_pb2.ResumeScheduleRequest),
    "AdminService.Prune": lambda w: admin_pb2.PruneRequest(older_than=seconds(3600), namespace_id=w.ns),
    "AdminService.Healthz": lambda w: admin_pb2.HealthzRequest(),
    # An admin token: a read, write or worker token needs its namespace_id
    # (OPTIONAL: needed only with those scopes).
    "TokenService.CreateToken": lambda w: token_pb2.CreateTokenRequest(
        scope=token_pb2.Token.SCOPE_ADMIN, namespace_id="*", description="baseline", ttl=seconds(3600)
    ),
    "TokenService.ListTokens": lambda w: token_pb2.ListTokensRequest(
        page_size=10, page_token=w.tokens["tokens"], namespace_id=w.ns, show_inactive=True
    ),
    "TokenService.RevokeToken": lambda w: token_pb2.RevokeTokenRequest(token_id=w.token_id),
    "WorkerService.ListWorkers": lambda w: worker_pb2.ListWorkersRequest(
        namespace_id=w.ns, page_size=10, page_token=w.tokens["workers"]
    ),
}


# --- walking a request's fields ----------------------------------------------------

Step = tuple[str, int | None]  # a field name, and the element taken when repeated


@dataclass(frozen=True)
class Spot:
    path: str  # as violations name it: "namespace_id", "jobs[0].key"
    steps: tuple[Step, ...]
    descriptor: FieldDescriptor


def spots(message: Message, prefix: str = "", steps: tuple[Step, ...] = ()) -> Iterator[Spot]:
    """Every field of `message`, and of the chronosched messages it holds (the
    first element of a repeated one)."""
    # (the stubs type a message's fields as either descriptor class)
    for fd in cast("list[FieldDescriptor]", message.DESCRIPTOR.fields):
        path = prefix + fd.name
        yield Spot(path, (*steps, (fd.name, None)), fd)
        if fd.message_type is None or fd.message_type.file.package != PACKAGE:
            continue
        value = getattr(message, fd.name)
        if fd.is_repeated:
            if len(value):
                yield from spots(value[0], f"{path}[0].", (*steps, (fd.name, 0)))
        elif message.HasField(fd.name):
            yield from spots(value, f"{path}.", (*steps, (fd.name, None)))


def _owner(message: Message, steps: tuple[Step, ...]) -> Message:
    for name, index in steps[:-1]:
        message = getattr(message, name)
        if index is not None:
            message = message[index]  # type: ignore[index]
    return message


def is_set(request: Message, spot: Spot) -> bool:
    owner, fd = _owner(request, spot.steps), spot.descriptor
    if fd.is_repeated:
        return len(getattr(owner, fd.name)) > 0
    if fd.has_presence:
        return owner.HasField(fd.name)
    return bool(getattr(owner, fd.name) != fd.default_value)


def without(request: Message, spot: Spot) -> Message:
    """A copy of `request` with the field at `spot` left empty."""
    copy = type(request)()
    copy.CopyFrom(request)
    _owner(copy, spot.steps).ClearField(spot.descriptor.name)
    return copy


def names(path: str, violation: str) -> bool:
    return violation == path or violation.startswith((f"{path}.", f"{path}["))


@dataclass(frozen=True)
class Case:
    rpc: str
    spot: Spot
    behavior: str  # REQUIRED or OPTIONAL


def cases(world: World) -> Iterator[tuple[Case, Message]]:
    """Each REQUIRED or OPTIONAL field of each baseline, with its baseline."""
    for rpc in unary_rpcs():
        baseline = BASELINES[rpc](world)
        for spot in spots(baseline):
            for behavior in behaviors(spot.descriptor) & {"REQUIRED", "OPTIONAL"}:
                yield Case(rpc, spot, behavior), baseline


async def call(api: Stubs, rpc: str, request: Message) -> RpcFailure | None:
    service, method = rpc.split(".")
    try:
        await getattr(getattr(api, STUB[service]), method)(request)
    except grpc.aio.AioRpcError as err:
        return RpcFailure(err)
    return None


# --- the tests ---------------------------------------------------------------------


def test_every_unary_rpc_has_a_baseline_that_sets_every_field() -> None:
    rpcs = unary_rpcs()
    assert set(BASELINES) == set(rpcs), "each unary RPC needs exactly one baseline"
    world = placeholder_world()
    unset: list[str] = []
    for rpc, method in rpcs.items():
        baseline = BASELINES[rpc](world)
        assert baseline.DESCRIPTOR is method.input_type, rpc
        unset += [f"{rpc}: {s.path}" for s in spots(baseline) if not is_set(baseline, s)]
    # An empty field cannot be left empty: its REQUIRED or OPTIONAL case would prove nothing.
    assert unset == []
    # Nested messages are walked: JobSpec, DagEdge and Dependency fields are cases too.
    paths = {(c.rpc, c.spot.path, c.behavior) for c, _ in cases(world)}
    assert {
        ("DagService.CreateDag", "jobs[0].key", "REQUIRED"),
        ("DagService.CreateDag", "jobs[0].priority", "OPTIONAL"),
        ("DagService.CreateDag", "dependencies[0].child", "REQUIRED"),
        ("DagService.AddDependencies", "dependencies[0].parent_job_id", "REQUIRED"),
    } <= paths


async def test_every_baseline_is_accepted(api: Stubs) -> None:
    world = await build_world(api)
    refused = {}
    for rpc in BASELINES:
        failure = await call(api, rpc, BASELINES[rpc](world))
        if failure is not None:
            refused[rpc] = (failure.code, failure.reason, failure.message)
    assert refused == {}


async def test_a_required_field_left_empty_is_refused_naming_it(api: Stubs) -> None:
    world = await build_world(api)
    wrong: list[str] = []
    checked = 0
    for case, baseline in cases(world):
        if case.behavior != "REQUIRED":
            continue
        checked += 1
        failure = await call(api, case.rpc, without(baseline, case.spot))
        if failure is None:
            wrong.append(f"{case.rpc} {case.spot.path}: accepted when empty")
        elif failure.code != grpc.StatusCode.INVALID_ARGUMENT or case.spot.path not in failure.fields:
            wrong.append(
                f"{case.rpc} {case.spot.path}: {failure.code.name} {failure.fields} {failure.message}"
            )
    assert wrong == [], "\n".join(wrong)
    assert checked >= 50


async def test_an_optional_field_left_empty_is_not_refused_for_it(api: Stubs) -> None:
    world = await build_world(api)
    wrong: list[str] = []
    checked = 0
    for case, baseline in cases(world):
        if case.behavior != "OPTIONAL":
            continue
        checked += 1
        failure = await call(api, case.rpc, without(baseline, case.spot))
        if failure is not None and any(names(case.spot.path, v) for v in failure.fields):
            wrong.append(
                f"{case.rpc} {case.spot.path}: {failure.code.name} {failure.fields} {failure.message}"
            )
    assert wrong == [], "\n".join(wrong)
    assert checked >= 40
