"""Leases kept by the worker's own clock, against a scripted peer: answered
heartbeats keep an attempt running, unanswered ones stop it before the lease
could end, a lost lease stops it at once, a silent stream is given up, and
results survive a worker restart in its state directory."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from chronosched.v1 import worker_pb2
from chronosched_worker import Worker
from chronosched_worker.context import LEASE_LAPSED, CancelSignal
from tests.support.grpc_helpers import seconds
from tests.support.waiting import eventually, stays
from tests.support.worker import Gates, running
from tests.worker.fake_server import FakeServer, Response, assignment, make_worker, ref, subscribed

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("short_ack_wait")]


def settings(*, heartbeat_s: float, silence_s: float, lease_s: float = 30.0) -> Response:
    return Response(
        settings=worker_pb2.StreamSettings(
            lease_duration=seconds(lease_s),
            heartbeat_interval=seconds(heartbeat_s),
            silence_timeout=seconds(silence_s),
        )
    )


async def test_answered_heartbeats_keep_a_job_running_for_many_leases(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        stream, _ = await subscribed(fake)
        stream.push(settings(heartbeat_s=0.1, silence_s=5))
        stream.push(assignment("a", kind="gate", lease_s=0.4))
        await gates.wait_started("a")
        # Four leases long: every one renewed by an answered heartbeat. (The
        # point is that no stop comes, so this watches for one for 1.6 s.)
        ctx = gates.contexts["a"]
        await stays(lambda: not ctx.cancelled.is_set(), for_s=1.6, what="job a running")
        gates.open("a")
        result = await stream.expect("result")
    assert (result.job, result.success) == (ref("a"), True)


async def test_unanswered_heartbeats_stop_the_job_before_its_lease_could_end(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        stream, _ = await subscribed(fake)
        stream.push(settings(heartbeat_s=0.1, silence_s=30))
        stream.push(assignment("a", kind="gate", lease_s=1.0))
        await gates.wait_started("a")
        # The stream stays up (the server reads every heartbeat) but no answer
        # comes: the database may be gone, and with it the lease.
        stream.answer_heartbeats = False
        cut = time.monotonic()
        await asyncio.wait_for(gates.contexts["a"].cancelled.wait(), 5)
        stopped_after = time.monotonic() - cut
        result = await stream.expect("result")
    # The last answered heartbeat left at most an interval (0.1 s) before the
    # cut; stopping begins a margin (0.1 s) and a grace (0.25 s) before the
    # lease (1 s) counted from it could end.
    assert 0.5 <= stopped_after <= 0.7, stopped_after
    assert re.fullmatch(
        r"cancelled: lease may lapse: no heartbeat confirmed for 0\.[67]s of a 1s lease", result.error
    )
    assert gates.contexts["a"].cancelled.grace_s == 0.25


async def test_a_lease_reported_lost_stops_the_job_at_once(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        stream, _ = await subscribed(fake)
        stream.push(assignment("a", kind="gate", lease_s=30))
        stream.push(assignment("b", kind="gate", lease_s=30))
        await gates.wait_started("b")
        stream.push(Response(heartbeat_acks=[worker_pb2.HeartbeatAck(sequence=0, lost=[ref("a")])]))
        await asyncio.wait_for(gates.contexts["a"].cancelled.wait(), 2)
        result = await stream.expect("result")
        assert not gates.contexts["b"].cancelled.is_set()
        gates.open("b")
    assert result.job == ref("a")
    assert result.error == "cancelled: lease lost: the server no longer leases this attempt to this worker"


async def test_a_lease_counts_from_the_heartbeat_it_was_granted_after(fake: FakeServer) -> None:
    gates = Gates()
    async with running(make_worker(fake.address, gates)):
        stream, _ = await subscribed(fake)
        stream.answer_heartbeats = False
        # Granted after the Subscribe (sequence 0), which left more than a
        # lease ago by the time the grant arrives: stopped at once.
        await asyncio.sleep(0.6)
        grant = assignment("a", kind="gate", lease_s=0.5)
        grant.assignments[0].heartbeat_sequence = 0
        stream.outbox.put_nowait(grant)
        result = await stream.expect("result", within=1)
    assert result.error.startswith("cancelled: lease may lapse"), result.error


async def test_a_silent_stream_is_given_up_and_reconnected(fake: FakeServer) -> None:
    async with running(make_worker(fake.address)):
        first, _ = await subscribed(fake)
        first.answer_heartbeats = False
        first.push(settings(heartbeat_s=0.1, silence_s=0.5))
        began = time.monotonic()
        await subscribed(fake)
        silent_for = time.monotonic() - began
    # Given up once 0.5 s passed without a word (the settings frame was the last).
    assert 0.4 <= silent_for <= 2.0, silent_for


def test_the_cancel_signal_is_set_by_itself_once_the_lease_may_have_lapsed() -> None:
    signal = CancelSignal()
    signal.set_lease_deadline(time.monotonic() + 60)
    assert not signal.is_set()
    signal.set_lease_deadline(time.monotonic() - 0.001)
    # No event loop ran: a handler resuming from a freeze still sees it.
    assert signal.is_set() and signal.reason == LEASE_LAPSED


async def test_unacknowledged_results_survive_a_restart_in_the_state_dir(
    fake: FakeServer, tmp_path: Path
) -> None:
    async with running(make_worker(fake.address, state_dir=tmp_path)):
        stream, _ = await subscribed(fake)
        stream.push(assignment("job-1", attempt=3))
        result = await stream.expect("result")
    assert [p.name for p in (tmp_path / "w-1").iterdir()] == ["job-1-3.result"]

    # The same worker id starts again (a new process would do the same): it
    # holds the attempt in its Subscribe, so the server takes nothing back,
    # and resends the result.
    async with running(make_worker(fake.address, state_dir=tmp_path)):
        stream, sub = await subscribed(fake)
        assert list(sub.running) == [ref("job-1", 3)]
        resent = await stream.expect("result")
        assert resent == result
        stream.ack("job-1", 3)
        await eventually(
            lambda: not any((tmp_path / "w-1").iterdir()),
            within=5,
            what="the acknowledged result to leave the spool",
            every=0.01,
        )


def test_a_worker_with_a_state_dir_checks_the_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError):
        Worker("127.0.0.1:1", namespaces=["a"], worker_id="w", state_dir=blocker)
