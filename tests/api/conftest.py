"""In-process gRPC server on a free port, against a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from chronosched.v1 import (
    admin_pb2_grpc,
    dag_pb2_grpc,
    definition_pb2_grpc,
    job_pb2_grpc,
    namespace_pb2_grpc,
    schedule_pb2_grpc,
)
from chronosched_server.app import Server
from chronosched_server.config import Config


@dataclass
class Stubs:
    channel: grpc.aio.Channel
    namespaces: namespace_pb2_grpc.NamespaceServiceAsyncStub
    definitions: definition_pb2_grpc.DefinitionServiceAsyncStub
    dags: dag_pb2_grpc.DagServiceAsyncStub
    jobs: job_pb2_grpc.JobServiceAsyncStub
    admin: admin_pb2_grpc.AdminServiceAsyncStub
    server: Server

    @property
    def schedules(self) -> schedule_pb2_grpc.ScheduleServiceAsyncStub:
        return schedule_pb2_grpc.ScheduleServiceStub(self.channel)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Stubs]:
    async with serving(database_url) as stubs:
        yield stubs


@pytest.fixture
async def api_without_scheduler(database_url: str) -> AsyncIterator[Stubs]:
    """The server with its cron scheduler off: tests drive schedulers of their own."""
    async with serving(database_url, scheduler_enabled=False) as stubs:
        yield stubs


@asynccontextmanager
async def serving(database_url: str, **config: Any) -> AsyncIterator[Stubs]:
    server = Server(Config(database_url=database_url, grpc_port=0, **config))
    port = await server.start()
    opts = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as channel:
            yield Stubs(
                channel=channel,
                namespaces=namespace_pb2_grpc.NamespaceServiceStub(channel),
                definitions=definition_pb2_grpc.DefinitionServiceStub(channel),
                dags=dag_pb2_grpc.DagServiceStub(channel),
                jobs=job_pb2_grpc.JobServiceStub(channel),
                admin=admin_pb2_grpc.AdminServiceStub(channel),
                server=server,
            )
    finally:
        await server.stop(grace=0)
