"""DagService."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import empty_pb2

from chronosched.v1 import dag_pb2, dag_pb2_grpc, job_pb2
from chronosched_server import ids, render, topology, validation
from chronosched_server.api.common import (
    paginate,
    read_runs,
    state_filter,
    uuid_field,
    uuid_token,
    within_job_limit,
)
from chronosched_server.errors import Why
from chronosched_server.metrics import Metrics
from chronosched_server.storage import dags, jobs
from chronosched_server.storage.dags import NewJob
from chronosched_server.storage.db import Database
from chronosched_server.storage.metrics import Tally
from chronosched_server.validation import Violations

Ctx = grpc.aio.ServicerContext[Any, Any]


def read_job_specs(v: Violations, specs: Sequence[dag_pb2.JobSpec]) -> list[NewJob]:
    """Validate JobSpecs. Built for 100,000-job DAGs: keys are checked with one
    regex over all of them (per key only to name the bad ones)."""
    if not within_job_limit(v, len(specs)):
        return []
    keys = [spec.key for spec in specs]
    if not validation.all_match(validation.KEY_RE, keys):
        for i, key in enumerate(keys):
            validation.check_pattern(v, f"jobs[{i}].key", key, validation.KEY_RE, required=True)
    return read_runs(v, specs, keys)


def read_dag_ref(v: Violations, namespace_id: str, dag_id: str) -> uuid.UUID | None:
    validation.check_slug(v, "namespace_id", namespace_id)
    return uuid_field(v, "dag_id", dag_id)


def read_edges(
    v: Violations, edges: Sequence[dag_pb2.Dependency], field: str
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    if len(edges) > validation.MAX_EDGES_PER_CALL:
        v.add(
            field,
            f"at most {validation.MAX_EDGES_PER_CALL} dependencies per call, got {len(edges)}",
            Why.TOO_MANY,
        )
        return []
    out: list[tuple[uuid.UUID, uuid.UUID]] = []
    for n, edge in enumerate(edges):
        parent = uuid_field(v, f"{field}[{n}].parent_job_id", edge.parent_job_id)
        child = uuid_field(v, f"{field}[{n}].child_job_id", edge.child_job_id)
        if parent is None or child is None:
            continue
        if parent == child:
            v.add(f"{field}[{n}]", "self-edge: a job cannot depend on itself", Why.SELF_EDGE)
            continue
        out.append((parent, child))
    return out


class DagServicer(dag_pb2_grpc.DagServiceServicer):
    def __init__(self, db: Database, metrics: Metrics | None = None):
        self.db = db
        self.metrics = metrics or Metrics()

    async def CreateDag(self, request: dag_pb2.CreateDagRequest, context: Ctx) -> dag_pb2.Dag:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        validation.check_text(v, "name", request.name, validation.MAX_DAG_NAME)
        validation.check_pattern(
            v, "request_id", request.request_id, validation.REQUEST_ID_RE, required=False
        )
        too_many_edges = len(request.dependencies) > validation.MAX_EDGES_PER_CALL
        if too_many_edges:
            v.add(
                "dependencies",
                f"at most {validation.MAX_EDGES_PER_CALL} per call, got {len(request.dependencies)}",
                Why.TOO_MANY,
            )
        new_jobs = read_job_specs(v, request.jobs)
        if too_many_edges or len(request.jobs) > validation.MAX_JOBS_PER_CALL:
            # Past the size limits nothing else is worth checking.
            v.raise_if_any()
        if request.start and not request.jobs:
            v.add(
                "start", "a DAG without jobs cannot be started; add jobs or set start to false", Why.CONFLICT
            )
        keys = [spec.key for spec in request.jobs]
        edges = topology.resolve_key_edges(v, keys, [(e.parent, e.child) for e in request.dependencies])
        v.raise_if_any()
        topology.check_acyclic(len(keys), edges, keys)
        tally = Tally()
        row = await dags.create(
            self.db,
            request.namespace_id,
            request.name,
            new_jobs,
            edges,
            request.start,
            request.request_id,
            tally,
        )
        self.metrics.record(tally)
        return render.dag(row)

    async def ListDags(self, request: dag_pb2.ListDagsRequest, context: Ctx) -> dag_pb2.ListDagsResponse:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        state = state_filter(v, "state", request.state, dag_pb2.Dag.State.Name)
        limit = validation.page_size(v, request.page_size)
        after = uuid_token(v, request.page_token)
        v.raise_if_any()
        rows = await dags.list_page(self.db, request.namespace_id, state, after, limit + 1)
        page, token = paginate(rows, limit, lambda r: str(r.dag_id))
        return dag_pb2.ListDagsResponse(dags=[render.dag(r) for r in page], next_page_token=token)

    async def GetDag(self, request: dag_pb2.GetDagRequest, context: Ctx) -> dag_pb2.Dag:
        dag_id = self._ref(request.namespace_id, request.dag_id)
        return render.dag(await dags.get(self.db, request.namespace_id, dag_id))

    async def DeleteDag(self, request: dag_pb2.DeleteDagRequest, context: Ctx) -> empty_pb2.Empty:
        dag_id = self._ref(request.namespace_id, request.dag_id)
        tally = Tally()
        await dags.delete(self.db, request.namespace_id, dag_id, tally)
        self.metrics.record(tally)
        return empty_pb2.Empty()

    async def StartDag(self, request: dag_pb2.StartDagRequest, context: Ctx) -> dag_pb2.Dag:
        dag_id = self._ref(request.namespace_id, request.dag_id)
        return render.dag(await dags.start(self.db, request.namespace_id, dag_id))

    async def CancelDag(self, request: dag_pb2.CancelDagRequest, context: Ctx) -> dag_pb2.Dag:
        dag_id = self._ref(request.namespace_id, request.dag_id)
        tally = Tally()
        row = await dags.cancel(self.db, request.namespace_id, dag_id, tally)
        self.metrics.record(tally)
        return render.dag(row)

    async def CreateJobs(
        self, request: dag_pb2.CreateJobsRequest, context: Ctx
    ) -> dag_pb2.CreateJobsResponse:
        v = Violations()
        dag_id = read_dag_ref(v, request.namespace_id, request.dag_id)
        validation.check_pattern(
            v, "request_id", request.request_id, validation.REQUEST_ID_RE, required=False
        )
        if not request.jobs:
            v.add("jobs", "at least one job is required", Why.TOO_FEW)
        new_jobs = read_job_specs(v, request.jobs)
        topology.resolve_key_edges(v, [spec.key for spec in request.jobs], [])
        v.raise_if_any()
        assert dag_id is not None
        tally = Tally()
        rows = await dags.create_jobs(
            self.db, request.namespace_id, dag_id, new_jobs, request.request_id, tally
        )
        self.metrics.record(tally)
        return dag_pb2.CreateJobsResponse(jobs=[render.job(r) for r in rows])

    async def ListDagJobs(
        self, request: dag_pb2.ListDagJobsRequest, context: Ctx
    ) -> dag_pb2.ListDagJobsResponse:
        v = Violations()
        dag_id = read_dag_ref(v, request.namespace_id, request.dag_id)
        state = state_filter(v, "state", request.state, job_pb2.Job.State.Name)
        limit = validation.page_size(v, request.page_size)
        after = ids.decode_page_token(request.page_token)
        v.raise_if_any()
        assert dag_id is not None
        rows, facts = await jobs.list_dag_page(self.db, request.namespace_id, dag_id, state, after, limit + 1)
        page, token = paginate(rows, limit, lambda r: r.key)
        return dag_pb2.ListDagJobsResponse(jobs=[render.job(r, facts) for r in page], next_page_token=token)

    async def AddDependency(self, request: dag_pb2.AddDependencyRequest, context: Ctx) -> dag_pb2.Dependency:
        v = Violations()
        dag_id = read_dag_ref(v, request.namespace_id, request.dag_id)
        parent = uuid_field(v, "parent_job_id", request.parent_job_id)
        child = uuid_field(v, "child_job_id", request.child_job_id)
        if parent is not None and parent == child:
            v.add("child_job_id", "self-edge: a job cannot depend on itself", Why.SELF_EDGE)
        v.raise_if_any()
        assert dag_id is not None and parent is not None and child is not None
        await dags.add_dependencies(self.db, request.namespace_id, dag_id, [(parent, child)], "dependency")
        return dag_pb2.Dependency(parent_job_id=str(parent), child_job_id=str(child))

    async def AddDependencies(
        self, request: dag_pb2.AddDependenciesRequest, context: Ctx
    ) -> dag_pb2.AddDependenciesResponse:
        v = Violations()
        dag_id = read_dag_ref(v, request.namespace_id, request.dag_id)
        if not request.dependencies:
            v.add("dependencies", "at least one dependency is required", Why.TOO_FEW)
        edges = read_edges(v, request.dependencies, "dependencies")
        v.raise_if_any()
        assert dag_id is not None
        await dags.add_dependencies(self.db, request.namespace_id, dag_id, edges, "dependencies")
        return dag_pb2.AddDependenciesResponse(
            dependencies=[dag_pb2.Dependency(parent_job_id=str(p), child_job_id=str(c)) for p, c in edges]
        )

    async def ListDependencies(
        self, request: dag_pb2.ListDependenciesRequest, context: Ctx
    ) -> dag_pb2.ListDependenciesResponse:
        v = Violations()
        dag_id = read_dag_ref(v, request.namespace_id, request.dag_id)
        limit = validation.page_size(v, request.page_size)
        after = _edge_token(v, request.page_token)
        v.raise_if_any()
        assert dag_id is not None
        rows = await dags.list_dependencies(self.db, request.namespace_id, dag_id, after, limit + 1)
        page, token = paginate(rows, limit, lambda r: f"{r.parent_job_id},{r.child_job_id}")
        return dag_pb2.ListDependenciesResponse(
            dependencies=[render.dependency(r) for r in page], next_page_token=token
        )

    def _ref(self, namespace_id: str, dag_id: str) -> uuid.UUID:
        v = Violations()
        parsed = read_dag_ref(v, namespace_id, dag_id)
        v.raise_if_any()
        assert parsed is not None
        return parsed


def _edge_token(v: Violations, token: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    raw = ids.decode_page_token(token)
    if raw is None:
        return None
    try:
        parent, child = raw.split(",")
        return uuid.UUID(parent), uuid.UUID(child)
    except ValueError:
        v.add("page_token", "malformed page token", Why.INVALID_FORMAT)
        return None
