"""Namespaces and the idempotency keys that live inside them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeVar

from chronosched_server.errors import AlreadyExists, NamespaceNotEmpty, NotFound
from chronosched_server.storage.db import (
    Conn,
    Database,
    Pending,
    execute,
    fetch_one,
    fetch_record,
    fetch_records,
    pending,
    with_retries,
)
from chronosched_server.storage.records import Namespace

R = TypeVar("R")


async def create(db: Database, namespace_id: str, description: str) -> Namespace:
    params = {"namespace_id": namespace_id, "description": description}
    try:
        async with db.transaction() as conn:
            row = await fetch_record(conn, Namespace, "insert_namespace", params)
    except AlreadyExists as exc:
        message = f"namespace {namespace_id!r} already exists"
        raise AlreadyExists(message, reason=exc.reason, metadata={"namespace_id": namespace_id}) from exc
    assert row is not None
    return row


async def get(db: Database, namespace_id: str) -> Namespace:
    async with db.reads() as conn:
        row = await fetch_record(conn, Namespace, "get_namespace", {"namespace_id": namespace_id})
    if row is None:
        raise NotFound("namespace", namespace_id)
    return row


async def list_page(
    db: Database, after: str | None, limit: int, *, only: str | None = None
) -> list[Namespace]:
    """A page of namespaces in id order; `only` lists that one alone (if it exists)."""
    async with db.reads() as conn:
        return await fetch_records(
            conn, Namespace, "list_namespaces", {"after": after, "limit": limit, "only": only}
        )


async def found_or_404(conn: Conn, found: R | None, namespace_id: str, resource: str, resource_id: str) -> R:
    """`found`, or NOT_FOUND for the resource; when the namespace itself is
    missing, NOT_FOUND names the namespace instead (one rule for every lookup)."""
    if found is None:
        await require(conn, namespace_id)
        raise NotFound(resource, resource_id, namespace_id=namespace_id)
    return found


async def require(conn: Conn, namespace_id: str) -> None:
    """NOT_FOUND unless the namespace exists (checked inside the caller's transaction)."""
    if await fetch_one(conn, "get_namespace", {"namespace_id": namespace_id}) is None:
        raise NotFound("namespace", namespace_id)


async def hold(conn: Conn, namespace_id: str) -> datetime:
    """`require` for writes: NOT_FOUND unless the namespace exists, and its row
    held until the caller's transaction ends, so a concurrent `delete` either
    waits for this write (and then counts what it made) or went first (and
    this is NOT_FOUND, never a half-written row in a deleted namespace).
    Returns the transaction's time (the create_time of the rows it makes)."""
    return await held(await send_hold(conn, namespace_id), namespace_id)


async def send_hold(conn: Conn, namespace_id: str) -> Pending[datetime]:
    """`hold` sent without waiting for its answer (pipeline mode); `held`
    reads it."""
    return await pending(conn, "hold_namespace", {"namespace_id": namespace_id}, lambda row: row["now"])


async def held(sent: Pending[datetime], namespace_id: str) -> datetime:
    """`hold`'s answer to a hold sent by `send_hold`."""
    rows = await sent.fetch()
    if not rows:
        raise NotFound("namespace", namespace_id)
    return rows[0]


async def delete(db: Database, namespace_id: str) -> None:
    """Delete an empty namespace with everything that is only its history.

    Empty means nothing could still run or fire: no live DAG, no unfinished
    job, no unretired definition (FAILED_PRECONDITION with the counts
    otherwise). Finished DAGs and jobs (live and history), the fire ledger,
    retired definitions, pause state and idempotency keys go with it, in one
    transaction."""
    await with_retries(lambda: _delete(db, namespace_id))


async def _delete(db: Database, namespace_id: str) -> None:
    key = {"namespace_id": namespace_id}
    async with db.transaction() as conn:
        if await fetch_one(conn, "lock_namespace", key) is None:
            raise NotFound("namespace", namespace_id)
        left = await fetch_one(conn, "namespace_leftovers", key)
        assert left is not None
        counts = (left["live_dags"], left["unfinished_jobs"], left["unretired_definitions"])
        if any(counts):
            raise NamespaceNotEmpty(namespace_id, *counts)
        await execute(conn, "delete_namespace_work", key)
        await execute(conn, "delete_namespace_history", key)
        await execute(conn, "delete_namespace", key)


class RequestIds:
    """Idempotency for one creation call: `claim` first, `record` last, same transaction."""

    def __init__(self, conn: Conn, namespace_id: str, method: str, request_id: str):
        self.conn = conn
        self.params = {"namespace_id": namespace_id, "method": method, "request_id": request_id}
        self.active = bool(request_id)

    async def claim(self) -> list[uuid.UUID] | None:
        """None if this call is first (go ahead); else the original call's resource ids."""
        return await self.earlier(await self.send_claim())

    async def send_claim(self) -> Pending[str] | None:
        """The claim sent without waiting for its answer (pipeline mode);
        `earlier` reads it. None without a request id."""
        if not self.active:
            return None
        return await pending(self.conn, "claim_request_id", self.params, lambda row: row["request_id"])

    async def earlier(self, sent: Pending[str] | None) -> list[uuid.UUID] | None:
        """`claim`'s answer to a claim sent by `send_claim`."""
        if sent is None or await sent.fetch():
            return None
        row = await fetch_one(self.conn, "get_request_id", self.params)
        assert row is not None
        ids: list[uuid.UUID] = row["resource_ids"]
        return ids

    async def record(self, resource_ids: list[uuid.UUID]) -> None:
        if self.active:
            await execute(self.conn, "set_request_id", {**self.params, "resource_ids": resource_ids})
