"""Fixtures for the Python client's tests.

The blocking `Client` cannot share an event loop with the server it calls
(a blocking call would stop the loop that must answer it), so `server`
runs the in-process server of tests/support/server.py (`serving`) on an
event loop of its own, in a thread. The async tests use the same fixture.

`Running.open_worker` opens a bare worker stream (tests/support's
RawWorker) on the server's loop: a connected worker for ListWorkers and
Job.waiting, without a worker process.

`proxy` / `tls_proxy` put a `Proxy` in front of it: a gRPC server that
forwards every unary call byte for byte, records what it saw (method,
request bytes, authorization metadata), and can be told to fail a method's
next calls with UNAVAILABLE before forwarding them (the server never saw
them), after forwarding them (the server acted, the answer is lost), or to
hold them for a while (deadlines).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from chronosched.v1 import worker_pb2_grpc
from chronosched_server.app import Server
from tests.support.grpc_helpers import CHANNEL_OPTIONS, RawWorker
from tests.support.server import serving
from tests.support.waiting import poll

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; `run` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="server-loop", daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        async def wrapped() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _same(data: bytes) -> bytes:
    return data


@dataclass
class Seen:
    """One call as the proxy saw it."""

    method: str  # the short name, e.g. "CreateDag"
    request: bytes
    authorization: str | None


@dataclass
class Proxy:
    """See the module docstring. Plans are set from the test thread and read
    on the server loop, under `lock`."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    fail_before: dict[str, int] = field(default_factory=dict)
    lose_after: dict[str, int] = field(default_factory=dict)
    hold: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def calls(self, method: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == method]

    def _take(self, plan: dict[str, int], method: str) -> bool:
        with self.lock:
            left = plan.get(method, 0)
            if left > 0:
                plan[method] = left - 1
            return left > 0

    def handler(self, upstream: grpc.aio.Channel) -> grpc.GenericRpcHandler:
        proxy = self

        async def forward(request: bytes, context: grpc.aio.ServicerContext[Any, Any], path: str) -> bytes:
            method = path.rsplit("/", 1)[1]
            metadata = dict(context.invocation_metadata() or ())
            auth = metadata.get("authorization")
            with proxy.lock:
                proxy.seen.append(Seen(method, request, auth if isinstance(auth, str) else None))
                hold = proxy.hold.get(method, 0.0)
            if proxy._take(proxy.fail_before, method):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy: failed before forwarding")
            if hold:
                await asyncio.sleep(hold)
            try:
                response: bytes = await upstream.unary_unary(path, _same, _same)(
                    request, metadata=(("authorization", auth),) if isinstance(auth, str) else None
                )
            except grpc.aio.AioRpcError as exc:
                trailing = tuple((k, v) for k, v in (exc.trailing_metadata() or ()))
                await context.abort(exc.code(), exc.details() or "", trailing_metadata=trailing)
            if proxy._take(proxy.lose_after, method):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy: answer lost after forwarding")
            return response

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> Any:
                path = details.method

                async def behaviour(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
                    return await forward(request, context, path)

                return grpc.unary_unary_rpc_method_handler(behaviour)

        return Handler()


@dataclass
class Stream:
    """A worker stream open on the server's loop (see `Running.open_worker`)."""

    running: Running
    worker: RawWorker

    def assignment(self, within: float = 10.0) -> Any:
        """The next job assigned to the worker (a worker_pb2.Assignment)."""
        return self.running.loop.run(lambda: self.worker.next("assignment", within))

    def close(self) -> None:
        """End the stream; the server drops its ListWorkers row at once."""
        self.running.loop.run(self.worker.close)


@dataclass
class Running:
    """The server in its thread, and how to reach it."""

    loop: LoopThread
    port: int
    stack: AsyncExitStack
    #: The server object; None where a fixture does not hand it over
    #: (tests/support/auth.py), and then `open_worker` is not available.
    app: Server | None = None

    @property
    def _app(self) -> Server:
        assert self.app is not None, "this fixture's Running has no server object"
        return self.app

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def open_worker(self, **subscribe: Any) -> Stream:
        """Subscribe a bare worker (`subscribe`: the Subscribe's fields) and
        return once the server lists it. Closed with the server at the latest."""
        dispatcher = self._app.dispatcher
        worker_id = subscribe["worker_id"]

        async def start() -> RawWorker:
            channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            self.stack.push_async_callback(channel.close)
            worker = RawWorker(worker_pb2_grpc.WorkerServiceStub(channel), **subscribe)
            await worker.start()
            self.stack.push_async_callback(worker.close)

            async def registered() -> bool:
                return any(s.worker_id == worker_id and not s.closed for s in dispatcher.streams)

            await poll(registered, within=10, what=f"the stream of {worker_id}")
            # The server publishes a new stream at once, from a task of its
            # own: publishing it here too means it is listed on return.
            await dispatcher.presence.sync()
            return worker

        return Stream(self, self.loop.run(start))

    def publish_workers(self) -> None:
        """Make the server write its streams' counts now, not at the next
        heartbeat interval (jobs in flight lag by up to one interval)."""
        self.loop.run(self._app.dispatcher.presence.sync)

    def start_proxy(self, credentials: grpc.ServerCredentials | None = None) -> Proxy:
        proxy = Proxy()

        async def start() -> int:
            upstream = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            self.stack.push_async_callback(upstream.close)
            server = grpc.aio.server(options=CHANNEL_OPTIONS)
            server.add_generic_rpc_handlers((proxy.handler(upstream),))
            if credentials is None:
                port = server.add_insecure_port("127.0.0.1:0")
            else:
                port = server.add_secure_port("127.0.0.1:0", credentials)
            await server.start()
            self.stack.push_async_callback(server.stop, 0)
            return port

        proxy.port = self.loop.run(start)
        return proxy


@pytest.fixture
def server(database_url: str) -> Iterator[Running]:
    """The in-process server against a fresh database, on a loop of its own."""
    loop = LoopThread()
    stack = AsyncExitStack()

    async def start() -> Server:
        stubs = await stack.enter_async_context(serving(database_url))
        return stubs.server

    try:
        app = loop.run(start)
        yield Running(loop, app.port, stack, app)
    finally:
        loop.run(stack.aclose)
        loop.close()


@pytest.fixture
def proxy(server: Running) -> Proxy:
    """A plain-text proxy in front of `server`."""
    return server.start_proxy()


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    cert: bytes
    key: bytes


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "1",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, cert.read_bytes(), key.read_bytes())


@pytest.fixture
def tls_proxy(server: Running, certificate: Certificate) -> Proxy:
    """A TLS proxy in front of `server`, serving `certificate`."""
    credentials = grpc.ssl_server_credentials([(certificate.key, certificate.cert)])
    return server.start_proxy(credentials)
