"""COPY helpers for bulk inserts (a 100,000-job DAG in one call).

Rows are rendered straight into COPY text format: only JSON payloads can hold
characters that COPY treats specially, and json.dumps already escapes control
characters, so doubling backslashes is the only escaping needed.
"""

from __future__ import annotations

from collections.abc import Iterable

from chronosched_server.storage.db import Conn

_CHUNK_ROWS = 20_000


def copy_text(value: str) -> str:
    return value.replace("\\", "\\\\")


async def copy_rows(conn: Conn, statement: bytes, lines: Iterable[str]) -> None:
    """Send pre-rendered tab-separated lines (each ending in newline) via COPY."""
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        buf: list[str] = []
        for line in lines:
            buf.append(line)
            if len(buf) >= _CHUNK_ROWS:
                await copy.write("".join(buf).encode())
                buf.clear()
        if buf:
            await copy.write("".join(buf).encode())
