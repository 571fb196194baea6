"""Connection pool and the one place database errors become domain errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import AsyncCursor
from psycopg import errors as pgerrors
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from chronosched_server.errors import (
    Aborted,
    AlreadyExists,
    DatabaseError,
    DomainError,
    FailedPrecondition,
    Unavailable,
)
from chronosched_server.storage.queries import q
from chronosched_server.storage.records import from_row, from_rows, from_tuples

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[DictRow]

# Constraint name -> the error a client sees. Mapped by name, never by message
# text, so rewording a PostgreSQL message cannot change an API error.
_CONSTRAINT_ERRORS: dict[str, tuple[type[DomainError], str, str]] = {
    "namespaces_pkey": (AlreadyExists, "NAMESPACE_EXISTS", "namespace already exists"),
    "job_definitions_immutable": (
        FailedPrecondition,
        "DEFINITION_IMMUTABLE",
        "job definitions are immutable; create a new version instead",
    ),
    "jobs_dag_key_key": (AlreadyExists, "JOB_KEY_EXISTS", "a job with this key already exists in the DAG"),
    "dependencies_pkey": (AlreadyExists, "DEPENDENCY_EXISTS", "the dependency already exists"),
}


def translate(exc: psycopg.Error) -> DomainError:
    """Turn a database error into the domain error a client should see."""
    constraint = exc.diag.constraint_name if isinstance(exc, psycopg.DatabaseError) else None
    if constraint in _CONSTRAINT_ERRORS:
        cls, reason, message = _CONSTRAINT_ERRORS[constraint]
        # No table or constraint names leave the storage layer; the caller
        # that knows which resource it was names it (e.g. namespaces.create).
        return cls(message, reason=reason)
    if isinstance(exc, pgerrors.DeadlockDetected | pgerrors.SerializationFailure):
        return Aborted(f"transaction conflict: {type(exc).__name__}; retry", reason="TRANSACTION_CONFLICT")
    if isinstance(exc, psycopg.OperationalError | pgerrors.AdminShutdown | pgerrors.CannotConnectNow):
        return Unavailable(f"database unavailable: {type(exc).__name__}", reason="DATABASE_UNAVAILABLE")
    # Anything else is ours to fix, not the caller's to handle: one error
    # type, so nothing above storage/ ever catches a psycopg exception.
    return DatabaseError()


@contextmanager
def _domain_errors() -> Iterator[None]:
    """Around every use of a pooled connection: database errors leave as
    domain errors, and so does a pool that cannot hand one out."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc
    except TimeoutError as exc:  # pool exhausted or database unreachable
        raise Unavailable("database unavailable: no connection", reason="DATABASE_UNAVAILABLE") from exc


async def _configure(conn: Conn) -> None:
    # Committed: a session setting made in a transaction rolled back is undone.
    await conn.execute(q("configure_session"))
    await conn.commit()


