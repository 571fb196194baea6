"""Builders and failure checks for tests of the in-process API (`Stubs`)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from chronosched.v1 import dag_pb2, definition_pb2, namespace_pb2
from tests.support.server import Stubs


async def namespace(api: Stubs, namespace_id: str = "team-a") -> str:
    await api.namespaces.CreateNamespace(namespace_pb2.CreateNamespaceRequest(namespace_id=namespace_id))
    return namespace_id


async def definition(api: Stubs, ns: str, name: str = "noop", **fields: Any) -> definition_pb2.JobDefinition:
    fields.setdefault("kind", "noop")
    return await api.definitions.CreateDefinition(
        definition_pb2.CreateDefinitionRequest(namespace_id=ns, name=name, **fields)
    )


async def dag(
    api: Stubs,
    ns: str,
    def_id: str,
    keys: str | list[str],
    edges: list[tuple[str, str]],
    *,
    start: bool = True,
) -> dag_pb2.Dag:
    return await api.dags.CreateDag(
        dag_pb2.CreateDagRequest(
            namespace_id=ns,
            name="test",
            jobs=[dag_pb2.JobSpec(key=k, def_id=def_id) for k in keys],
            dependencies=[dag_pb2.DagEdge(parent=p, child=c) for p, c in edges],
            start=start,
        )
    )


async def dag_jobs(api: Stubs, ns: str, dag_id: str) -> dict[str, Any]:
    """key -> Job for every job of the DAG."""
    resp = await api.dags.ListDagJobs(
        dag_pb2.ListDagJobsRequest(namespace_id=ns, dag_id=dag_id, page_size=1000)
    )
    return {j.key: j for j in resp.jobs}


class RpcFailure:
    def __init__(self, err: grpc.aio.AioRpcError):
        self.code = err.code()
        self.message = err.details() or ""
        self.reason = ""
        self.fields: list[str] = []
        # field -> the violation's machine-readable reason
        self.why: dict[str, str] = {}
        self.metadata: dict[str, str] = {}
        for key, value in err.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    info = error_details_pb2.ErrorInfo()
                    bad = error_details_pb2.BadRequest()
                    if detail.Unpack(info):
                        self.reason = info.reason
                        self.metadata = dict(info.metadata)
                    elif detail.Unpack(bad):
                        self.fields = [v.field for v in bad.field_violations]
                        self.why = {v.field: v.reason for v in bad.field_violations}


async def fails(call: Any, code: grpc.StatusCode) -> RpcFailure:
    """Await `call`, which must fail with `code`; returns the parsed failure."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    failure = RpcFailure(info.value)
    assert failure.code == code, f"expected {code}, got {failure.code}: {failure.message}"
    return failure
