"""JobService."""

from __future__ import annotations

from typing import Any

import grpc

from chronosched.v1 import job_pb2, job_pb2_grpc
from chronosched_server import render, validation
from chronosched_server.api.auth import caller
from chronosched_server.api.common import (
    paginate,
    read_runs,
    state_filter,
    to_dict,
    uuid_field,
    uuid_token,
    within_job_limit,
)
from chronosched_server.errors import Why
from chronosched_server.metrics import Metrics
from chronosched_server.storage import jobs
from chronosched_server.storage.db import Database
from chronosched_server.storage.metrics import Tally
from chronosched_server.validation import Violations

Ctx = grpc.aio.ServicerContext[Any, Any]


def _attempt(v: Violations, request: job_pb2.CompleteJobRequest | job_pb2.FailJobRequest) -> int | None:
    if not request.HasField("attempt"):
        return None
    if request.attempt < 1:
        v.add("attempt", f"attempt numbers start at 1, got {request.attempt}", Why.OUT_OF_RANGE)
    return request.attempt


def _namespace(v: Violations, request: job_pb2.CompleteJobRequest | job_pb2.FailJobRequest) -> str | None:
    """The namespace the job must be in: the request's, else the caller's
    token's (None: any). The auth interceptor has checked that the token
    covers a namespace the request names."""
    if request.namespace_id:
        validation.check_slug(v, "namespace_id", request.namespace_id)
        return request.namespace_id
    return caller().namespace


class JobServicer(job_pb2_grpc.JobServiceServicer):
    def __init__(self, db: Database, metrics: Metrics | None = None):
        self.db = db
        self.metrics = metrics or Metrics()

    async def GetJob(self, request: job_pb2.GetJobRequest, context: Ctx) -> job_pb2.Job:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        job_id = uuid_field(v, "job_id", request.job_id)
        v.raise_if_any()
        assert job_id is not None
        row, facts = await jobs.get(self.db, request.namespace_id, job_id)
        return render.job(row, facts)

    async def ListJobs(self, request: job_pb2.ListJobsRequest, context: Ctx) -> job_pb2.ListJobsResponse:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        state = state_filter(v, "state", request.state, job_pb2.Job.State.Name)
        dag_id = uuid_field(v, "dag_id", request.dag_id, required=False)
        def_id = uuid_field(v, "def_id", request.def_id, required=False)
        limit = validation.page_size(v, request.page_size)
        after = uuid_token(v, request.page_token)
        v.raise_if_any()
        rows, facts = await jobs.list_page(
            self.db,
            request.namespace_id,
            state=state,
            dag_id=dag_id,
            def_id=def_id,
            after=after,
            limit=limit + 1,
        )
        page, token = paginate(rows, limit, lambda r: str(r.job_id))
        return job_pb2.ListJobsResponse(jobs=[render.job(r, facts) for r in page], next_page_token=token)

    async def EnqueueJobs(
        self, request: job_pb2.EnqueueJobsRequest, context: Ctx
    ) -> job_pb2.EnqueueJobsResponse:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        validation.check_pattern(
            v, "request_id", request.request_id, validation.REQUEST_ID_RE, required=False
        )
        runs = []
        if not request.jobs:
            v.add("jobs", "required: at least one run", Why.REQUIRED)
        elif within_job_limit(v, len(request.jobs)):
            runs = read_runs(v, request.jobs, [""] * len(request.jobs))
        v.raise_if_any()
        tally = Tally()
        ids = await jobs.enqueue(self.db, request.namespace_id, runs, request.request_id, tally)
        self.metrics.record(tally)
        return job_pb2.EnqueueJobsResponse(job_ids=ids)

    async def CompleteJob(self, request: job_pb2.CompleteJobRequest, context: Ctx) -> job_pb2.Job:
        v = Violations()
        job_id = uuid_field(v, "job_id", request.job_id)
        attempt = _attempt(v, request)
        validation.check_json_object(v, "result", request.result)
        namespace_id = _namespace(v, request)
        v.raise_if_any()
        assert job_id is not None
        tally = Tally()
        row = await jobs.complete(
            self.db, job_id, attempt, to_dict(request.result), namespace_id=namespace_id, tally=tally
        )
        self.metrics.record(tally)
        return render.job(row)

    async def FailJob(self, request: job_pb2.FailJobRequest, context: Ctx) -> job_pb2.Job:
        v = Violations()
        job_id = uuid_field(v, "job_id", request.job_id)
        attempt = _attempt(v, request)
        validation.check_text(v, "error", request.error, validation.MAX_ERROR_CHARS)
        namespace_id = _namespace(v, request)
        v.raise_if_any()
        assert job_id is not None
        tally = Tally()
        row = await jobs.fail(
            self.db,
            job_id,
            attempt,
            request.error,
            non_retryable=request.non_retryable,
            namespace_id=namespace_id,
            tally=tally,
        )
        self.metrics.record(tally)
        return render.job(row)
