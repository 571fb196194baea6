"""Identifiers and page tokens."""

from __future__ import annotations

import base64
import os
import time
import uuid

from chronosched_server.errors import InvalidArgument


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 v7).

    Ids that grow with time keep B-tree inserts at the right edge of the index
    (a 100,000-job COPY stays cheap) and let lists page by id alone in
    creation order.
    """
    return uuid.UUID(uuid7_strs(1)[0])


def uuid7_strs(count: int) -> list[str]:
    """`count` v7 UUIDs as canonical strings, in increasing order.

    Bulk inserts need the text form only; uuid.UUID.__str__ alone cost 1.5 s
    for a 100,000-job DAG, so the text is formatted here directly. A counter in
    rand_a keeps ids of one batch ordered within the same millisecond.
    """
    ms = (time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF
    rand = os.urandom(8 * count)
    out: list[str] = []
    for i in range(count):
        tail = int.from_bytes(rand[8 * i : 8 * i + 8], "big") & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
        # 12-bit rand_a holds the low bits of the batch counter; ms moves on
        # every 4096 ids so order is kept for batches of any size.
        stamp = ms + (i >> 12)
        h = f"{stamp:012x}7{i & 0xFFF:03x}{tail:016x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """Parse a UUID-typed request field, naming the field when it is malformed."""
    if not value:
        raise InvalidArgument.one(field, "required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument.one(field, f"{value[:64]!r} is not a UUID") from None


def encode_page_token(last: str) -> str:
    """Opaque keyset cursor: the sort key of the last row of the page."""
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def decode_page_token(token: str, field: str = "page_token") -> str | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument.one(field, "malformed page token") from None
