"""Who is calling, and may they: the one auth interceptor and RULES, the
table of what each RPC needs (docs/security.md has it in prose).

Every call of a method in RULES presents `authorization: Bearer <token>`.
Before the servicer runs, the interceptor finds the token (the bootstrap
admin token, or a row of `tokens` by id), checks that its scope grants the
method's permission, and that it covers the namespace the request names
(for Dequeue: every namespace its Subscribe asks for). No token, or a
malformed, unknown, expired or revoked one, is UNAUTHENTICATED; too little
scope or another namespace is PERMISSION_DENIED. Nothing has happened by
then. The servicers read the caller with `caller()`: calls that name a job
by a bare id (CompleteJob, FailJob, worker results) are then limited to the
caller's namespace in storage, where a job of another namespace is
NOT_FOUND like a missing one.

Health and reflection stay open, and so does AdminService.Healthz (load
balancers probe it); a method that is neither open nor in RULES is refused,
so a new RPC without a rule cannot slip through (tests/api/test_auth.py also
fails on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from chronosched_server import tokens
from chronosched_server.errors import DomainError, PermissionDenied, Unavailable
from chronosched_server.quotas import Quotas
from chronosched_server.storage import tokens as stored_tokens
from chronosched_server.storage.db import Database
from chronosched_server.tokens import Permission, Principal

log = logging.getLogger(__name__)

# How long a refused client stream waits for its first message (`_let_in`).
FIRST_MESSAGE_WAIT_S = 1.0

if TYPE_CHECKING:  # the stubs make RpcMethodHandler generic; the runtime class is not
    Handler = grpc.RpcMethodHandler[Any, Any]

Ctx = grpc.aio.ServicerContext[Any, Any]

# Namespaces a request asks for: their ids, and whether it asks for all.
Wanted = tuple[list[str], bool]


def _field(name: str) -> Callable[[Any], Wanted]:
    def wanted(request: Any) -> Wanted:
        return [getattr(request, name)], False

    wanted.__name__ = name
    return wanted


def _subscribe(request: Any) -> Wanted:
    # Dequeue's first message; anything else is refused by the servicer.
    if request.WhichOneof("message") != "subscribe":
        return [], False
    return list(request.subscribe.namespaces), request.subscribe.all_namespaces


@dataclass(frozen=True)
class Rule:
    """What a method needs: a permission (None: open, no token at all), and
    how to read the namespaces its request names (None: it names none, or
    only its servicer limits what it returns, as ListNamespaces does). An
    empty namespace field is left to the servicer's validation."""

    need: Permission | None
    namespaces: Callable[[Any], Wanted] | None


_NS = _field("namespace_id")
READ, WRITE = Rule(Permission.READ, _NS), Rule(Permission.WRITE, _NS)
ADMIN = Rule(Permission.ADMIN, None)


def _service(name: str, rules: dict[str, Rule]) -> dict[str, Rule]:
    return {f"/chronosched.v1.{name}/{method}": rule for method, rule in rules.items()}


RULES: dict[str, Rule] = {
    **_service(
        "NamespaceService",
        {
            "CreateNamespace": ADMIN,
            # Any valid token; a token for one namespace sees only that one.
            "ListNamespaces": Rule(Permission.READ, None),
            "GetNamespace": READ,
            "DeleteNamespace": ADMIN,
        },
    ),
    **_service(
        "DefinitionService",
        {
            "CreateDefinition": WRITE,
            "ListDefinitions": READ,
            "GetDefinition": READ,
            "Tick": WRITE,
            "RetireDefinition": WRITE,
        },
    ),
    **_service(
        "DagService",
        {
            "CreateDag": WRITE,
            "ListDags": READ,
            "GetDag": READ,
            "DeleteDag": WRITE,
            "StartDag": WRITE,
            "CancelDag": WRITE,
            "CreateJobs": WRITE,
            "ListDagJobs": READ,
            "AddDependency": WRITE,
            "AddDependencies": WRITE,
            "ListDependencies": READ,
        },
    ),
    **_service(
        "JobService",
        {
            "GetJob": READ,
            "ListJobs": READ,
            "EnqueueJobs": WRITE,
            # namespace_id is optional here: without it, storage limits the
            # job to the token's namespace.
            "CompleteJob": Rule(Permission.RESULT, _NS),
            "FailJob": Rule(Permission.RESULT, _NS),
        },
    ),
    **_service(
        "ScheduleService",
        {"ListFires": READ, "GetSchedule": READ, "PauseSchedule": WRITE, "ResumeSchedule": WRITE},
    ),
    **_service("AdminService", {"Prune": ADMIN, "Healthz": Rule(None, None)}),
    **_service(
        "WorkerService",
        {
            "Dequeue": Rule(Permission.DEQUEUE, _subscribe),
            # namespace_id is optional: without it, a token for one namespace
            # sees only the workers serving that namespace (the servicer).
            "ListWorkers": READ,
        },
    ),
    **_service("TokenService", {"CreateToken": ADMIN, "ListTokens": ADMIN, "RevokeToken": ADMIN}),
}

