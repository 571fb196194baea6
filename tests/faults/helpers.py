"""Processes, clients and database reads for the fault tests.

- `Proc`: a child process with its output in a file, killable with any
  signal; `server_proc` (`python -m chronosched_server server`) and
  `worker_proc` (`tests.faults.worker_proc`) build one.
- `Api`: async stubs of every service over one channel, with builders.
- `fetch`, `jobs_by_key`, `job_row`, `wait_dag`, `wait_job`: job and DAG
  state read from the database, waited for with a deadline.

The generic pieces (polling, ports, `RawWorker`, health) are in tests/support/.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
from psycopg.rows import DictRow, dict_row

from chronosched.v1 import (
    dag_pb2,
    dag_pb2_grpc,
    definition_pb2,
    definition_pb2_grpc,
    job_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
    worker_pb2_grpc,
)
from tests.support.grpc_helpers import CHANNEL_OPTIONS, struct
from tests.support.processes import clean_env, server_argv
from tests.support.waiting import poll

REPO = Path(__file__).resolve().parents[2]


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


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
        channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
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
    return Proc(name, server_argv(database_url, port, *extra), tmp / f"{name}.log")


async def stop_all(procs: Sequence[Proc]) -> None:
    await asyncio.gather(*(p.stop() for p in procs))
