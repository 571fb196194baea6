"""REST side of the benchmarks: a real Envoy in front of a server's gRPC port."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from chronosched_server.local.envoy import EnvoySettings, start_envoy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def create_dag_rest(grpc_port: int, namespace_id: str, body: bytes) -> tuple[float, dict[str, Any]]:
    """POST a CreateDag JSON body through Envoy; returns (seconds, reply)."""
    settings = EnvoySettings(http_port=_free_port(), admin_port=_free_port(), upstream_port=grpc_port)
    work = Path(tempfile.mkdtemp(prefix="chronosched-bench-envoy-"))
    envoy = await asyncio.to_thread(start_envoy, settings, work)
    try:
        async with httpx.AsyncClient(timeout=300) as client:
            t0 = time.perf_counter()
            resp = await client.post(
                f"http://127.0.0.1:{settings.http_port}/api/v1/dags/{namespace_id}",
                content=body,
                headers={"content-type": "application/json"},
            )
            elapsed = time.perf_counter() - t0
        resp.raise_for_status()
        reply: dict[str, Any] = resp.json()
        return elapsed, reply
    finally:
        await asyncio.to_thread(envoy.stop)
