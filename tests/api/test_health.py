"""The standard gRPC health service on the server: Check and Watch."""

from __future__ import annotations

from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)

SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_check_and_watch_answer_serving(api: Stubs) -> None:
    health: Any = health_pb2_grpc.HealthStub(api.channel)
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING
    # Watch streams the current status first. It writes with context.write()
    # instead of yielding, which the error interceptor once turned into
    # INTERNAL for every watcher (load balancers and Kubernetes use Watch).
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
    first = await watch.read()
    assert first.status == SERVING
    watch.cancel()
