"""Frames queued for a worker stream: merged while unwritten, bounded in size."""

from __future__ import annotations

import asyncio

import pytest

from chronosched.v1 import worker_pb2
from chronosched_server.dispatch import streams
from chronosched_server.dispatch.streams import WorkerStream

Frame = worker_pb2.DequeueResponse


def ack(job_id: str) -> Frame:
    return Frame(acks=[worker_pb2.ResultAck(job=worker_pb2.JobRef(job_id=job_id, attempt=1), accepted=True)])


def stream() -> WorkerStream:
    return WorkerStream("w", ["ns"], False, ["k"], 4)


async def test_unwritten_frames_merge_into_one() -> None:
    s = stream()
    s.send(ack("a"))
    s.send(Frame(cancels=[worker_pb2.CancelJob(job=worker_pb2.JobRef(job_id="x", attempt=2))]))
    s.send(ack("b"))
    frame = await s.next_frame()
    assert frame is not None
    assert [a.job.job_id for a in frame.acks] == ["a", "b"]
    assert [c.job.job_id for c in frame.cancels] == ["x"]
    # A frame sent after the writer took the last one starts a new frame.
    s.send(ack("c"))
    later = await s.next_frame()
    assert later is not None and [a.job.job_id for a in later.acks] == ["c"]


async def test_frames_stop_merging_at_the_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    one = ack("a").ByteSize()
    monkeypatch.setattr(streams, "FRAME_BYTES", 2 * one)
    s = stream()
    for job in "abc":
        s.send(ack(job))
    sizes = []
    for _ in range(2):
        frame = await s.next_frame()
        assert frame is not None
        sizes.append([a.job.job_id for a in frame.acks])
    assert sizes == [["a", "b"], ["c"]]


async def test_end_delivers_what_is_queued_then_stops() -> None:
    s = stream()
    waiter = asyncio.create_task(s.next_frame())
    await asyncio.sleep(0)
    assert not waiter.done()
    s.send(ack("a"))
    first = await waiter
    assert first is not None and [a.job.job_id for a in first.acks] == ["a"]
    s.send(ack("b"))
    s.end()
    s.send(ack("ignored: after end"))
    second = await s.next_frame()
    assert second is not None and [a.job.job_id for a in second.acks] == ["b"]
    assert await s.next_frame() is None


async def test_a_closed_stream_queues_nothing() -> None:
    s = stream()
    s.closed = True
    s.send(ack("a"))
    s.end()
    assert await s.next_frame() is None
