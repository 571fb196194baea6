"""Named SQL queries loaded from the .sql files beside this module.

Each file holds blocks that start with a `-- name: <query_name>` line; the
block runs until the next header. Keeping SQL out of Python strings lets an
integration test PREPARE every query against the migrated schema.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse(text: str, source: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{source}: query {name!r} defined twice")
        queries[name] = body.strip().rstrip(";")
    return queries


@cache
def all_queries() -> dict[str, str]:
    merged: dict[str, str] = {}
    for entry in sorted(resources.files("chronosched_server.storage").joinpath("sql").iterdir(), key=str):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse(entry.read_text(), entry.name).items():
            if name in merged:
                raise ValueError(f"{entry.name}: query {name!r} also defined elsewhere")
            merged[name] = sql
    return merged


def q(name: str) -> bytes:
    """The SQL of one named query (bytes: psycopg takes only literal str queries)."""
    return all_queries()[name].encode()
