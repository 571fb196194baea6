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
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64 & (0xFFF << 64)  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b (62 bits)
    return uuid.UUID(int=value)


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
