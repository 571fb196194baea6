"""The exceptions the client raises: one class per gRPC status code a caller
is likely to handle, all under `ChronoschedError`.

The server attaches a `google.rpc.Status` to every error it makes: a
`google.rpc.ErrorInfo` with a machine-readable `reason` (`DAG_NOT_FOUND`,
`CYCLE_DETECTED`, `STALE_ATTEMPT`, ...) and `metadata`, and for a bad
request a `google.rpc.BadRequest` naming every bad field. They are read with
grpcio-status and exposed as attributes, so callers branch on `reason` and
`violations`, never on message text.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "AlreadyExists",
    "ChronoschedError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "OtherError",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "Violation",
    "from_rpc_error",
]


class Violation(NamedTuple):
    """One bad field of a request (from `google.rpc.BadRequest`)."""

    #: The field's path in the request, e.g. `jobs[3].key`.
    field: str
    #: What is wrong with it, for humans.
    description: str
    #: Machine-readable: REQUIRED, INVALID_FORMAT, OUT_OF_RANGE, DUPLICATE, ...
    reason: str


class ChronoschedError(Exception):
    """Base of every error the server (or the client on its behalf) reports."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        domain: str | None = None,
    ) -> None:
        super().__init__(message)
        #: The gRPC status code.
        self.code = code
        #: The server's message, for humans.
        self.message = message
        #: The `google.rpc.ErrorInfo` reason (e.g. `DAG_NOT_FOUND`); None if the
        #: error carried none (e.g. a deadline that ran out on the client).
        self.reason = reason
        #: The `google.rpc.ErrorInfo` metadata (e.g. the counts of NAMESPACE_NOT_EMPTY).
        self.metadata: dict[str, str] = dict(metadata or {})
        #: The `google.rpc.ErrorInfo` domain (`chronosched.dev` for the server's own).
        self.domain = domain

    def __str__(self) -> str:
        why = f" [{self.reason}]" if self.reason else ""
        return f"{self.code.name}{why}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.message!r}, reason={self.reason!r})"


class NotFound(ChronoschedError):
    """The named resource does not exist, or belongs to another namespace."""


class AlreadyExists(ChronoschedError):
    """A resource with the same identity exists (a namespace id, a job key, an edge)."""


class InvalidArgument(ChronoschedError):
    """A malformed request; it changed nothing. `violations` names each bad
    field (the server itemises the first 20; the message gives the count)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        domain: str | None = None,
        violations: list[Violation] | None = None,
    ) -> None:
        super().__init__(code, message, reason=reason, metadata=metadata, domain=domain)
        #: Every bad field the server itemised.
        self.violations: list[Violation] = list(violations or [])

    @property
    def fields(self) -> list[str]:
        """The paths of the bad fields, in the server's order."""
        return [v.field for v in self.violations]


class FailedPrecondition(ChronoschedError):
    """A well-formed request that breaks a rule of the current state;
    `reason` says which (CYCLE_DETECTED, DAG_SEALED, STALE_ATTEMPT, ...)."""


class Unavailable(ChronoschedError):
    """The server (or its database) cannot be reached; trying later may work."""


class DeadlineExceeded(ChronoschedError):
    """The call's deadline passed before an answer came. The call may still
    have taken effect on the server."""


class PermissionDenied(ChronoschedError):
    """The caller may not do this."""


class Unauthenticated(ChronoschedError):
    """The call carried no valid credentials."""


class OtherError(ChronoschedError):
    """Any other status code (INTERNAL, ABORTED, RESOURCE_EXHAUSTED, ...): see `code`."""


_CLASSES: dict[grpc.StatusCode, type[ChronoschedError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def error_class(code: grpc.StatusCode) -> type[ChronoschedError]:
    """The exception class that stands for `code`."""
    return _CLASSES.get(code, OtherError)


def make_error(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str | None = None,
    metadata: dict[str, str] | None = None,
    domain: str | None = None,
    violations: list[Violation] | None = None,
) -> ChronoschedError:
    """The right subclass for `code`, with these details."""
    cls = error_class(code)
    if cls is InvalidArgument:
        return InvalidArgument(
            code, message, reason=reason, metadata=metadata, domain=domain, violations=violations
        )
    return cls(code, message, reason=reason, metadata=metadata, domain=domain)


def _rich_status(call: Any) -> status_pb2.Status | None:
    # A status whose code or message disagrees with the call's own (a proxy
    # rewrote one of them) is ignored rather than trusted half-way.
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        return None
    return status if isinstance(status, status_pb2.Status) else None


def from_rpc_error(exc: grpc.RpcError) -> ChronoschedError:
    """The `ChronoschedError` for a failed call (sync `grpc.RpcError` or
    `grpc.aio.AioRpcError`), with the details of its rich status."""
    call: Any = exc  # both error types are also the call: code(), details(), trailing_metadata()
    if not callable(getattr(call, "code", None)):
        # An RpcError that is no call (none of grpc's own are): nothing to read.
        return OtherError(grpc.StatusCode.UNKNOWN, str(exc))
    code: grpc.StatusCode = call.code()
    message: str = call.details() or ""
    reason: str | None = None
    metadata: dict[str, str] = {}
    domain: str | None = None
    violations: list[Violation] = []
    status = _rich_status(call)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                reason = info.reason or None
                metadata = dict(info.metadata)
                domain = info.domain or None
            elif detail.Is(bad.DESCRIPTOR) and detail.Unpack(bad):
                violations += [Violation(v.field, v.description, v.reason) for v in bad.field_violations]
    return make_error(code, message, reason=reason, metadata=metadata, domain=domain, violations=violations)
