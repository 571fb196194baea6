"""Forward-only numbered migrations, applied under an advisory lock.

Each `NNNN_name.sql` file runs in its own transaction and is recorded with its
SHA-256; a recorded migration whose file changed afterwards stops start-up,
because the database would no longer match the code's idea of the schema.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from chronosched_server.storage.db import translate

# Any constant works; it only has to be the same for every migrating process.
_LOCK_KEY = 0x6368726F6E6F  # "chrono"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """The database's recorded migrations do not match the code's."""


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("chronosched_server.storage").joinpath("migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration numbers must run 1, 2, 3...; got {migration.name}")
    return found


async def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; return the names applied (empty when current).
    Database errors leave as domain errors (Unavailable when it cannot be
    reached); an edited migration as MigrationError."""
    try:
        return await _migrate(database_url)
    except psycopg.Error as exc:
        raise translate(exc) from exc


async def _migrate(database_url: str) -> list[str]:
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("select pg_advisory_lock(%s::bigint)", (_LOCK_KEY,))
        try:
            await conn.execute(
                """create table if not exists schema_migrations (
                       version integer primary key,
                       name text not null,
                       checksum text not null,
                       applied_at timestamptz not null default now())"""
            )
            cur = await conn.execute("select version, name, checksum from schema_migrations order by version")
            recorded = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
            for migration in load_migrations():
                if migration.version in recorded:
                    name, checksum = recorded[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(f"migration {name} changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "insert into schema_migrations (version, name, checksum)"
                        " values (%s::int, %s::text, %s::text)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied.append(migration.name)
        finally:
            await conn.execute("select pg_advisory_unlock(%s::bigint)", (_LOCK_KEY,))
    return applied
