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


async def test_the_whole_server_is_serving_only_once_every_service_is(
    api: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overall status ("") flips to SERVING after every service and to
    NOT_SERVING before them: a client that reads "" as SERVING finds each
    service SERVING too (a start-up check once found them still unset)."""
    server = api.server
    seen: list[tuple[str, int]] = []
    real_set = server.health.set

    async def recording_set(name: str, status: Any) -> None:
        seen.append((name, status))
        await real_set(name, status)

    monkeypatch.setattr(server.health, "set", recording_set)
    await server._database_changed(False)
    down = [name for name, _ in seen]
    seen.clear()
    await server._database_changed(True)
    up = [name for name, _ in seen]
    # Down: "" first, then each service once. Up: the same names, "" last.
    assert len(down) > 1 and down[0] == "" and "" not in down[1:] and len(set(down)) == len(down)
    assert sorted(up) == sorted(down) and up[-1] == ""
    health: Any = health_pb2_grpc.HealthStub(api.channel)
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING
