"""For tests of the SDK's Worker: job contexts, gated handlers, running a
worker in the background, pids that job processes write."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from chronosched_worker import JobContext, Worker
from tests.support.waiting import eventually


def make_ctx(
    payload: dict[str, Any] | None = None, *, kind: str = "test", job_id: str = "job-1"
) -> JobContext:
    return JobContext(
        job_id=job_id,
        namespace_id="team-a",
        dag_id="",
        key="",
        kind=kind,
        attempt=1,
        max_attempts=3,
        payload=payload or {},
        def_id="def-1",
        def_version=1,
    )


def _pid_in(path: Path) -> int | None:
    # Writers end the pid with a newline, so a half-written file is not read.
    text = path.read_text() if path.exists() else ""
    return int(text) if text.endswith("\n") else None


async def read_pid(path: Path, within: float = 5.0) -> int:
    await eventually(lambda: _pid_in(path) is not None, within=within, what=str(path))
    pid = _pid_in(path)
    assert pid is not None
    return pid


class Gates:
    """A handler kind whose jobs run until the test releases them."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.release: dict[str, asyncio.Event] = {}
        self.cancelled: dict[str, str] = {}
        self.contexts: dict[str, JobContext] = {}

    def _event(self, table: dict[str, asyncio.Event], job_id: str) -> asyncio.Event:
        return table.setdefault(job_id, asyncio.Event())

    async def __call__(self, ctx: JobContext) -> dict[str, Any]:
        self.contexts[ctx.job_id] = ctx
        self._event(self.started, ctx.job_id).set()
        try:
            await self._event(self.release, ctx.job_id).wait()
        except asyncio.CancelledError:
            self.cancelled[ctx.job_id] = ctx.cancelled.reason
            raise
        return {"gated": ctx.job_id}

    async def wait_started(self, job_id: str, within: float = 10.0) -> None:
        await asyncio.wait_for(self._event(self.started, job_id).wait(), within)

    def open(self, job_id: str) -> None:
        self._event(self.release, job_id).set()


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None]]]:
    """Run `worker` in the background; on exit stop it and wait for it to drain."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield stop, task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 20)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