class Database:
    """The server's connection pool; every use of a connection goes through
    one of its context managers (a transaction, a pipelined one, one in
    steps, reads, or a single statement), which translate database errors."""

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 10):
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=False,
            # Requests wait at most this long for a connection; beyond it the
            # database is treated as unavailable rather than hanging clients.
            # No per-checkout health check: it costs a round trip on every
            # transaction; a broken connection fails its transaction (as
            # UNAVAILABLE) and the pool replaces it.
            timeout=10.0,
            reconnect_timeout=0,
            configure=_configure,
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A connection inside one transaction; database errors leave as domain errors."""
        with _domain_errors():
            async with self.pool.connection() as conn, conn.transaction():
                yield conn

    @asynccontextmanager
    async def pipelined_transaction(self, *, generic_plans: bool = False) -> AsyncIterator[Conn]:
        """Like transaction(), in pipeline mode: BEGIN, the statements up to the
        first answer read, and COMMIT travel without waiting for each other,
        so a transaction that reads its answers only after the block costs one
        round trip. BEGIN and COMMIT are statements of their own, sent in the
        pipeline as `steps` sends them: psycopg's transaction() in a pipeline
        waits for its BEGIN alone, then for its COMMIT, and syncs once more
        on leaving (a libpq trace showed four round trips where one would
        do). Committed only if the block ends without an exception; rolled
        back otherwise, and when a statement failed. With `generic_plans`,
        its prepared statements run on their generic plans
        (`use_generic_plans`), in the same round trip."""
        async with self.steps() as conn, conn.pipeline():
            await begin(conn)
            if generic_plans:
                await execute(conn, "use_generic_plans", {})
            yield conn
            await commit(conn)

    @asynccontextmanager
    async def steps(self) -> AsyncIterator[Conn]:
        """One transaction sent in steps, for work that mixes pipelined
        statements with COPY (which pipeline mode cannot carry). The caller
        opens it with `begin` in its first `async with conn.pipeline()` and
        ends it with `commit` in its last, and reads a step's answers after
        its pipeline block: a block then costs one round trip (psycopg syncs
        once more on leaving a pipeline if answers were read inside it, and
        an implicit BEGIN would sync alone). The connection is in autocommit
        so that BEGIN and COMMIT are statements like the others. Rolled back
        unless committed; database errors leave as domain errors."""
        async with self.statement() as conn:
            try:
                yield conn
            finally:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    # A broken connection cannot roll back; the pool then
                    # discards it, and the server ended its transaction.
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("rollback")

    @asynccontextmanager
    async def reads(self) -> AsyncIterator[Conn]:
        """A connection for reads only, in autocommit. Under READ COMMITTED
        (the server's level) each statement of a transaction takes a
        snapshot of its own anyway, so BEGIN and COMMIT around reads would
        buy nothing and cost two round trips. Database errors leave as
        domain errors."""
        async with self.statement() as conn:
            yield conn

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[Conn]:
        """A connection for one statement that is its own transaction
        (autocommit): one round trip, where BEGIN and COMMIT would add two.
        Only for a single statement (but see `steps` and `reads`); database
        errors leave as domain errors."""
        with _domain_errors():
            async with self.pool.connection() as conn:
                await conn.set_autocommit(True)
                try:
                    yield conn
                finally:
                    await conn.set_autocommit(False)

    async def ping(self, wait_s: float = 2.0) -> bool:
        try:
            async with self.pool.connection(timeout=wait_s) as conn:
                await conn.execute("select 1")
            return True
        except (psycopg.Error, TimeoutError):
            return False


T = TypeVar("T")
R = TypeVar("R")


async def with_retries(attempt: Callable[[], Awaitable[T]], tries: int = 3) -> T:
    """Run a whole transaction again when it lost a conflict (deadlock,
    serialization failure); PostgreSQL rolled it back, so nothing is doubled."""
    for n in range(1, tries + 1):
        try:
            return await attempt()
        except Aborted:
            if n == tries:
                raise
    raise AssertionError("unreachable")


class Pending(Generic[R]):
    """The rows of a statement sent in a pipeline, read (as records) once the
    pipeline has flushed; a database error then leaves as a domain error."""

    def __init__(self, cursor: AsyncCursor[Any], make: Callable[[list[Any]], list[R]]) -> None:
        self._cursor = cursor
        self._make = make

    async def fetch(self) -> list[R]:
        try:
            rows = await self._cursor.fetchall()
        except psycopg.Error as exc:
            raise translate(exc) from exc
        return self._make(rows)


async def pending(conn: Conn, name: str, params: dict[str, Any], make: Callable[[DictRow], R]) -> Pending[R]:
    """Send a named statement without waiting for its rows (pipeline mode)."""
    return Pending(await conn.execute(q(name), params), lambda rows: [make(row) for row in rows])


async def pending_records(conn: Conn, name: str, params: dict[str, Any], cls: type[R]) -> Pending[R]:
    """`pending` for rows read as records of `cls` (from tuple rows: `from_tuples`)."""
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(q(name), params)
    return Pending(
        cursor, lambda rows: from_tuples(cls, [column.name for column in cursor.description or ()], rows)
    )


async def begin(conn: Conn) -> None:
    """Open a `Database.steps` transaction (in its first pipeline)."""
    await conn.execute("begin")


async def commit(conn: Conn) -> None:
    """End a `Database.steps` transaction (in its last pipeline)."""
    await conn.execute("commit")


async def isolating(
    items: Sequence[T], run: Callable[[Sequence[T]], Awaitable[R]], *, together: bool = True
) -> list[tuple[Sequence[T], R | DomainError]]:
    """Run `run` (one transaction) over all `items` at once; if the database
    refuses that batch for a reason other than being away, run it over each
    item alone, so one item that breaks its transaction holds back nothing
    else. Returns (the items, what `run` returned or the error it raised) per
    transaction tried. Unavailable is never split up (no smaller batch would
    get through). With `together=False` each item goes alone from the start.
    The dispatcher (results) and the cron scheduler (fires) both use it."""
    if together and items:
        try:
            return [(items, await run(items))]
        except Unavailable as exc:
            return [(items, exc)]
        except DomainError as exc:
            if len(items) == 1:
                return [(items, exc)]
            log.warning("a batch of %d failed (%s); trying each alone", len(items), exc, exc_info=exc)
    outcomes: list[tuple[Sequence[T], R | DomainError]] = []
    for item in items:
        try:
            outcomes.append(([item], await run([item])))
        except DomainError as exc:
            outcomes.append(([item], exc))
    return outcomes


async def fetch_one(conn: Conn, name: str, params: dict[str, Any]) -> DictRow | None:
    cur = await conn.execute(q(name), params)
    return await cur.fetchone()


async def fetch_all(conn: Conn, name: str, params: dict[str, Any]) -> list[DictRow]:
    cur = await conn.execute(q(name), params)
    return await cur.fetchall()


async def fetch_record(conn: Conn, cls: type[R], name: str, params: dict[str, Any]) -> R | None:
    row = await fetch_one(conn, name, params)
    return None if row is None else from_row(cls, row)


async def fetch_records(conn: Conn, cls: type[R], name: str, params: dict[str, Any]) -> list[R]:
    return from_rows(cls, await fetch_all(conn, name, params))


async def execute(conn: Conn, name: str, params: dict[str, Any]) -> int:
    cur = await conn.execute(q(name), params)
    return cur.rowcount
