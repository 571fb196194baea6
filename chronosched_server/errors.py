"""Domain errors: what went wrong in the scheduler's own terms.

The storage layer turns database errors into these (by constraint name), and
one gRPC interceptor turns these into status codes with `google.rpc.ErrorInfo`
and `BadRequest` details. Nothing else builds status codes.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR_DOMAIN = "chronosched.dev"


class Why:
    """Machine-readable reasons of field violations (BadRequest.FieldViolation.reason)."""

    REQUIRED = "REQUIRED"
    INVALID_FORMAT = "INVALID_FORMAT"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    TOO_LONG = "TOO_LONG"
    TOO_MANY = "TOO_MANY"
    TOO_FEW = "TOO_FEW"
    UNKNOWN_VALUE = "UNKNOWN_VALUE"
    NOT_FOUND = "NOT_FOUND"
    DUPLICATE = "DUPLICATE"
    SELF_EDGE = "SELF_EDGE"
    CONFLICT = "CONFLICT"
    UNEXPECTED = "UNEXPECTED"
    # Given only by Envoy's REST check (envoy/lua/rest_check.lua), which sees
    # the JSON before it becomes protobuf: a gRPC request cannot carry these.
    INVALID_JSON = "INVALID_JSON"
    WRONG_TYPE = "WRONG_TYPE"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field, named by its path in the request (e.g. `jobs[3].key`),
    with a machine-readable reason (a `Why` value)."""

    field: str
    description: str
    reason: str


class DomainError(Exception):
    """Base of every error a client may see; `reason` is the ErrorInfo reason."""

    reason: str = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    """A malformed field; the request changed nothing."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], *, reason: str | None = None):
        shown = "; ".join(f"{v.field}: {v.description}" for v in violations[:5])
        more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(f"invalid request: {shown}{more}", reason=reason)
        self.violations = violations

    @classmethod
    def one(cls, field: str, description: str, why: str, *, reason: str | None = None) -> InvalidArgument:
        return cls([FieldViolation(field, description, why)], reason=reason)


class NotFound(DomainError):
    """The named resource does not exist (in this namespace)."""

    reason = "NOT_FOUND"

    def __init__(self, resource: str, resource_id: str, *, namespace_id: str | None = None):
        where = f" in namespace {namespace_id!r}" if namespace_id else ""
        super().__init__(
            f"{resource} {resource_id!r} not found{where}",
            reason=f"{resource.upper()}_NOT_FOUND",
            metadata={"resource": resource, "id": resource_id},
        )


class AlreadyExists(DomainError):
    """A resource with the same identity exists."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The request is well-formed but breaks a rule of the current state."""

    reason = "FAILED_PRECONDITION"


class DefinitionRetired(FailedPrecondition):
    """New work named a retired definition version: nothing makes jobs of it
    any more (Tick, EnqueueJobs, CreateDag, CreateJobs, cron fires, pause/resume of its
    schedule). `where` is the request field that named it, if one did."""

    reason = "DEFINITION_RETIRED"

    def __init__(
        self, namespace_id: str, name: str, def_id: str, version: int, retire_time: str, *, where: str = ""
    ):
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}definition {name!r} version {version} ({def_id}) in namespace {namespace_id!r}"
            f" is retired (since {retire_time}); create the name again for a new live version",
            metadata={
                "namespace_id": namespace_id,
                "name": name,
                "def_id": def_id,
                "version": str(version),
                "retire_time": retire_time,
                **({"field": where} if where else {}),
            },
        )


class NamespaceNotEmpty(FailedPrecondition):
    """DeleteNamespace found work or live definitions left; the counts say what."""

    reason = "NAMESPACE_NOT_EMPTY"

    def __init__(self, namespace_id: str, live_dags: int, unfinished_jobs: int, unretired_definitions: int):
        def count(n: int, what: str) -> str:
            return f"{n} {what}" if n == 1 else f"{n} {what}s"

        super().__init__(
            f"namespace {namespace_id!r} is not empty: {count(live_dags, 'live DAG')},"
            f" {count(unfinished_jobs, 'unfinished job')},"
            f" {count(unretired_definitions, 'unretired definition')};"
            " cancel or delete the DAGs, let the jobs finish (or fail them)"
            " and retire the definitions first",
            metadata={
                "namespace_id": namespace_id,
                "live_dags": str(live_dags),
                "unfinished_jobs": str(unfinished_jobs),
                "unretired_definitions": str(unretired_definitions),
            },
        )


class Unauthenticated(DomainError):
    """No token, or one that is malformed, unknown, expired or revoked."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """A valid token whose scope or namespace does not allow the call."""

    reason = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    """A caller went over a quota (requests a second, open streams); nothing
    was done. ErrorInfo names the limit; retrying later works."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, limit: str, retry_after_s: float | None = None) -> None:
        metadata = {"limit": limit}
        if retry_after_s is not None:
            metadata["retry_after_s"] = f"{retry_after_s:.3f}"
        super().__init__(message, metadata=metadata)


class Aborted(DomainError):
    """A transaction lost a conflict (deadlock, serialization); retrying may work."""

    reason = "ABORTED"


class Unavailable(DomainError):
    """A dependency (the database) cannot be reached, or this server is
    stopping; retrying later (elsewhere) may work."""

    reason = "UNAVAILABLE"


class DatabaseError(DomainError):
    """The database refused a statement in a way the storage layer does not
    map to anything above (most likely a bug). Clients see INTERNAL and a
    message that leaks nothing; the database's own error is the __cause__."""

    reason = "DATABASE_ERROR"

    def __init__(self) -> None:
        super().__init__("internal error")