# Services of gRPC itself that any client may use without a token.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)

_CALLER: ContextVar[Principal] = ContextVar("chronosched_caller")


def caller() -> Principal:
    """The principal of the call being served (set by AuthInterceptor)."""
    return _CALLER.get()


class Verifier:
    """Turns a presented token into a principal: the bootstrap admin token
    (compared by digest, constant-time) or a stored token."""

    def __init__(self, db: Database, admin_token: str | None):
        self.db = db
        self._bootstrap = tokens.digest(admin_token) if admin_token else None
        # Ids of tokens whose last_used_time is due an update.
        self.stale: set[str] = set()

    async def principal(self, presented: str) -> Principal:
        if self._bootstrap is not None and tokens.same(presented, self._bootstrap):
            return tokens.BOOTSTRAP_ADMIN
        token_id = tokens.token_id_of(presented)
        if token_id is None:
            raise tokens.invalid()
        row = await stored_tokens.find(self.db, token_id)
        stored = None
        if row is not None:
            stored = tokens.Stored(
                row.token_id, row.token_hash, row.scope, row.namespace_id, row.expired, row.revoked
            )
        principal = tokens.check(presented, stored)
        if row is not None and row.use_stale:
            self.stale.add(row.token_id)
        return principal


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks every call against RULES before its servicer runs. Without a
    verifier (the server runs with --insecure-no-auth) every caller is
    unrestricted; the servicers still read `caller()`."""

    def __init__(self, verifier: Verifier | None, recheck_s: float = 30.0, quotas: Quotas | None = None):
        self.verifier = verifier
        self.recheck_s = recheck_s
        self.quotas = quotas

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        rule = RULES.get(method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, rule),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method, rule, streaming_request=False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, method, rule, streaming_request=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, method, rule, streaming_request=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    # -- the checks --

    async def _admit(
        self, context: Ctx, method: str, rule: Rule | None
    ) -> tuple[Principal | None, str | None]:
        """The caller's principal and the token it presented, once its token
        and scope allow the method (namespaces come next); no principal for
        an open method."""
        if self.verifier is None:
            return tokens.UNRESTRICTED, None
        if rule is None:
            # Served but not in the table: refused rather than guessed at.
            raise PermissionDenied(f"{method} has no access rule; no token may call it", reason="NO_RULE")
        if rule.need is None:
            return None, None
        values = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
        presented = tokens.bearer([v if isinstance(v, str) else v.decode(errors="replace") for v in values])
        principal = await self.verifier.principal(presented)
        tokens.require(
            principal, rule.need, method.lstrip("/").replace("chronosched.v1.", "").replace("/", ".")
        )
        return principal, presented

    def _caller_key(self, principal: Principal | None, context: Ctx) -> str:
        """Whom a quota counts: the token, or without one (no auth, or an
        open method) the peer's address without its port."""
        if principal is not None and principal.token_id is not None:
            return f"token:{principal.token_id}"
        if principal is tokens.BOOTSTRAP_ADMIN:
            return "token:bootstrap-admin"
        peer = context.peer() or "unknown"
        return "peer:" + peer.rsplit(":", 1)[0]

    def _within_quota(self, principal: Principal | None, context: Ctx) -> str | None:
        """Takes one request from the caller's quota (ResourceExhausted when
        it is spent); returns the caller's key, None when quotas are off."""
        if self.quotas is None or not self.quotas.config.enabled:
            return None
        key = self._caller_key(principal, context)
        self.quotas.admit(key)
        return key

    def _check_namespaces(self, principal: Principal | None, rule: Rule | None, request: Any) -> None:
        if self.verifier is None or principal is None or rule is None or rule.namespaces is None:
            return
        names, every = rule.namespaces(request)
        tokens.require_namespaces(principal, names, every)

    async def _touch(self, principal: Principal | None) -> None:
        """Record the token's use once its call is allowed (at most once a
        minute per token); a failure here never fails the call."""
        if self.verifier is None or principal is None or principal.token_id is None:
            return
        if principal.token_id in self.verifier.stale:
            self.verifier.stale.discard(principal.token_id)
            try:
                await stored_tokens.touch(self.verifier.db, principal.token_id)
            except Exception:
                log.debug("could not record the use of token %s", principal.token_id, exc_info=True)

    async def _let_in(
        self,
        context: Ctx,
        method: str,
        rule: Rule | None,
        request: Any,
        streaming_request: bool,
        *,
        hold_slot: bool = False,
    ) -> tuple[Principal | None, str | None, str | None]:
        """`_admit`, `_within_quota` and, with `hold_slot`, one of the
        caller's stream slots: the principal, the token presented and the
        quota key (whose slot, when taken, the caller must give back). A
        client stream refused by any of them is answered only once its first
        message came (or FIRST_MESSAGE_WAIT_S passed): a client writes that
        message just after opening the call, and had the call ended before,
        gRPC's client would fail the write and report INTERNAL ("Internal
        error from Core") in place of the refusal."""
        try:
            principal, presented = await self._admit(context, method, rule)
            quota_key = self._within_quota(principal, context)
            if hold_slot and quota_key is not None:
                assert self.quotas is not None
                self.quotas.open_stream(quota_key)
            return principal, presented, quota_key
        except DomainError:
            if streaming_request:
                await _first_message(request)
            raise

    async def _admitted(
        self, request: Any, principal: Principal | None, rule: Rule | None, streaming_request: bool
    ) -> Any:
        """After `_let_in`: the request checked against the namespaces the
        principal covers (a stream's first message, as it comes), the
        token's use recorded and the caller set for the servicer; returns
        the request (a stream wrapped to check its first message)."""
        if streaming_request:
            request = self._checked(request, principal, rule)
        else:
            self._check_namespaces(principal, rule, request)
            await self._touch(principal)
        if principal is not None:
            _CALLER.set(principal)
        return request

    # -- the wrappers --

    def _unary(
        self, fn: Callable[..., Any], method: str, rule: Rule | None, *, streaming_request: bool = False
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: Ctx) -> Any:
            principal, _, _ = await self._let_in(context, method, rule, request, streaming_request)
            request = await self._admitted(request, principal, rule, streaming_request)
            return await fn(request, context)

        return wrapper

    def _stream(
        self, fn: Callable[..., Any], method: str, rule: Rule | None, *, streaming_request: bool
    ) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(fn):
            # A handler that writes with context.write() (none of ours).
            return self._unary(fn, method, rule, streaming_request=streaming_request)

        async def wrapper(request: Any, context: Ctx) -> AsyncIterator[Any]:
            # A worker's stream holds one of its caller's stream slots until
            # it ends, however it ends.
            principal, presented, quota_key = await self._let_in(
                context, method, rule, request, streaming_request, hold_slot=streaming_request
            )
            slot = quota_key is not None and streaming_request
            try:
                request = await self._admitted(request, principal, rule, streaming_request)
                recheck = presented is not None and principal is not None and principal.token_id is not None
                recheck_at = time.monotonic() + self.recheck_s
                async with contextlib.aclosing(fn(request, context)) as items:
                    async for item in items:
                        if recheck and time.monotonic() >= recheck_at:
                            # A long stream (a worker's Dequeue) outlives the
                            # check at its start: look again, so a revoked or
                            # expired token's stream ends within recheck_s (a
                            # Dequeue stream yields at least every keepalive
                            # interval).
                            assert self.verifier is not None and presented is not None
                            try:
                                await self.verifier.principal(presented)
                            except Unavailable:
                                # The database is away: the stream can do
                                # little meanwhile anyway, but a blip must not
                                # end every worker's stream. Only a refused
                                # token does.
                                log.debug("could not recheck token %s; keeping its stream", principal)
                            recheck_at = time.monotonic() + self.recheck_s
                        yield item
            finally:
                if slot:
                    assert self.quotas is not None and quota_key is not None
                    self.quotas.close_stream(quota_key)

        return wrapper

    def _checked(
        self, requests: AsyncIterator[Any], principal: Principal | None, rule: Rule | None
    ) -> AsyncIterator[Any]:
        """The request stream, with its first message checked against the
        namespaces the principal covers before the servicer sees it."""

        async def gen() -> AsyncIterator[Any]:
            first = True
            async for request in requests:
                if first:
                    first = False
                    self._check_namespaces(principal, rule, request)
                    await self._touch(principal)
                yield request

        return gen()


async def _first_message(requests: AsyncIterator[Any]) -> None:
    """Read one request of a stream about to be refused, whatever it holds;
    nothing read is used."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(FIRST_MESSAGE_WAIT_S):
            await anext(requests)
