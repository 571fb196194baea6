"""The gRPC server process: services, health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
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
    token_pb2,
    token_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from chronosched_server import eventloop
from chronosched_server.api.admin import AdminServicer
from chronosched_server.api.auth import AuthInterceptor, Verifier
from chronosched_server.api.dags import DagServicer
from chronosched_server.api.definitions import DefinitionServicer
from chronosched_server.api.interceptor import ErrorInterceptor
from chronosched_server.api.jobs import JobServicer
from chronosched_server.api.namespaces import NamespaceServicer
from chronosched_server.api.reflection import enable_reflection
from chronosched_server.api.schedules import ScheduleServicer
from chronosched_server.api.tokens import TokenServicer
from chronosched_server.api.worker import WorkerServicer
from chronosched_server.config import Config, host_port
from chronosched_server.dispatch.dispatcher import DispatchConfig, Dispatcher
from chronosched_server.metrics import FrontierCollector, Metrics, PoolCollector, StreamCollector
from chronosched_server.quotas import QuotaConfig, Quotas
from chronosched_server.scheduler import Scheduler
from chronosched_server.scheduler.retention import Retention, RetentionConfig
from chronosched_server.storage.db import Database
from chronosched_server.storage.health import watch_database
from chronosched_server.storage.metrics import frontier_counts, pool_stats
from chronosched_server.waits import cancel_all

log = logging.getLogger(__name__)

SERVICE_NAMES = [
    namespace_pb2.DESCRIPTOR.services_by_name["NamespaceService"].full_name,
    definition_pb2.DESCRIPTOR.services_by_name["DefinitionService"].full_name,
    dag_pb2.DESCRIPTOR.services_by_name["DagService"].full_name,
    job_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    schedule_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
    worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    token_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
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


class TlsError(ValueError):
    """The TLS files cannot be used: the message names the file and why."""


class ListenError(OSError):
    """An address the server was told to listen on cannot be bound (another
    process holds the port, or the host is not this machine's)."""


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    """The listener's TLS credentials from `config`, or None for plaintext.

    The files are checked here with Python's ssl module (readable PEM, the key
    matching the certificate), so a mistake stops the start with a message
    instead of surfacing as handshake failures at every client.
    """
    if config.tls_cert is None and config.tls_key is None:
        if config.tls_client_ca is not None:
            raise TlsError("a client CA needs the server's own certificate and key too")
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise TlsError("TLS needs both a certificate and its key")
    check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        check.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use certificate {config.tls_cert} with key {config.tls_key}: {exc}") from exc
    client_ca: bytes | None = None
    if config.tls_client_ca is not None:
        try:
            check.load_verify_locations(cafile=config.tls_client_ca)
            client_ca = config.tls_client_ca.read_bytes()
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot use client CA {config.tls_client_ca}: {exc}") from exc
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=client_ca,
        # With a client CA, a client without a certificate it issued fails
        # the handshake: nothing unauthenticated reaches a servicer.
        require_client_auth=client_ca is not None,
    )


