"""The timed wait that keeps its cancel, and stopping tasks that cannot hang."""

from __future__ import annotations

import asyncio

import pytest

from chronosched_server.waits import cancel_all, wait_event


async def test_wait_event_reports_set_or_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_a_cancel_arriving_as_the_event_is_set_is_kept() -> None:
    """The race that asyncio.wait_for (3.11) loses: the event is set and the
    waiter cancelled in the same loop iteration."""
    for _ in range(50):
        event = asyncio.Event()
        waiter = asyncio.create_task(wait_event(event, 10))
        await asyncio.sleep(0)
        event.set()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter


async def test_cancel_all_stops_tasks_and_leaves_a_stubborn_one_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def polite() -> None:
        await asyncio.sleep(3600)

    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue  # the bug cancel_all guards against

    good = asyncio.create_task(polite(), name="polite")
    bad = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await cancel_all([good, bad], timeout_s=0.2)
    assert loop.time() - began < 5
    assert good.cancelled() and not bad.done()
    (record,) = [r for r in caplog.records if "did not stop" in r.getMessage()]
    assert "stubborn" in record.getMessage() and "in stubborn" in record.getMessage()
    released.set()
    await bad
