"""TokenService: create, list and revoke bearer tokens (admin only, by RULES)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from chronosched.v1 import token_pb2, token_pb2_grpc
from chronosched_server import ids, render, tokens, validation
from chronosched_server.api.common import paginate
from chronosched_server.errors import Why
from chronosched_server.storage import tokens as stored
from chronosched_server.storage.db import Database
from chronosched_server.validation import Violations

Ctx = grpc.aio.ServicerContext[Any, Any]

_SCOPES = {number: name for name, number in render.TOKEN_SCOPE.items()}
MAX_TTL = timedelta(days=36500)


def _namespace(v: Violations, path: str, value: str) -> str | None:
    """A namespace id or `*` (every namespace, None); "" only when allowed by the caller."""
    if value == tokens.ALL_NAMESPACES:
        return None
    validation.check_slug(v, path, value)
    return value


class TokenServicer(token_pb2_grpc.TokenServiceServicer):
    def __init__(self, db: Database):
        self.db = db

    async def CreateToken(
        self, request: token_pb2.CreateTokenRequest, context: Ctx
    ) -> token_pb2.CreateTokenResponse:
        v = Violations()
        scope = _SCOPES.get(request.scope)
        if scope is None:
            v.add("scope", "name a scope: SCOPE_READ, SCOPE_WRITE, SCOPE_WORKER or SCOPE_ADMIN", Why.REQUIRED)
        namespace: str | None = None
        if scope == "admin":
            if request.namespace_id not in ("", tokens.ALL_NAMESPACES):
                v.add(
                    "namespace_id",
                    "an admin token is for every namespace: leave namespace_id empty or `*`",
                    Why.CONFLICT,
                )
        elif not request.namespace_id:
            v.add("namespace_id", "name the token's namespace, or `*` for every namespace", Why.REQUIRED)
        else:
            namespace = _namespace(v, "namespace_id", request.namespace_id)
        validation.check_text(v, "description", request.description, validation.MAX_DESCRIPTION)
        ttl = None
        if request.HasField("ttl"):
            ttl = validation.check_duration(v, "ttl", request.ttl, timedelta(seconds=1), MAX_TTL)
        v.raise_if_any()
        assert scope is not None
        new = tokens.new_token()
        row = await stored.create(
            self.db,
            token_id=new.token_id,
            digest=new.digest,
            scope=scope,
            namespace_id=namespace,
            description=request.description,
            ttl=ttl,
        )
        return token_pb2.CreateTokenResponse(token=render.token(row), secret=new.text)

    async def ListTokens(
        self, request: token_pb2.ListTokensRequest, context: Ctx
    ) -> token_pb2.ListTokensResponse:
        v = Violations()
        limit = validation.page_size(v, request.page_size)
        after = ids.decode_page_token(request.page_token)
        namespace = _namespace(v, "namespace_id", request.namespace_id) if request.namespace_id else None
        v.raise_if_any()
        rows = await stored.list_page(
            self.db,
            namespace_id=namespace,
            every_namespace=request.namespace_id == tokens.ALL_NAMESPACES,
            inactive=request.show_inactive,
            after=after,
            limit=limit + 1,
        )
        page, token = paginate(rows, limit, lambda r: r.token_id)
        return token_pb2.ListTokensResponse(tokens=[render.token(r) for r in page], next_page_token=token)

    async def RevokeToken(self, request: token_pb2.RevokeTokenRequest, context: Ctx) -> token_pb2.Token:
        v = Violations()
        validation.check_pattern(v, "token_id", request.token_id, tokens.TOKEN_ID_RE, required=True)
        v.raise_if_any()
        return render.token(await stored.revoke(self.db, request.token_id))
