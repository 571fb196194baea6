"""Processes, clients and polling for the fault tests.

- `ServerProc`: a real `python -m chronosched_server server` process.
- `WorkerProc`: a real worker process (`tests.faults.worker_proc`, or the
  stock `python -m chronosched_worker`), killable with any signal.
- `Api`: async stubs of every service over one channel.
- `RawWorker`: a bare Dequeue stream driven by hand (protocol-level faults).
- `poll`: wait for a condition on job/DAG state with a deadline (never a
  fixed sleep).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
from google.protobuf import duration_pb2, struct_pb2
from grpc_health.v1 import health_pb2
from psycopg.rows import DictRow, dict_row

from chronosched.v1 import (
    dag_pb2,
    dag_pb2_grpc,
    definition_pb2,
    definition_pb2_grpc,
    job_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 256 << 20),
    ("grpc.max_receive_message_length", 256 << 20),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(value * 1e9))
    return out


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCHED_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


async def poll(
    check: Callable[[], Awaitable[T | None]], *, within: float, what: str, every: float = 0.05
) -> T:
    """Await `check()` until it returns something other than None/False; fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(every)


def pid_running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the parenthesised command name.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- database reads -----------------------------------------------------------


async def fetch(database_url: str, query: str, params: Sequence[Any] = ()) -> list[DictRow]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def jobs_by_key(database_url: str, dag_id: str) -> dict[str, DictRow]:
    rows = await fetch(
        database_url,
        "select job_id::text, key, state, attempt, pending_parents, result, error, end_time, worker_id"
        " from jobs where dag_id = %s",
        (dag_id,),
    )
    return {r["key"]: r for r in rows}


async def job_row(database_url: str, job_id: str) -> DictRow:
    rows = await fetch(
        database_url,
        "select job_id::text, key, state, attempt, pending_parents, result, error, end_time, worker_id"
        " from jobs where job_id = %s",
        (job_id,),
    )
    assert rows, f"job {job_id} not found"
    return rows[0]


async def dag_state(database_url: str, dag_id: str) -> str:
    rows = await fetch(database_url, "select state from dags where dag_id = %s", (dag_id,))
    state: str = rows[0]["state"]
    return state


async def wait_dag(database_url: str, dag_id: str, states: set[str], *, within: float) -> str:
    async def check() -> str | None:
        state = await dag_state(database_url, dag_id)
        return state if state in states else None

    return await poll(check, within=within, what=f"DAG {dag_id} to reach {sorted(states)}")


async def wait_job(database_url: str, job_id: str, states: set[str], *, within: float) -> DictRow:
    async def check() -> DictRow | None:
        row = await job_row(database_url, job_id)
        return row if row["state"] in states else None

    return await poll(check, within=within, what=f"job {job_id} to reach {sorted(states)}")


# --- gRPC ---------------------------------------------------------------------


@dataclass
class Api:
    channel: grpc.aio.Channel
    namespaces: namespace_pb2_grpc.NamespaceServiceAsyncStub
    definitions: definition_pb2_grpc.DefinitionServiceAsyncStub
    dags: dag_pb2_grpc.DagServiceAsyncStub
    jobs: job_pb2_grpc.JobServiceAsyncStub
    workers: worker_pb2_grpc.WorkerServiceAsyncStub

    @classmethod
    def connect(cls, target: str) -> Api:
        channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        return cls(
            channel=channel,
            namespaces=namespace_pb2_grpc.NamespaceServiceStub(channel),
            definitions=definition_pb2_grpc.DefinitionServiceStub(channel),
            dags=dag_pb2_grpc.DagServiceStub(channel),
            jobs=job_pb2_grpc.JobServiceStub(channel),
            workers=worker_pb2_grpc.WorkerServiceStub(channel),
        )

    async def close(self) -> None:
        await self.channel.close()

    async def namespace(self, ns: str = "faults") -> str:
        await self.namespaces.CreateNamespace(namespace_pb2.CreateNamespaceRequest(namespace_id=ns))
        return ns

    async def definition(
        self, ns: str, name: str, kind: str = "logged", payload: dict[str, Any] | None = None, **fields: Any
    ) -> str:
        d = await self.definitions.CreateDefinition(
            definition_pb2.CreateDefinitionRequest(
                namespace_id=ns, name=name, kind=kind, payload_template=struct(payload or {}), **fields
            )
        )
        return d.def_id

    async def dag(
        self,
        ns: str,
        jobs: Sequence[tuple[str, str, dict[str, Any]]],
        edges: Sequence[tuple[str, str]] = (),
        *,
        start: bool = True,
    ) -> str:
        """jobs: (key, def_id, payload); returns the DAG id."""
        created = await self.dags.CreateDag(
            dag_pb2.CreateDagRequest(
                namespace_id=ns,
                name="faults",
                jobs=[dag_pb2.JobSpec(key=k, def_id=d, payload=struct(p)) for k, d, p in jobs],
                dependencies=[dag_pb2.DagEdge(parent=p, child=c) for p, c in edges],
                start=start,
            )
        )
        return created.dag_id

    async def tick(self, ns: str, def_id: str, payload: dict[str, Any] | None = None) -> str:
        job = await self.definitions.Tick(
            definition_pb2.TickRequest(namespace_id=ns, def_id=def_id, payload=struct(payload or {}))
        )
        return job.job_id


