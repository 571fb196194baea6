"""The gRPC server process: services, health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from chronosched.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    dag_pb2,
    dag_pb2_grpc,
    definition_pb2,
    definition_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
    schedule_pb2,
    schedule_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from chronosched_server.api.admin import AdminServicer
from chronosched_server.api.dags import DagServicer
from chronosched_server.api.definitions import DefinitionServicer
from chronosched_server.api.interceptor import ErrorInterceptor
from chronosched_server.api.jobs import JobServicer
from chronosched_server.api.namespaces import NamespaceServicer
from chronosched_server.api.reflection import enable_reflection
from chronosched_server.api.schedules import ScheduleServicer
from chronosched_server.api.worker import WorkerServicer
from chronosched_server.config import Config
from chronosched_server.dispatch.dispatcher import DispatchConfig, Dispatcher
from chronosched_server.scheduler import Scheduler
from chronosched_server.scheduler.retention import Retention, RetentionConfig
from chronosched_server.storage.db import Database
from chronosched_server.storage.health import watch_database

log = logging.getLogger(__name__)

SERVICE_NAMES = [
    namespace_pb2.DESCRIPTOR.services_by_name["NamespaceService"].full_name,
    definition_pb2.DESCRIPTOR.services_by_name["DefinitionService"].full_name,
    dag_pb2.DESCRIPTOR.services_by_name["DagService"].full_name,
    job_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    schedule_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
    worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
]

# Long-lived worker streams (WorkerService.Dequeue) cross NATs and proxies: keepalive
# pings keep them open and detect dead peers; clients may ping every 10 s.
_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]


class Server:
    """One server instance: its database pool, gRPC server and health checker."""

    def __init__(self, config: Config):
        self.config = config
        self.db = Database(config.database_url, min_size=config.pool_min_size, max_size=config.pool_max_size)
        self.health = HealthServicer()
        self.grpc = grpc.aio.server(
            interceptors=[ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                *_KEEPALIVE,
            ],
        )
        namespace_pb2_grpc.add_NamespaceServiceServicer_to_server(NamespaceServicer(self.db), self.grpc)
        definition_pb2_grpc.add_DefinitionServiceServicer_to_server(DefinitionServicer(self.db), self.grpc)
        dag_pb2_grpc.add_DagServiceServicer_to_server(DagServicer(self.db), self.grpc)
        job_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(self.db), self.grpc)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(self.db), self.grpc)
        schedule_pb2_grpc.add_ScheduleServiceServicer_to_server(ScheduleServicer(self.db), self.grpc)
        self.dispatcher = Dispatcher(
            self.db,
            config.database_url,
            DispatchConfig(
                lease=timedelta(seconds=config.lease_s),
                poll_interval_s=config.poll_interval_s,
                reap_interval_s=config.reap_interval_s,
            ),
        )
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServicer(self.dispatcher), self.grpc)
        self.scheduler = Scheduler(self.db, config.database_url) if config.scheduler_enabled else None
        # Started only with a retention (0 means never prune).
        self.retention = Retention(
            self.db,
            config.database_url,
            RetentionConfig(
                retention=config.retention,
                interval_s=config.retention_interval_s,
                batch=config.retention_batch,
            ),
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        enable_reflection(
            self.grpc, [*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        )
        self.port = 0
        self._health_task: asyncio.Task[None] | None = None
        self._serving = False

    async def start(self) -> int:
        """Open the pool and listen; returns the bound port (useful with port 0)."""
        await self.db.open()
        self.port = self.grpc.add_insecure_port(f"{self.config.grpc_host}:{self.config.grpc_port}")
        await self.grpc.start()
        await self.dispatcher.start()
        if self.scheduler is not None:
            await self.scheduler.start()
        await self.retention.start()
        self._serving = await self.db.ping()
        await self._set_serving(self._serving)
        self._health_task = asyncio.create_task(
            watch_database(
                self.config.database_url,
                self._database_changed,
                ping_interval_s=self.config.health_ping_interval_s,
                timeout_s=self.config.health_timeout_s,
                retry_interval_s=self.config.health_retry_interval_s,
            )
        )
        log.info("chronosched gRPC server listening on %s:%d", self.config.grpc_host, self.port)
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        if self._health_task:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self._set_serving(False)
        await self.retention.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.dispatcher.stop()
        await self.grpc.stop(grace)
        await self.db.close()

    async def _set_serving(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *SERVICE_NAMES]:
            await self.health.set(name, status)

    async def _database_changed(self, up: bool) -> None:
        """NOT_SERVING while the database is unreachable, so balancers look elsewhere."""
        if up != self._serving:
            if up:
                log.info("database reachable; health is SERVING")
            else:
                log.warning("database unreachable; health is NOT_SERVING")
        self._serving = up
        await self._set_serving(up)


async def serve(config: Config) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully."""
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("stopping chronosched gRPC server")
    await server.stop()
