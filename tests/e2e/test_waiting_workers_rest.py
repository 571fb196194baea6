"""Through the real Envoy: a job of a kind nobody serves says so, and stops
saying so once a worker for the kind connects; GET /api/v1/workers lists a
real worker process and drops it once SIGKILLed."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronosched_worker import JobContext, Worker
from tests.e2e.conftest import UpProcess
from tests.support.rest import Json, ok
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def get_job(api: httpx.Client, ns: str, job_id: str) -> Json:
    return ok(api.get(f"/api/v1/jobs/{ns}/{job_id}"))


def test_a_kind_nobody_serves_is_named_until_a_worker_for_it_connects(
    api: httpx.Client, ns: str, up: UpProcess
) -> None:
    made = ok(api.post(f"/api/v1/definitions/{ns}", json={"name": "typo", "kind": "comand"}))
    job_id = ok(api.post(f"/api/v1/definitions/{ns}/{made['def_id']}/tick", json={}))["job_id"]
    waiting = get_job(api, ns, job_id)["waiting"]
    assert waiting["reason"] == "REASON_NO_WORKER" and waiting["kind"] == "comand"
    assert waiting["message"] == "no connected worker serves kind comand in this namespace"

    async def serve_until_done() -> None:
        worker = Worker(up.grpc_target, worker_id="typo-server", namespaces=[ns], concurrency=1)

        @worker.handler("comand")
        async def run(ctx: JobContext) -> dict[str, Any]:
            return {"served": ctx.kind}

        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while get_job(api, ns, job_id)["state"] != "STATE_SUCCEEDED":
                assert loop.time() < deadline, "the job did not run within 10 s of its worker connecting"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)

    asyncio.run(serve_until_done())
    done = get_job(api, ns, job_id)
    assert done["result"] == {"served": "comand"} and "waiting" not in done


def test_a_worker_process_is_listed_and_dropped_once_sigkilled(
    api: httpx.Client, ns: str, up: UpProcess, tmp_path: Path
) -> None:
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chronosched_worker",
            "--server",
            up.grpc_target,
            "--namespace",
            ns,
            "--kinds",
            "command",
            "--worker-id",
            f"doomed-{ns}",
            "--concurrency",
            "3",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def listed() -> list[Json] | None:
            found: list[Json] = ok(api.get(f"/api/v1/workers/{ns}")).get("workers", [])
            mine = [w for w in found if w["worker_id"] == f"doomed-{ns}"]
            return mine or None

        (row,) = wait_until(listed, within=30, what="the worker process to be listed")
        assert row["namespaces"] == [ns] and row["kinds"] == ["command"] and row["slots"] == 3
        assert row["connect_time"] and row["heartbeat_time"]
        # The unfiltered list holds it too, beside `up`'s own workers.
        everyone = ok(api.get("/api/v1/workers", params={"page_size": 1000}))["workers"]
        assert f"doomed-{ns}" in {w["worker_id"] for w in everyone}
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        # Within the lease period (30 s): the kernel resets the connection at
        # once, so in practice the stream closes and the row goes at once.
        wait_until(lambda: listed() is None, within=30, what="the killed worker to leave the list")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()