async def wait_serving(target: str, *, within: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll the standard health service until SERVING (fail fast if `proc` exits)."""
    async with grpc.aio.insecure_channel(target) as channel:
        # The method itself: the typeshed HealthStub declares no methods.
        health_check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

        async def check() -> bool:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"server process exited with {proc.returncode} before serving")
            try:
                resp = await health_check(health_pb2.HealthCheckRequest(), timeout=1.0)
            except grpc.aio.AioRpcError:
                return False
            return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

        await poll(check, within=within, what=f"server at {target} to serve", every=0.1)


def frame_items(msg: worker_pb2.DequeueResponse) -> list[tuple[str, Any]]:
    """A server frame as the single items a worker handles, in its order:
    settings, heartbeat acks, acks, assignments, cancels, keepalive."""
    items: list[tuple[str, Any]] = []
    if msg.HasField("settings"):
        items.append(("settings", msg.settings))
    items += [("heartbeat_ack", a) for a in msg.heartbeat_acks]
    items += [("ack", a) for a in msg.acks]
    items += [("assignment", a) for a in msg.assignments]
    items += [("cancel", c) for c in msg.cancels]
    if msg.HasField("keepalive"):
        items.append(("keepalive", msg.keepalive))
    return items


class RawWorker:
    """One bare Dequeue stream. A single reader task fills `inbox` with the
    items of every frame; writes happen from one task at a time (grpc.aio
    allows one pending write)."""

    def __init__(self, stub: worker_pb2_grpc.WorkerServiceAsyncStub, **subscribe: Any) -> None:
        self.call = stub.Dequeue()
        subscribe.setdefault("kinds", ["logged"])
        subscribe.setdefault("slots", 1)
        self.subscribe = worker_pb2.Subscribe(**subscribe)
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.frames = 0
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.call.write(worker_pb2.DequeueRequest(subscribe=self.subscribe))
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.call:
            self.frames += 1
            for item in frame_items(msg):
                await self.inbox.put(item)

    async def next(self, kind: str, wait_s: float = 10.0) -> Any:
        """The next item of `kind`, skipping keepalives and the settings."""
        while True:
            which, item = await asyncio.wait_for(self.inbox.get(), wait_s)
            if which == kind:
                return item
            assert which in ("keepalive", "settings"), (which, item)

    async def heartbeat(self, sequence: int, *held: tuple[str, int]) -> None:
        refs = [worker_pb2.JobRef(job_id=job_id, attempt=attempt) for job_id, attempt in held]
        await self.call.write(
            worker_pb2.DequeueRequest(heartbeat=worker_pb2.Heartbeat(running=refs, sequence=sequence))
        )

    async def send_result(self, job_id: str, attempt: int, values: dict[str, Any] | None = None) -> None:
        await self.call.write(RawWorker.result(job_id, attempt, values or {}))

    @staticmethod
    def result(job_id: str, attempt: int, values: dict[str, Any]) -> worker_pb2.DequeueRequest:
        return RawWorker.results([(job_id, attempt, values)])

    @staticmethod
    def results(items: list[tuple[str, int, dict[str, Any]]]) -> worker_pb2.DequeueRequest:
        batch = worker_pb2.JobResults()
        for job_id, attempt, values in items:
            res = batch.results.add(job=worker_pb2.JobRef(job_id=job_id, attempt=attempt), success=True)
            res.result.update(values)
        return worker_pb2.DequeueRequest(results=batch)

    async def close(self) -> None:
        self.call.cancel()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


# --- processes ----------------------------------------------------------------


@dataclass
class Proc:
    """A child process with its output in a file."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_clean_env(self.env),
                cwd=REPO,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_exit(self, within: float) -> int:
        assert self.proc is not None
        proc = self.proc

        async def check() -> int | None:
            return proc.poll()

        return await poll(check, within=within, what=f"{self.name} to exit")

    async def stop(self, within: float = 15.0) -> int | None:
        """SIGCONT (in case it is stopped) + SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(within)
        except AssertionError:
            self.proc.kill()
            self.proc.wait()
            return self.proc.returncode


def worker_proc(
    tmp: Path,
    server: str,
    ns: str,
    worker_id: str,
    log: Path,
    *,
    concurrency: int = 4,
    builtin: bool = False,
    grace: float = 5.0,
) -> Proc:
    args = [
        sys.executable,
        "-m",
        "tests.faults.worker_proc",
        "--server",
        server,
        "--namespace",
        ns,
        "--worker-id",
        worker_id,
        "--log",
        str(log),
        "--concurrency",
        str(concurrency),
        "--grace",
        str(grace),
        "--ready-file",
        str(tmp / f"{worker_id}.ready"),
    ]
    if builtin:
        args.append("--builtin")
    return Proc(worker_id, args, tmp / f"{worker_id}.log")


async def wait_ready(tmp: Path, procs: Sequence[Proc], *, within: float = 30.0) -> None:
    """Wait until every worker_proc has its Dequeue stream up."""

    async def check() -> bool:
        for p in procs:
            if not p.alive():
                raise AssertionError(f"{p.name} exited early:\n{p.output()[-3000:]}")
        return all((tmp / f"{p.name}.ready").exists() for p in procs)

    await poll(check, within=within, what="workers to connect")


def server_proc(tmp: Path, name: str, database_url: str, port: int, *extra: str) -> Proc:
    args = [
        sys.executable,
        "-m",
        "chronosched_server",
        "server",
        "--database-url",
        database_url,
        "--grpc-port",
        str(port),
        *extra,
    ]
    return Proc(name, args, tmp / f"{name}.log")


async def stop_all(procs: Sequence[Proc]) -> None:
    await asyncio.gather(*(p.stop() for p in procs))
