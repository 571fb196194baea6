"""What a worker logs: the SDK's events with their job and worker fields,
its own output when the application configured no logging (and none when
it did), and `chronosched worker --log-format json`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from chronosched.v1 import worker_pb2
from chronosched_worker import JobContext
from tests.support.waiting import eventually
from tests.support.worker import running
from tests.worker.fake_server import FakeServer, FakeStream, assignment, make_worker, subscribed

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("short_ack_wait")]

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = worker_pb2.DequeueResponse(settings=worker_pb2.StreamSettings())


def events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    """(event, its fields) of every chronosched.worker line, in order."""
    names = ("namespace", "dag_id", "job_id", "attempt", "worker_id", "kind", "error", "reconnect_in_s")
    return [
        (r.event, {n: getattr(r, n) for n in names if hasattr(r, n)})
        for r in caplog.records
        if r.name == "chronosched.worker" and hasattr(r, "event")
    ]


async def connected(fake: FakeServer) -> FakeStream:
    # The real server's first message is its settings; the worker counts
    # itself connected once it hears the server.
    stream, _ = await subscribed(fake)
    stream.push(SETTINGS)
    return stream


async def test_the_sdk_logs_its_life_and_each_job_with_its_fields(
    fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chronosched.worker")
    worker = make_worker(fake.address)

    @worker.handler("crash")
    def crash(ctx: JobContext) -> None:
        raise KeyError("missing")

    async with running(worker):
        stream = await connected(fake)
        stream.push(assignment("a"))
        await stream.expect("result")
        stream.ack("a")
        stream.push(assignment("c", kind="crash", attempt=2))
        await stream.expect("result")
        stream.ack("c", 2)
        # Both acknowledged before the restart: nothing left to resend.
        await eventually(lambda: not worker._unacked, what="the acks")
        await fake.restart()
        await connected(fake)
        await eventually(
            lambda: any(e == "worker_reconnected" for e, _ in events(caplog)), what="reconnected"
        )

    seen = events(caplog)
    order = [event for event, _ in seen]
    assert order == [
        "worker_started",
        "worker_connected",
        "job_started",
        "job_succeeded",
        "job_started",
        "job_failed",
        "worker_disconnected",
        "worker_reconnected",
        "worker_draining",
        "worker_stopped",
    ], order
    job = {"namespace": "team-a", "dag_id": "dag-1", "worker_id": "w-1"}
    assert seen[2][1] == {**job, "job_id": "a", "attempt": 1, "kind": "echo"}
    assert seen[3][1] == {**job, "job_id": "a", "attempt": 1, "kind": "echo"}
    assert seen[5][1] == {**job, "job_id": "c", "attempt": 2, "kind": "crash", "error": "KeyError: 'missing'"}
    # The backoff it waits before reconnecting.
    assert seen[6][1]["reconnect_in_s"] >= 0 and seen[6][1]["worker_id"] == "w-1"
    assert all(fields["worker_id"] == "w-1" for _, fields in seen)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}


# An application embedding the SDK; APP_LOGGING=1 sets up its own logging first.
SDK_APP = textwrap.dedent(
    """
    import logging, os, sys
    from chronosched_worker import Worker

    if os.environ.get("APP_LOGGING") == "1":
        logging.basicConfig(level=logging.INFO, format="APP %(name)s %(message)s")
    worker = Worker(sys.argv[1], namespaces=["team-a"], worker_id="sdk-1", grace_s=5)

    @worker.handler("echo")
    def echo(ctx):
        return {"ok": True}

    worker.run_forever()
    """
)


async def _run_sdk_app(fake: FakeServer, app_logging: bool) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SDK_APP,
        fake.address,
        env={**_env(), "APP_LOGGING": "1" if app_logging else "0"},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stream, _ = await asyncio.wait_for(subscribed(fake), 20)
        stream.push(SETTINGS)
        stream.push(assignment("a"))
        result = await stream.expect("result")
        assert result.success
        stream.ack("a")
        proc.send_signal(signal.SIGTERM)
        assert (await stream.expect("slots")).slots == 0
        await stream.expect_close()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode()


async def test_an_embedded_worker_logs_at_info_when_the_application_set_up_no_logging(
    fake: FakeServer,
) -> None:
    err = await _run_sdk_app(fake, app_logging=False)
    lines = err.splitlines()
    # The text lines of `chronosched worker`, each once.
    for text in (
        "INFO chronosched.worker: worker sdk-1 serving kinds echo",
        "INFO chronosched.worker: worker sdk-1 connected to",
        "INFO chronosched.worker: job a attempt 1 started (kind echo)",
        "INFO chronosched.worker: job a attempt 1 succeeded in",
        "INFO chronosched.worker: SIGTERM: draining",
        "INFO chronosched.worker: shutting down: 0 job(s) running",
        "INFO chronosched.worker: worker sdk-1 stopped",
    ):
        matching = [line for line in lines if text in line]
        assert len(matching) == 1, (text, err)
    started = next(line for line in lines if "started (kind echo)" in line)
    assert (
        "event=job_started namespace=team-a dag_id=dag-1 job_id=a attempt=1 worker_id=sdk-1 kind=echo"
        in started
    )


async def test_an_application_that_set_up_logging_gets_each_line_once_in_its_format(
    fake: FakeServer,
) -> None:
    err = await _run_sdk_app(fake, app_logging=True)
    lines = err.splitlines()
    assert lines.count("APP chronosched.worker job a attempt 1 started (kind echo)") == 1, err
    assert any(line.startswith("APP chronosched.worker worker sdk-1 stopped") for line in lines), err
    # Nothing in the SDK's own format besides.
    assert not [line for line in lines if " INFO chronosched.worker: " in line], err


async def test_the_worker_command_writes_json_lines(fake: FakeServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chronosched_worker",
        "--server",
        fake.address,
        "--namespace",
        "team-a",
        "--kinds",
        "command",
        "--worker-id",
        "p-1",
        "--log-format",
        "json",
        env=_env(),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stream, _ = await asyncio.wait_for(subscribed(fake), 20)
        stream.push(SETTINGS)
        stream.push(assignment("a", kind="command", payload={"argv": ["false"]}))
        result = await stream.expect("result")
        assert not result.success
        stream.ack("a")
        proc.send_signal(signal.SIGTERM)
        assert (await stream.expect("slots")).slots == 0
        await stream.expect_close()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    lines = [json.loads(line) for line in (await proc.stderr.read()).decode().splitlines()]
    for line in lines:
        assert {"timestamp", "level", "logger", "event", "message"} <= line.keys(), line
    by_event = {line["event"]: line for line in lines}
    assert {
        "worker_started",
        "worker_connected",
        "job_started",
        "job_failed",
        "worker_stopped",
    } <= by_event.keys()
    failed = by_event["job_failed"]
    assert (failed["job_id"], failed["attempt"], failed["namespace"], failed["worker_id"]) == (
        "a",
        1,
        "team-a",
        "p-1",
    )
    assert failed["error"] and failed["level"] == "INFO"
