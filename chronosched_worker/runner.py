"""Running one attempt: call the handler, enforce its time limit and
cancellation, and turn whatever happened into an Outcome the server accepts.

Nothing here knows about gRPC streams; the Worker feeds it jobs and sends the
outcomes. Tests drive this layer directly.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2

from chronosched_worker.context import Handler, JobContext, JobFailed, NonRetryable
from chronosched_worker.threads import run_in_thread

# The server's limits (worker.proto JobResult): results over 1 MiB or errors
# over 64 KiB would be refused, and a refused result would be resent after
# every reconnect. Enforce them here so the attempt fails with a clear message.
MAX_ERROR_BYTES = 64 * 1024
MAX_RESULT_BYTES = 1024 * 1024

# Whole numbers below this survive the double that Struct stores them as.
_MAX_EXACT_INT = 2**53


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, ready to become a JobResult."""

    success: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    non_retryable: bool = False

    @classmethod
    def ok(cls, result: dict[str, Any]) -> Outcome:
        return cls(success=True, result=result)

    @classmethod
    def failed(cls, error: str, *, non_retryable: bool = False) -> Outcome:
        return cls(success=False, error=truncate_utf8(error, MAX_ERROR_BYTES), non_retryable=non_retryable)


def truncate_utf8(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def describe(exc: BaseException) -> str:
    """The error text for an exception raised by a handler."""
    if isinstance(exc, JobFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def outcome_of_value(value: Any) -> Outcome:
    """Map a handler's return value: None -> {}, dict -> itself, else {"value": v}."""
    if value is None:
        value = {}
    elif not isinstance(value, dict):
        value = {"value": value}
    try:
        # A round trip through JSON both validates the value (no NaN, no
        # arbitrary objects) and normalises it to what Struct can hold
        # (tuples become lists, non-string keys fail loudly below).
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        return Outcome.failed(f"result is not JSON-serialisable: {type(exc).__name__}: {exc}")
    size = len(encoded.encode("utf-8"))
    if size > MAX_RESULT_BYTES:
        return Outcome.failed(f"result too large: {size} bytes of JSON, the limit is {MAX_RESULT_BYTES}")
    normalised: dict[str, Any] = json.loads(encoded)
    return Outcome.ok(normalised)


def outcome_of_exception(exc: BaseException) -> Outcome:
    return Outcome.failed(describe(exc), non_retryable=isinstance(exc, NonRetryable))


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python values.

    Struct keeps every number as a double; whole numbers come back as int, as
    json.loads would give them for the JSON the client wrote.
    """
    return {key: _value_to_python(value) for key, value in struct.fields.items()}


def _value_to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value_to_python(v) for v in value.list_value.values]
    if kind == "number_value":
        number = value.number_value
        if math.isfinite(number) and number.is_integer() and abs(number) < _MAX_EXACT_INT:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def dict_to_struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def is_async_handler(handler: Handler) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    # Callable objects with an `async def __call__`.
    call = getattr(handler, "__call__", None)  # noqa: B004 - we want the method, not callable()
    return inspect.iscoroutinefunction(call)


async def invoke(handler: Handler, ctx: JobContext) -> Any:
    """Call the handler: async ones on this loop, sync ones in a thread."""
    if is_async_handler(handler):
        return await handler(ctx)
    value = await run_in_thread(lambda: handler(ctx), name=f"chronosched-job-{ctx.job_id}-{ctx.attempt}")
    if inspect.isawaitable(value):
        # A plain function that returns a coroutine (e.g. a lambda around an
        # async function) still means "run this on the loop".
        return await value
    return value


def format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


async def execute(handler: Handler, ctx: JobContext, *, timeout_s: float | None = None) -> Outcome:
    """Run one attempt to its Outcome.

    The attempt stops early when `ctx.cancelled` is set (reported as
    "cancelled: <reason>") or when `timeout_s` passes ("execution timeout
    after Ns"); either way the handler is cancelled and its clean-up (e.g.
    killing a subprocess) is awaited before the outcome is returned, so a
    result never overtakes the work it reports on.

    Cancelling the task that awaits `execute` (the worker giving up past its
    shutdown grace) cancels the handler the same way and propagates: there is
    no outcome to report then.
    """
    inner = asyncio.ensure_future(invoke(handler, ctx))
    # One future woken by whichever comes first (the handler ends, a stop is
    # requested, the time limit passes) instead of asyncio.wait over a task
    # that waits for the stop: two tasks fewer per attempt, which is most of
    # what the worker spends on a no-op job.
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake(*_: object) -> None:
        if not woken.done():
            woken.set_result(None)

    inner.add_done_callback(wake)
    forget = ctx.cancelled.when_set(wake)
    timer = loop.call_later(timeout_s, wake) if timeout_s is not None else None
    try:
        await woken
    except asyncio.CancelledError:
        ctx.cancelled.set("worker shutting down")
        await _stop(inner)
        raise
    finally:
        inner.remove_done_callback(wake)
        forget()
        if timer is not None:
            timer.cancel()

    if inner.done():
        return _outcome_of_task(inner)
    if ctx.cancelled.requested():
        failure = f"cancelled: {ctx.cancelled.reason}"
    else:
        assert timeout_s is not None
        failure = f"execution timeout after {format_seconds(timeout_s)}"
        ctx.cancelled.set(failure)
    await _stop(inner)
    return Outcome.failed(failure)


def _outcome_of_task(task: asyncio.Future[Any]) -> Outcome:
    if task.cancelled():
        return Outcome.failed("CancelledError: the handler cancelled itself")
    exc = task.exception()
    if exc is not None:
        return outcome_of_exception(exc)
    return outcome_of_value(task.result())


async def _stop(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has really finished (its clean-up done)."""
    task.cancel()
    # asyncio.wait never raises the task's exception and, unlike awaiting the
    # task, does not cancel it again if we are cancelled meanwhile.
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # mark retrieved: the outcome is already decided
