"""The runner layer without gRPC: how handler returns, exceptions, time
limits and cancellation become outcomes."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from google.protobuf import struct_pb2

from chronosched_worker import JobContext, JobFailed, NonRetryable, Outcome, execute
from chronosched_worker.runner import (
    MAX_ERROR_BYTES,
    MAX_RESULT_BYTES,
    dict_to_struct,
    struct_to_dict,
    truncate_utf8,
)
from tests.support.worker import make_ctx

pytestmark = pytest.mark.timeout(30)


async def test_async_handler_result_is_the_outcome() -> None:
    async def handler(ctx: JobContext) -> dict[str, Any]:
        return {"rows": 3, "name": ctx.payload["name"], "nested": {"ok": True, "list": [1, "a", None]}}

    outcome = await execute(handler, make_ctx({"name": "x"}))
    assert outcome == Outcome(
        success=True, result={"rows": 3, "name": "x", "nested": {"ok": True, "list": [1, "a", None]}}
    )


async def test_sync_handler_runs_in_a_thread_of_its_own() -> None:
    seen: list[threading.Thread] = []

    def handler(ctx: JobContext) -> dict[str, Any]:
        seen.append(threading.current_thread())
        return {"job": ctx.job_id}

    outcome = await execute(handler, make_ctx(job_id="j-7"))
    assert outcome == Outcome(success=True, result={"job": "j-7"})
    assert len(seen) == 1 and seen[0] is not threading.main_thread() and seen[0].daemon


async def test_sync_handlers_are_not_capped_by_the_default_executor() -> None:
    # The default executor has min(32, cpus + 4) threads; 12 handlers that
    # all wait for each other would deadlock there on a small machine.
    barrier = threading.Barrier(12, timeout=10)

    def handler(ctx: JobContext) -> dict[str, Any]:
        return {"index": barrier.wait()}

    outcomes = await asyncio.gather(*(execute(handler, make_ctx(job_id=f"j{i}")) for i in range(12)))
    assert all(o.success for o in outcomes)
    assert sorted(o.result["index"] for o in outcomes) == list(range(12))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ({}, {}),
        (42, {"value": 42}),
        ("done", {"value": "done"}),
        ([1, 2], {"value": [1, 2]}),
        ({"t": (1, 2)}, {"t": [1, 2]}),
        (2.5, {"value": 2.5}),
    ],
)
async def test_return_values_are_mapped(value: object, expected: dict[str, Any]) -> None:
    async def handler(ctx: JobContext) -> object:
        return value

    assert await execute(handler, make_ctx()) == Outcome(success=True, result=expected)


async def test_exception_fails_the_attempt_with_type_and_message() -> None:
    def handler(ctx: JobContext) -> None:
        raise ValueError("boom")

    assert await execute(handler, make_ctx()) == Outcome(success=False, error="ValueError: boom")


async def test_non_retryable_fails_the_job_with_its_message() -> None:
    async def handler(ctx: JobContext) -> None:
        raise NonRetryable("bad input: no such user")

    assert await execute(handler, make_ctx()) == Outcome(
        success=False, error="bad input: no such user", non_retryable=True
    )


async def test_job_failed_uses_its_message_verbatim_and_is_retryable() -> None:
    async def handler(ctx: JobContext) -> None:
        raise JobFailed("HTTP 503: try later")

    assert await execute(handler, make_ctx()) == Outcome(success=False, error="HTTP 503: try later")


async def test_long_errors_are_cut_to_64_kib_on_a_character_boundary() -> None:
    async def handler(ctx: JobContext) -> None:
        raise RuntimeError("é" * 40_000)  # 80,000 bytes of UTF-8

    outcome = await execute(handler, make_ctx())
    encoded = outcome.error.encode("utf-8")
    assert not outcome.success
    assert len(encoded) == MAX_ERROR_BYTES  # "RuntimeError: " is 14 bytes: an even cut
    assert outcome.error == ("RuntimeError: " + "é" * 40_000)[: len(outcome.error)]
    assert truncate_utf8("aé", 2) == "a"  # never half a character


async def test_unserialisable_result_fails_the_attempt() -> None:
    async def handler(ctx: JobContext) -> dict[str, Any]:
        return {"when": object()}

    outcome = await execute(handler, make_ctx())
    assert not outcome.success and not outcome.non_retryable
    assert outcome.error.startswith("result is not JSON-serialisable: TypeError: Object of type object")


async def test_nan_result_fails_the_attempt() -> None:
    async def handler(ctx: JobContext) -> dict[str, Any]:
        return {"x": float("nan")}

    outcome = await execute(handler, make_ctx())
    assert not outcome.success
    assert outcome.error.startswith("result is not JSON-serialisable: ValueError: Out of range float")


async def test_oversized_result_fails_instead_of_poisoning_the_stream() -> None:
    async def handler(ctx: JobContext) -> dict[str, Any]:
        return {"blob": "x" * MAX_RESULT_BYTES}  # + 11 bytes of {"blob":""}

    outcome = await execute(handler, make_ctx())
    assert outcome == Outcome(
        success=False, error=f"result too large: {MAX_RESULT_BYTES + 11} bytes of JSON, the limit is 1048576"
    )


async def test_execution_timeout_cancels_the_handler_and_waits_for_its_cleanup() -> None:
    events: list[str] = []

    async def handler(ctx: JobContext) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.append("cancelled")
            await asyncio.sleep(0.05)  # clean-up that takes a while
            events.append("cleaned up")
            raise

    ctx = make_ctx()
    started = time.monotonic()
    outcome = await execute(handler, ctx, timeout_s=0.2)
    assert outcome == Outcome(success=False, error="execution timeout after 0.2s")
    assert events == ["cancelled", "cleaned up"]
    assert ctx.cancelled.is_set() and ctx.cancelled.reason == "execution timeout after 0.2s"
    assert 0.2 <= time.monotonic() - started < 5


async def test_sync_handler_sees_the_timeout_through_its_context() -> None:
    noticed = threading.Event()

    def handler(ctx: JobContext) -> None:
        if ctx.cancelled.wait_blocking(10):
            noticed.set()

    outcome = await execute(handler, make_ctx(), timeout_s=0.1)
    assert outcome == Outcome(success=False, error="execution timeout after 0.1s")
    assert await asyncio.to_thread(noticed.wait, 5)


async def test_cancel_signal_stops_the_handler_with_the_reason() -> None:
    started = asyncio.Event()
    events: list[str] = []

    async def handler(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            events.append("finally")

    ctx = make_ctx()
    task = asyncio.create_task(execute(handler, ctx))
    await started.wait()
    ctx.cancelled.set("DAG cancelled")
    assert await task == Outcome(success=False, error="cancelled: DAG cancelled")
    assert events == ["finally"]


async def test_a_stop_requested_before_the_attempt_starts_stops_it_at_once() -> None:
    events: list[str] = []

    async def handler(ctx: JobContext) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            events.append("finally")

    ctx = make_ctx()
    ctx.cancelled.set("lease lost")
    assert await execute(handler, ctx, timeout_s=30) == Outcome(success=False, error="cancelled: lease lost")
    # Stopped before its first step: the handler's body never ran.
    assert events == []


async def test_the_stop_signal_keeps_no_callback_of_a_finished_attempt() -> None:
    """The runner registers a wake-up with the signal per attempt; one that
    finished takes it back, so a signal set later calls nothing stale."""
    woken: list[str] = []

    async def handler(ctx: JobContext) -> dict[str, Any]:
        return {}

    ctx = make_ctx()
    for _ in range(3):
        assert (await execute(handler, ctx, timeout_s=5)).success
    ctx.cancelled.when_set(lambda: woken.append("ours"))
    ctx.cancelled.set("later")
    assert woken == ["ours"]
    # Registered after the set: called at once, never kept.
    ctx.cancelled.when_set(lambda: woken.append("late"))
    assert woken == ["ours", "late"]


async def test_handler_finishing_before_its_timeout_is_not_affected() -> None:
    async def handler(ctx: JobContext) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"ok": 1}

    ctx = make_ctx()
    assert await execute(handler, ctx, timeout_s=5) == Outcome(success=True, result={"ok": 1})
    assert not ctx.cancelled.is_set()


async def test_cancelling_execute_cancels_the_handler_and_reports_nothing() -> None:
    started = asyncio.Event()
    events: list[str] = []

    async def handler(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    ctx = make_ctx()
    task = asyncio.create_task(execute(handler, ctx))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["cancelled"]
    assert ctx.cancelled.reason == "worker shutting down"


async def test_callable_object_with_async_call_runs_on_the_loop() -> None:
    class Handler:
        async def __call__(self, ctx: JobContext) -> dict[str, Any]:
            return {"thread": threading.current_thread().name}

    outcome = await execute(Handler(), make_ctx())
    assert outcome == Outcome(success=True, result={"thread": threading.main_thread().name})


def test_struct_round_trip_keeps_whole_numbers_as_int() -> None:
    struct = struct_pb2.Struct()
    struct.update({"n": 3, "f": 2.5, "big": 2.0**60, "s": "x", "b": True, "z": None, "l": [1, {"k": 2}]})
    assert struct_to_dict(struct) == {
        "n": 3,
        "f": 2.5,
        "big": 2.0**60,
        "s": "x",
        "b": True,
        "z": None,
        "l": [1, {"k": 2}],
    }
    assert isinstance(struct_to_dict(struct)["n"], int)
    assert isinstance(struct_to_dict(struct)["big"], float)  # beyond 2**53 a double is not exact
    assert struct_to_dict(dict_to_struct({"a": [1, "b"]})) == {"a": [1, "b"]}
