"""The Python client of chronosched.

    from chronosched import Client, JobState

    with Client("127.0.0.1:50051") as client:
        client.create_namespace("team-a")
        client.create_definition("team-a", "say", "command", {"argv": ["echo", "hi"]})
        dag = client.dag("team-a", "etl")
        dag.job("extract", "say") >> dag.job("load", "say@1")
        result = dag.submit().wait(timeout=60)
        assert result.states == {"extract": JobState.SUCCEEDED, "load": JobState.SUCCEEDED}

`AsyncClient` has the same methods for asyncio. Results are frozen
dataclasses (`chronosched.types`), failures `ChronoschedError` subclasses
(`chronosched.errors`). The generated protobuf modules stay under
`chronosched.v1` for direct use of the gRPC API.

The names below are imported on first use, so importing the generated
`chronosched.v1` modules alone (as the server and the worker do) does not
load the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chronosched._async import AsyncClient
    from chronosched._calls import RetryPolicy
    from chronosched.client import Client
    from chronosched.dag import AsyncDagBuilder, AsyncDagRun, DagBuilder, DagRun, JobNode
    from chronosched.errors import (
        AlreadyExists,
        ChronoschedError,
        DeadlineExceeded,
        FailedPrecondition,
        InvalidArgument,
        NotFound,
        OtherError,
        PermissionDenied,
        Unauthenticated,
        Unavailable,
        Violation,
    )
    from chronosched.types import (
        ConnectedWorker,
        Dag,
        DagEvent,
        DagResult,
        DagState,
        Definition,
        Dependency,
        Fire,
        FireStatus,
        Health,
        Job,
        JobEvent,
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
        Waiting,
        WaitingParent,
        WaitingReason,
        WatchEvent,
    )

# Where each public name lives.
_HOME = {
    "AlreadyExists": "chronosched.errors",
    "AsyncClient": "chronosched._async",
    "AsyncDagBuilder": "chronosched.dag",
    "AsyncDagRun": "chronosched.dag",
    "ChronoschedError": "chronosched.errors",
    "Client": "chronosched.client",
    "ConnectedWorker": "chronosched.types",
    "Dag": "chronosched.types",
    "DagBuilder": "chronosched.dag",
    "DagEvent": "chronosched.types",
    "DagResult": "chronosched.types",
    "DagRun": "chronosched.dag",
    "DagState": "chronosched.types",
    "DeadlineExceeded": "chronosched.errors",
    "Definition": "chronosched.types",
    "Dependency": "chronosched.types",
    "FailedPrecondition": "chronosched.errors",
    "Fire": "chronosched.types",
    "FireStatus": "chronosched.types",
    "Health": "chronosched.types",
    "InvalidArgument": "chronosched.errors",
    "Job": "chronosched.types",
    "JobEvent": "chronosched.types",
    "JobNode": "chronosched.dag",
    "JobRun": "chronosched.types",
    "JobSpec": "chronosched.types",
    "JobState": "chronosched.types",
    "MisfirePolicy": "chronosched.types",
    "Namespace": "chronosched.types",
    "NewToken": "chronosched.types",
    "NotFound": "chronosched.errors",
    "OtherError": "chronosched.errors",
    "OverlapPolicy": "chronosched.types",
    "Page": "chronosched.types",
    "PermissionDenied": "chronosched.errors",
    "PruneResult": "chronosched.types",
    "RetryPolicy": "chronosched._calls",
    "Schedule": "chronosched.types",
    "Token": "chronosched.types",
    "TokenScope": "chronosched.types",
    "Unauthenticated": "chronosched.errors",
    "Unavailable": "chronosched.errors",
    "Violation": "chronosched.errors",
    "Waiting": "chronosched.types",
    "WaitingParent": "chronosched.types",
    "WaitingReason": "chronosched.types",
    "WatchEvent": "chronosched.types",
}

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "AsyncDagBuilder",
    "AsyncDagRun",
    "ChronoschedError",
    "Client",
    "ConnectedWorker",
    "Dag",
    "DagBuilder",
    "DagEvent",
    "DagResult",
    "DagRun",
    "DagState",
    "DeadlineExceeded",
    "Definition",
    "Dependency",
    "FailedPrecondition",
    "Fire",
    "FireStatus",
    "Health",
    "InvalidArgument",
    "Job",
    "JobEvent",
    "JobNode",
    "JobRun",
    "JobSpec",
    "JobState",
    "MisfirePolicy",
    "Namespace",
    "NewToken",
    "NotFound",
    "OtherError",
    "OverlapPolicy",
    "Page",
    "PermissionDenied",
    "PruneResult",
    "RetryPolicy",
    "Schedule",
    "Token",
    "TokenScope",
    "Unauthenticated",
    "Unavailable",
    "Violation",
    "Waiting",
    "WaitingParent",
    "WaitingReason",
    "WatchEvent",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'chronosched' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
