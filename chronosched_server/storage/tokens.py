"""Bearer tokens: stored as digests, looked up by id (docs/security.md)."""

from __future__ import annotations

from datetime import timedelta

from chronosched_server.errors import NotFound
from chronosched_server.storage import namespaces
from chronosched_server.storage.db import Database, execute, fetch_record, fetch_records
from chronosched_server.storage.records import Token, TokenCheck


async def create(
    db: Database,
    *,
    token_id: str,
    digest: bytes,
    scope: str,
    namespace_id: str | None,
    description: str,
    ttl: timedelta | None,
) -> Token:
    """Store a new token; NOT_FOUND if its namespace does not exist."""
    async with db.transaction() as conn:
        if namespace_id is not None:
            # Held until the insert commits, so a concurrent DeleteNamespace
            # either deletes this token with the namespace or went first.
            await namespaces.hold(conn, namespace_id)
        row = await fetch_record(
            conn,
            Token,
            "insert_token",
            {
                "token_id": token_id,
                "token_hash": digest,
                "scope": scope,
                "namespace_id": namespace_id,
                "description": description,
                "ttl": ttl,
            },
        )
    assert row is not None
    return row


async def find(db: Database, token_id: str) -> TokenCheck | None:
    async with db.reads() as conn:
        return await fetch_record(conn, TokenCheck, "find_token", {"token_id": token_id})


async def touch(db: Database, token_id: str) -> None:
    """Record that the token was used now (at most once a minute changes the row)."""
    async with db.transaction() as conn:
        await execute(conn, "touch_token", {"token_id": token_id})


async def list_page(
    db: Database,
    *,
    namespace_id: str | None,
    every_namespace: bool,
    inactive: bool,
    after: str | None,
    limit: int,
) -> list[Token]:
    async with db.reads() as conn:
        return await fetch_records(
            conn,
            Token,
            "list_tokens",
            {
                "namespace_id": namespace_id,
                "every_namespace": every_namespace,
                "inactive": inactive,
                "after": after,
                "limit": limit,
            },
        )


async def revoke(db: Database, token_id: str) -> Token:
    """Revoke a token (again: unchanged); NOT_FOUND if there is none."""
    async with db.transaction() as conn:
        row = await fetch_record(conn, Token, "revoke_token", {"token_id": token_id})
    if row is None:
        raise NotFound("token", token_id)
    return row


async def revoke_described(db: Database, description: str) -> int:
    """Revoke every live token with exactly this description; how many."""
    async with db.transaction() as conn:
        return await execute(conn, "revoke_tokens_described", {"description": description})