class Server:
    """One server instance: its database pool, gRPC server and health checker."""

    def __init__(self, config: Config):
        self.config = config
        # Checked before anything opens, so bad TLS files fail the start.
        self._credentials = server_credentials(config)
        self.db = Database(config.database_url, min_size=config.pool_min_size, max_size=config.pool_max_size)
        self.health = HealthServicer()
        self.metrics = Metrics()
        self.metrics.add(PoolCollector(lambda: pool_stats(self.db)))
        # Errors outermost: the auth interceptor's refusals become statuses
        # like any other domain error.
        verifier = Verifier(self.db, config.admin_token) if config.require_tokens else None
        self.grpc = grpc.aio.server(
            interceptors=[
                ErrorInterceptor(self.metrics),
                AuthInterceptor(
                    verifier,
                    config.token_recheck_s,
                    Quotas(
                        QuotaConfig(
                            rate=config.rate_limit,
                            burst=config.rate_burst,
                            max_streams=config.max_streams_per_caller,
                        )
                    ),
                ),
            ],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                # gRPC sets SO_REUSEPORT by default on Linux: a second server
                # on a taken port would bind and the kernel would split the
                # connections between the two. Off, the second one fails.
                ("grpc.so_reuseport", 0),
                *_KEEPALIVE,
            ],
        )
        namespace_pb2_grpc.add_NamespaceServiceServicer_to_server(NamespaceServicer(self.db), self.grpc)
        dag_pb2_grpc.add_DagServiceServicer_to_server(DagServicer(self.db, self.metrics), self.grpc)
        job_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(self.db, self.metrics), self.grpc)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(self.db), self.grpc)
        schedule_pb2_grpc.add_ScheduleServiceServicer_to_server(ScheduleServicer(self.db), self.grpc)
        token_pb2_grpc.add_TokenServiceServicer_to_server(TokenServicer(self.db), self.grpc)
        self.dispatcher = Dispatcher(
            self.db,
            config.database_url,
            DispatchConfig(
                lease=timedelta(seconds=config.lease_s),
                poll_interval_s=config.poll_interval_s,
                reap_interval_s=config.reap_interval_s,
            ),
            self.metrics,
        )
        self.metrics.add(StreamCollector(self.dispatcher.stream_counts))
        definition_pb2_grpc.add_DefinitionServiceServicer_to_server(
            DefinitionServicer(self.db, self.metrics, self.dispatcher), self.grpc
        )
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServicer(self.dispatcher), self.grpc)
        self.scheduler = (
            Scheduler(self.db, config.database_url, metrics=self.metrics)
            if config.scheduler_enabled
            else None
        )
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
        # The bound /metrics port once started (None: not served).
        self.metrics_port: int | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._serving = False

    async def start(self) -> int:
        """Listen and open the pool; returns the bound port (useful with port 0).

        The port is bound before anything opens, so a taken port fails the
        start at once. Whatever a failed start opened is closed before the
        error leaves: a psycopg pool left open keeps retrying its connections
        through the event loop's shutdown, and the process never exits.
        """
        try:
            if self._credentials is None:
                self.port = self.grpc.add_insecure_port(self.config.grpc_address)
            else:
                self.port = self.grpc.add_secure_port(self.config.grpc_address, self._credentials)
        except RuntimeError as exc:
            # gRPC's own error says only "Failed to bind" (its log line has the errno).
            raise ListenError(
                f"cannot listen on {self.config.grpc_address}: the port is taken, "
                "or the host is not an address of this machine"
            ) from exc
        await self.db.open()
        try:
            await self._start_opened()
        except BaseException:
            await self.stop(grace=0)
            raise
        return self.port

    async def _start_opened(self) -> None:
        await self.grpc.start()
        await self.dispatcher.start()
        if self.scheduler is not None:
            await self.scheduler.start()
        await self.retention.start()
        if self.config.metrics_port is not None:
            # Registered here: the frontier query runs on this event loop.
            self.metrics.add(FrontierCollector(asyncio.get_running_loop(), lambda: frontier_counts(self.db)))
            address = host_port(self.config.grpc_host, self.config.metrics_port)
            try:
                self.metrics_port = self.metrics.serve(self.config.grpc_host, self.config.metrics_port)
            except OSError as exc:
                raise ListenError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from exc
            log.info(
                "metrics on http://%s/metrics",
                host_port(self.config.grpc_host, self.metrics_port),
                extra={"event": "metrics_started", "port": self.metrics_port},
            )
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
        loop = eventloop.running()
        log.info(
            "chronosched gRPC server listening on %s (%s; event loop %s)",
            host_port(self.config.grpc_host, self.port),
            "plaintext"
            if self._credentials is None
            else "TLS, client certificates required"
            if self.config.tls_client_ca is not None
            else "TLS",
            loop,
            extra={
                "event": "server_started",
                "address": host_port(self.config.grpc_host, self.port),
                "event_loop": loop,
            },
        )
        self.announce_auth()

    def announce_auth(self) -> None:
        """Say at start whether calls need tokens: loudly when they do not."""
        if not self.config.require_tokens:
            log.warning(
                "tokens are NOT required (--insecure-no-auth): every caller that reaches %s may do "
                "everything, in every namespace (docs/security.md)",
                host_port(self.config.grpc_host, self.port),
            )
        elif self.config.admin_token is None:
            log.info(
                "tokens required; no CHRONOSCHED_ADMIN_TOKEN, so only tokens stored in the database work"
            )
        else:
            log.info("tokens required; CHRONOSCHED_ADMIN_TOKEN is accepted as an admin token")

    async def stop(self, grace: float = 5.0) -> None:
        if self._health_task:
            await cancel_all([self._health_task])
        await self._set_serving(False)
        await self.retention.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.dispatcher.stop()
        await self.grpc.stop(grace)
        # Off the event loop: shutting the HTTP thread down waits for a
        # scrape in progress, which may be waiting on this loop.
        if self.metrics_port is not None:
            await asyncio.to_thread(self.metrics.stop)
        await self.db.close()

    async def _set_serving(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        # The whole server ("") flips to SERVING last and to NOT_SERVING
        # first: each `set` may yield, and whoever reads "" as SERVING must
        # find every service SERVING too (a test saw them still unset).
        names = [*SERVICE_NAMES, ""] if ok else ["", *SERVICE_NAMES]
        for name in names:
            await self.health.set(name, status)

    async def _database_changed(self, up: bool) -> None:
        """NOT_SERVING while the database is unreachable, so balancers look elsewhere."""
        if up != self._serving:
            if up:
                log.info("database reachable; health is SERVING", extra={"event": "health_serving"})
            else:
                log.warning(
                    "database unreachable; health is NOT_SERVING", extra={"event": "health_not_serving"}
                )
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
    # What starting made (modules, protobuf descriptors, the pool) lives as
    # long as the process: frozen, the collector's full passes skip it
    # (docs/performance.md, "Server CPU per job").
    gc.freeze()
    await stop.wait()
    log.info("stopping chronosched gRPC server", extra={"event": "server_stopping"})
    await server.stop()
