"""The worker's side of the Dequeue protocol, against a scripted peer
(tests/worker/fake_server.py): exact message sequences, reconnects, server
restarts, cancellation, heartbeats and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from chronosched_worker import JobContext, NonRetryable, Worker
from chronosched_worker import sdk as sdk_module
from chronosched_worker.connection import Backoff, channel_options
from chronosched_worker.kinds.command import CommandKind
from chronosched_worker.runner import struct_to_dict
from tests.support.processes import pid_alive
from tests.support.worker import Gates, read_pid, running
from tests.worker.fake_server import FakeServer, assignment, echo, make_worker, ref, subscribed

# Most tests leave results unacknowledged: short_ack_wait.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("short_ack_wait")]


async def test_subscribe_names_the_worker_its_namespaces_kinds_and_slots(fake: FakeServer) -> None:
    worker = make_worker(fake.address, Gates(), namespaces=["team-a", "team-b"], concurrency=4)
    async with running(worker):
        _, sub = await subscribed(fake)
    assert (sub.worker_id, list(sub.namespaces), sub.all_namespaces) == ("w-1", ["team-a", "team-b"], False)
    assert (list(sub.kinds), sub.slots, list(sub.running)) == (["echo", "gate"], 4, [])


async def test_subscribe_for_all_namespaces(fake: FakeServer) -> None:
    async with running(make_worker(fake.address, namespaces=(), all_namespaces=True)):
        _, sub = await subscribed(fake)
    assert (list(sub.namespaces), sub.all_namespaces, sub.slots) == ([], True, 16)


async def test_assignment_runs_and_its_result_comes_back_on_the_stream(fake: FakeServer) -> None:
    async with running(make_worker(fake.address)):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", attempt=2, payload={"n": 3, "s": "x"}))
        result = await stream.expect("result")
    assert (result.job, result.success, result.error, result.non_retryable) == (ref("a", 2), True, "", False)
    assert struct_to_dict(result.result) == {"echo": {"n": 3, "s": "x"}, "attempt": 2}


async def test_handler_sees_the_job_in_its_context(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", kind="gate", payload={"k": [1, 2]}))
        await gates.wait_started("a")
        gates.open("a")
        await stream.expect("result")
    ctx = gates.contexts["a"]
    assert (ctx.job_id, ctx.namespace_id, ctx.dag_id, ctx.key, ctx.kind) == (
        "a",
        "team-a",
        "dag-1",
        "key-a",
        "gate",
    )
    assert (ctx.attempt, ctx.max_attempts, ctx.def_id, ctx.def_version, ctx.payload) == (
        1,
        3,
        "def-1",
        2,
        {"k": [1, 2]},
    )


async def test_failures_and_non_retryable_errors_travel_in_the_result(fake: FakeServer) -> None:
    worker = make_worker(fake.address)

    @worker.handler("crash")
    def crash(ctx: JobContext) -> None:
        raise KeyError("missing")

    @worker.handler("refuse")
    async def refuse(ctx: JobContext) -> None:
        raise NonRetryable("no such customer")

    async with running(worker):
        stream, _ = await subscribed(fake)
        stream.push(assignment("c", kind="crash"))
        crashed = await stream.expect("result")
        stream.push(assignment("r", kind="refuse"))
        refused = await stream.expect("result")
    assert (crashed.job.job_id, crashed.success, crashed.error, crashed.non_retryable) == (
        "c",
        False,
        "KeyError: 'missing'",
        False,
    )
    assert (refused.job.job_id, refused.success, refused.error, refused.non_retryable) == (
        "r",
        False,
        "no such customer",
        True,
    )


async def test_unknown_kind_fails_the_attempt_retryably(fake: FakeServer) -> None:
    async with running(make_worker(fake.address)):
        stream, _ = await subscribed(fake)
        stream.push(assignment("x", kind="nope"))
        result = await stream.expect("result")
    assert (result.success, result.error, result.non_retryable) == (
        False,
        "worker w-1 has no handler for kind 'nope'",
        False,
    )


async def test_execution_timeout_comes_from_the_assignment(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", kind="gate", timeout_s=0.2))
        result = await stream.expect("result")
    assert (result.success, result.error) == (False, "execution timeout after 0.2s")
    assert gates.cancelled == {"a": "execution timeout after 0.2s"}


async def test_cancel_job_stops_the_handler_and_reports_it_cancelled(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", kind="gate"))
        await gates.wait_started("a")
        stream.cancel("a", reason="DAG cancelled")
        result = await stream.expect("result")
        stream.cancel("unknown-job", reason="ignored")  # nothing runs it: no effect
        stream.ack("a", accepted=False, reason="JOB_CANCELLED")
    assert (result.job, result.success, result.error) == (ref("a"), False, "cancelled: DAG cancelled")
    assert gates.cancelled == {"a": "DAG cancelled"}


IGNORES_TERM = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1], 'w').write(f'{os.getpid()}\\n')\n"
    "time.sleep(60)\n"
)


async def test_cancel_job_terminates_a_command_subprocess(fake: FakeServer, tmp_path: Path) -> None:
    worker = make_worker(fake.address)
    worker.add_handler("command", CommandKind(kill_grace_s=0.5))
    pid_file = tmp_path / "pid"
    async with running(worker):
        stream, _ = await subscribed(fake)
        stream.push(
            assignment(
                "a", kind="command", payload={"argv": [sys.executable, "-c", IGNORES_TERM, str(pid_file)]}
            )
        )
        pid = await read_pid(pid_file)
        stream.cancel("a", reason="operator")
        result = await stream.expect("result")
        # The result is sent only once the process is gone.
        assert not pid_alive(pid)
    assert (result.success, result.error) == (False, "cancelled: operator")


async def test_heartbeats_every_third_of_the_lease_while_jobs_run(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", kind="gate", lease_s=0.3))
        stream.push(assignment("b", kind="gate", lease_s=30))
        await gates.wait_started("b")
        first = await stream.expect("heartbeat")
        received_at = [time.monotonic()]
        for _ in range(3):
            beat = await stream.expect("heartbeat")
            received_at.append(time.monotonic())
            assert list(beat.running) == [ref("a"), ref("b")]
        assert list(first.running) == [ref("a"), ref("b")]
        # Three periods of 0.1 s: paced, not a busy loop.
        assert received_at[-1] - received_at[0] >= 0.25
        gates.open("a")
        gates.open("b")
        results = {(await stream.expect("result")).job.job_id for _ in range(2)}
        assert results == {"a", "b"}
        stream.ack("a")
        stream.ack("b")
        # Nothing runs: back to the stream's own interval (5 s without
        # settings), after at most the one heartbeat already due. There is no
        # event for an absence, so watch for a few former periods.
        idle = []
        with contextlib.suppress(TimeoutError):
            while True:
                idle.append(await stream.next(within=0.4, skip_heartbeats=False))
        assert [item.kind for item in idle] in ([], ["heartbeat"]), idle
        assert all(not item.body.running for item in idle)


async def test_unacked_results_are_resent_after_reconnect_and_acked_ones_are_not(fake: FakeServer) -> None:
    async with running(make_worker(fake.address)):
        first, _ = await subscribed(fake)
        first.push(assignment("kept"))
        await first.expect("result")
        first.push(assignment("acked"))
        await first.expect("result")
        first.ack("acked")
        first.push(assignment("rejected"))
        await first.expect("result")
        first.ack("rejected", accepted=False, reason="STALE_ATTEMPT")
        first.abort()

        second, sub = await subscribed(fake)
        # It still holds "kept" (its result is resent next), nothing else.
        assert list(sub.running) == [ref("kept")]
        resent = await second.expect("result")
        assert (resent.job, resent.success, struct_to_dict(resent.result)) == (
            ref("kept"),
            True,
            {"echo": {}, "attempt": 1},
        )
        second.ack("kept")
        # Only "kept" came back; the next message is whatever comes next.
        second.push(assignment("after"))
        assert (await second.expect("result")).job == ref("after")


async def test_results_queued_together_leave_in_one_message(fake: FakeServer) -> None:
    async with running(make_worker(fake.address, concurrency=3)):
        first, _ = await subscribed(fake)
        first.push(assignment("a"))
        first.push(assignment("b"))
        first.push(assignment("c"))
        assert {(await first.expect("result")).job.job_id for _ in range(3)} == {"a", "b", "c"}
        first.abort()

        # All three are unacknowledged: the next stream resends them, and
        # since they are queued at once they travel as one message.
        second, _ = await subscribed(fake)
        resent = [await second.next() for _ in range(3)]
    assert sorted(item.body.job.job_id for item in resent) == ["a", "b", "c"]
    assert all(item.kind == "result" for item in resent)
    assert len({id(item.message) for item in resent}) == 1
    assert [m.WhichOneof("message") for m in second.messages[:2]] == ["subscribe", "results"]


async def test_running_jobs_survive_a_lost_stream_and_report_on_the_next(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        first, _ = await subscribed(fake)
        first.push(assignment("a", kind="gate"))
        await gates.wait_started("a")
        first.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down")

        second, sub = await subscribed(fake)
        assert list(sub.running) == [ref("a")]
        # Leases are renewed at once after a reconnect.
        assert list((await second.expect("heartbeat")).running) == [ref("a")]
        gates.open("a")
        result = await second.expect("result")
    assert (result.job, result.success, struct_to_dict(result.result)) == (ref("a"), True, {"gated": "a"})
    assert gates.cancelled == {}


async def test_reconnects_to_a_restarted_server_on_the_same_port(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        first, _ = await subscribed(fake)
        first.push(assignment("a", kind="gate"))
        await gates.wait_started("a")
        await fake.restart()

        second, sub = await subscribed(fake)
        assert list(sub.running) == [ref("a")]
        gates.open("a")
        result = await second.expect("result")
    assert (result.job, result.success) == (ref("a"), True)


async def test_server_ending_the_stream_cleanly_also_reconnects(fake: FakeServer) -> None:
    async with running(make_worker(fake.address)):
        first, _ = await subscribed(fake)
        first.end()
        _, sub = await subscribed(fake)
        assert sub.worker_id == "w-1"


async def test_a_lapsed_lease_cancels_the_job_while_disconnected(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        first, _ = await subscribed(fake)
        first.push(assignment("a", kind="gate", lease_s=0.5))
        await gates.wait_started("a")
        await fake.stop()
        # Someone else may hold the job now; ours must stop.
        await asyncio.wait_for(gates.contexts["a"].cancelled.wait(), 5)
        await fake.start()

        second, sub = await subscribed(fake)
        result = await second.expect("result")
    # Not running any more, but its result is still to be acknowledged.
    assert list(sub.running) == [ref("a")]
    # Stopped a margin (0.05 s) plus a clean-up grace (0.125 s) before the
    # 0.5 s lease could end.
    expected = "cancelled: lease may lapse: no heartbeat confirmed for 0.3s of a 0.5s lease"
    assert (result.job, result.success, result.error) == (ref("a"), False, expected)


async def test_duplicate_assignment_runs_once(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)) as (stop, _):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", kind="gate"))
        stream.push(assignment("a", kind="gate"))
        await gates.wait_started("a")
        gates.open("a")
        await stream.expect("result")
        stream.ack("a")
        stop.set()
        await stream.expect("slots")
        await stream.expect_close()
    assert stream.kinds_received().count("result") == 1


async def test_graceful_shutdown_drains_running_jobs(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates, grace_s=30)) as (stop, task):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", kind="gate"))
        await gates.wait_started("a")
        stop.set()
        assert (await stream.expect("slots")).slots == 0
        assert not task.done()  # still waiting for the job
        gates.open("a")
        result = await stream.expect("result")
        assert (result.job, result.success) == (ref("a"), True)
        stream.ack("a")
        await stream.expect_close()
        await asyncio.wait_for(task, 5)
    assert [k for k in stream.kinds_received() if k != "heartbeat"] == ["subscribe", "slots", "result"]
    assert gates.cancelled == {}


async def test_shutdown_past_the_grace_abandons_jobs_without_reporting(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates, grace_s=0.3)) as (stop, task):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", kind="gate"))
        await gates.wait_started("a")
        stopped_at = time.monotonic()
        stop.set()
        await stream.expect("slots")
        await stream.expect_close()
        await asyncio.wait_for(task, 5)
        assert 0.3 <= time.monotonic() - stopped_at < 5
    assert "result" not in stream.kinds_received()
    assert gates.cancelled == {"a": "worker shutting down"}


async def test_shutdown_waits_only_briefly_for_acks(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdk_module, "ACK_WAIT_S", 0.3)
    async with running(make_worker(fake.address)) as (stop, task):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a"))
        await stream.expect("result")
        stopped_at = time.monotonic()
        stop.set()  # the result is never acknowledged
        await stream.expect("slots")
        await stream.expect_close()
        await asyncio.wait_for(task, 5)
        assert 0.3 <= time.monotonic() - stopped_at < 3


async def test_shutdown_with_no_server_returns_promptly() -> None:
    worker = make_worker("127.0.0.1:1")  # nothing listens on port 1
    async with running(worker) as (stop, task):
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_reconnects_back_off_instead_of_spinning(fake: FakeServer) -> None:
    fake.service.reject_all = True
    async with running(make_worker(fake.address)):
        await fake.next_stream()
        started = time.monotonic()
        attempts = 0
        with contextlib.suppress(TimeoutError):
            while True:
                await fake.next_stream(within=max(0.0, 1.5 - (time.monotonic() - started)))
                attempts += 1
    # Ceilings 0.1, 0.2, 0.4, 0.8, 1.6 s with full jitter: a handful of
    # attempts, never hundreds.
    assert 1 <= attempts <= 20


def test_backoff_doubles_to_five_seconds_with_full_jitter() -> None:
    backoff = Backoff(rng=lambda: 1.0)
    assert [round(backoff.next_delay(), 3) for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)
    assert Backoff(rng=lambda: 0.5).next_delay() == pytest.approx(0.05)


def test_channel_options_default_and_override() -> None:
    options = dict(channel_options([("grpc.keepalive_time_ms", 5000), ("grpc.primary_user_agent", "x")]))
    assert options["grpc.keepalive_time_ms"] == 5000
    assert options["grpc.keepalive_timeout_ms"] == 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.max_send_message_length"] == options["grpc.max_receive_message_length"] == 64 << 20
    assert options["grpc.primary_user_agent"] == "x"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, "pass at least one namespace, or all_namespaces=True"),
        ({"namespaces": ["a"], "all_namespaces": True}, "pass namespaces or all_namespaces=True, not both"),
        ({"namespaces": ["Bad_NS"]}, "invalid namespace id 'Bad_NS'"),
        ({"namespaces": ["a"], "worker_id": "-x"}, "invalid worker_id '-x'"),
        ({"namespaces": ["a"], "concurrency": 0}, "concurrency must be 1 to 1000, got 0"),
        ({"namespaces": ["a"], "concurrency": 1001}, "concurrency must be 1 to 1000, got 1001"),
        ({"namespaces": ["a"], "grace_s": -1.0}, "grace_s must be a finite number >= 0, got -1.0"),
    ],
)
def test_worker_rejects_bad_settings(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match="^" + error.replace("(", r"\(").replace(")", r"\)")):
        Worker("127.0.0.1:1", **kwargs)


def test_handler_registration_rules() -> None:
    worker = Worker("127.0.0.1:1", namespaces=["a"])
    worker.add_handler("echo", echo)
    with pytest.raises(ValueError, match="already registered"):
        worker.add_handler("echo", echo)
    with pytest.raises(ValueError, match="invalid kind 'Bad Kind'"):
        worker.handler("Bad Kind")(echo)
    assert worker.kinds == ("echo",)


async def test_run_needs_a_handler() -> None:
    with pytest.raises(ValueError, match="register at least one handler"):
        await Worker("127.0.0.1:1", namespaces=["a"]).run(asyncio.Event())
