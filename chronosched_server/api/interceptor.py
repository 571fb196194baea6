"""The one place domain errors become gRPC statuses.

Known errors map to canonical codes with `google.rpc.ErrorInfo` (reason,
domain, metadata) and, for bad fields, `google.rpc.BadRequest`. Anything else
is logged with its traceback and returned as INTERNAL with nothing leaked.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from chronosched_server.errors import (
    ERROR_DOMAIN,
    Aborted,
    AlreadyExists,
    DatabaseError,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from chronosched_server.metrics import Metrics

log = logging.getLogger(__name__)

MAX_DETAILED_VIOLATIONS = 20

if TYPE_CHECKING:  # the stubs make RpcMethodHandler generic; the runtime class is not
    Handler = grpc.RpcMethodHandler[Any, Any]

_CODES: list[tuple[type[DomainError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Aborted, grpc.StatusCode.ABORTED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
]


def status_for(exc: DomainError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    code = next((c for cls, c in _CODES if isinstance(exc, cls)), grpc.StatusCode.INTERNAL)
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata))
    details.append(info)
    if isinstance(exc, InvalidArgument):
        # Details travel in a trailer, and gRPC refuses metadata beyond 16 KiB
        # (the client then sees RESOURCE_EXHAUSTED instead of the error), so
        # only the first violations are itemised; the message gives the count.
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field[:200], description=v.description[:300], reason=v.reason
                )
                for v in exc.violations[:MAX_DETAILED_VIOLATIONS]
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    status = status_pb2.Status(code=code.value[0], message=exc.message[:2000], details=details)
    return code, status


def _internal() -> tuple[grpc.StatusCode, status_pb2.Status]:
    return grpc.StatusCode.INTERNAL, status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, method: str, call: _Call
) -> None:
    if isinstance(exc, DatabaseError):
        log.error(
            "database error in %s",
            method,
            exc_info=exc.__cause__ or exc,
            extra={"event": "rpc_database_error"},
        )
        code, status = _internal()
    elif isinstance(exc, DomainError):
        code, status = status_for(exc)
        log.debug("%s -> %s: %s", method, code.name, exc.message, extra={"event": "rpc_refused"})
    else:
        log.exception("unhandled error in %s", method, exc_info=exc, extra={"event": "rpc_internal_error"})
        code, status = _internal()
    call.code = code.name
    await context.abort(
        code, status.message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
    )


class _Call:
    """One call's timing and final code, recorded once it ends."""

    __slots__ = ("code", "method", "metrics", "started")

    def __init__(self, metrics: Metrics, method: str) -> None:
        self.metrics, self.method = metrics, method
        self.code = "OK"
        self.started = time.perf_counter()

    def aborted(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """A servicer (or the auth interceptor) aborted with its own code."""
        code = context.code()
        self.code = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"

    def done(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # A client that cancels a stream may end it either way: the handler is
        # closed (CancelledError, GeneratorExit) or it sees the requests end
        # and returns, possibly before gRPC has marked the call cancelled
        # (streams are therefore counted once the call has ended:
        # `_wrap_stream`). The call was cancelled all the same. Even then
        # gRPC may report the cancel only after the handler's OK went out,
        # and such a stream counts as OK (test_metrics_scripted saw one in
        # about ten runs of the suite).
        if self.code == "OK" and context.cancelled():
            self.code = grpc.StatusCode.CANCELLED.name
        self.metrics.rpc_requests.labels(self.method, self.code).inc()
        self.metrics.rpc_duration.labels(self.method).observe(time.perf_counter() - self.started)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps unary and streaming handlers alike, and counts and times every
    call by method and final status code (the one place that sees both)."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, self.metrics),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method, self.metrics),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method, self.metrics),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, method, self.metrics),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _wrap_unary(fn: Callable[..., Any], method: str, metrics: Metrics) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(metrics, method)
        try:
            return await fn(request, context)
        except grpc.aio.AbortError:
            call.aborted(context)
            raise
        except asyncio.CancelledError:
            call.code = grpc.StatusCode.CANCELLED.name
            raise
        except Exception as exc:
            await _abort(context, exc, method, call)
        finally:
            call.done(context)

    return wrapper


def _wrap_stream(fn: Callable[..., Any], method: str, metrics: Metrics) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(fn):
        # A streaming handler that writes with context.write() and returns
        # nothing (grpc_health's Watch) is awaited; iterating it failed
        # every health Watch with INTERNAL.
        return _wrap_unary(fn, method, metrics)

    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        call = _Call(metrics, method)
        try:
            async for item in fn(request, context):
                yield item
        except grpc.aio.AbortError:
            call.aborted(context)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            call.code = grpc.StatusCode.CANCELLED.name
            raise
        except Exception as exc:
            await _abort(context, exc, method, call)
        finally:
            # Counted when gRPC has ended the call, not when the handler
            # returned: only then does cancelled() know. (The type stubs
            # declare the callback as a class, which no function matches.)
            context.add_done_callback(cast(Any, call.done))

    return wrapper
