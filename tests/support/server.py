"""The server in-process on a free port, against a fresh database: `serving`
and the `api` / `api_without_scheduler` fixtures built on it (a conftest.py
imports the fixtures to offer them to its folder)."""

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
    token_pb2_grpc,
    worker_pb2_grpc,
)
from chronosched_server.app import Server
from chronosched_server.config import Config
from tests.support.grpc_helpers import CHANNEL_OPTIONS


@dataclass
class Stubs:
    channel: grpc.aio.Channel
    namespaces: namespace_pb2_grpc.NamespaceServiceAsyncStub
    definitions: definition_pb2_grpc.DefinitionServiceAsyncStub
    dags: dag_pb2_grpc.DagServiceAsyncStub
    jobs: job_pb2_grpc.JobServiceAsyncStub
    admin: admin_pb2_grpc.AdminServiceAsyncStub
    server: Server

    @classmethod
    def over(cls, channel: grpc.aio.Channel, server: Server) -> Stubs:
        """Every service's stub on `channel`, a channel to `server`."""
        return cls(
            channel=channel,
            namespaces=namespace_pb2_grpc.NamespaceServiceStub(channel),
            definitions=definition_pb2_grpc.DefinitionServiceStub(channel),
            dags=dag_pb2_grpc.DagServiceStub(channel),
            jobs=job_pb2_grpc.JobServiceStub(channel),
            admin=admin_pb2_grpc.AdminServiceStub(channel),
            server=server,
        )

    @property
    def schedules(self) -> schedule_pb2_grpc.ScheduleServiceAsyncStub:
        return schedule_pb2_grpc.ScheduleServiceStub(self.channel)

    @property
    def tokens(self) -> token_pb2_grpc.TokenServiceAsyncStub:
        return token_pb2_grpc.TokenServiceStub(self.channel)

    @property
    def workers(self) -> worker_pb2_grpc.WorkerServiceAsyncStub:
        return worker_pb2_grpc.WorkerServiceStub(self.channel)


@asynccontextmanager
async def serving(database_url: str, **config: Any) -> AsyncIterator[Stubs]:
    """A server with `config` (on top of the database and a free port) and stubs to it."""
    server = Server(Config(database_url=database_url, grpc_port=0, **config))
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
            yield Stubs.over(channel, server)
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Stubs]:
    async with serving(database_url) as stubs:
        yield stubs


@pytest.fixture
async def api_without_scheduler(database_url: str) -> AsyncIterator[Stubs]:
    """The server with its cron scheduler off: tests drive schedulers of their own."""
    async with serving(database_url, scheduler_enabled=False) as stubs:
        yield stubs
