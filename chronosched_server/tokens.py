"""Bearer tokens and what they allow: pure, no I/O (docs/security.md).

A stored token reads `cs_<id>_<secret>`: `cs_` marks it as ours (a secret
scanner or a person recognises a leaked one), the 16 hex characters of the
id find its row with one primary-key lookup, and the secret is 32 random
bytes (secrets.token_urlsafe). Only the SHA-256 of the whole token is
stored. A slow password hash (bcrypt, scrypt) exists to make guessing a
low-entropy password from its hash expensive; a 256-bit random secret
cannot be guessed from its hash however fast the hash is, and a fast hash
keeps the check that every call pays to a microsecond. Digests are compared
with hmac.compare_digest, so how long a comparison takes says nothing about
how much of a guess was right.

The bootstrap admin token (CHRONOSCHED_ADMIN_TOKEN) has no row: any text of
at least MIN_BOOTSTRAP_CHARS characters, compared by digest the same way.

Scopes grant permissions; each RPC needs one permission
(chronosched_server/api/auth.py holds the table). read < write; worker
stands apart (Dequeue and results only); admin has every permission in
every namespace. A read, write or worker token is for one namespace, or for
all of them (`*`, stored as a null namespace).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from chronosched_server.errors import PermissionDenied, Unauthenticated

PREFIX = "cs_"
ID_HEX_CHARS = 16
SECRET_BYTES = 32
# What every namespace is called in requests, responses and flags.
ALL_NAMESPACES = "*"
# A bootstrap admin token shorter than this is refused at start-up: it is
# compared as given, so its strength is the operator's choice.
MIN_BOOTSTRAP_CHARS = 32
# Longer authorization values are refused before anything is hashed.
MAX_TOKEN_CHARS = 512

_TOKEN = re.compile(rf"{PREFIX}(?P<id>[0-9a-f]{{{ID_HEX_CHARS}}})_[A-Za-z0-9_-]{{43}}")
TOKEN_ID_RE = re.compile(rf"[0-9a-f]{{{ID_HEX_CHARS}}}")
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(?P<token>[\x21-\x7e]+) *")


class Permission(enum.Enum):
    """What an RPC needs (api/auth.py, RULES)."""

    READ = "read"  # Get*/List* inside a namespace
    WRITE = "write"  # everything else inside a namespace
    RESULT = "result"  # CompleteJob / FailJob
    DEQUEUE = "dequeue"  # the workers' stream
    ADMIN = "admin"  # namespaces, prune, tokens


class Scope(enum.Enum):
    """What a token may do; stored as the value."""

    READ = "read"
    WRITE = "write"
    WORKER = "worker"
    ADMIN = "admin"


GRANTS: dict[Scope, frozenset[Permission]] = {
    Scope.READ: frozenset({Permission.READ}),
    Scope.WRITE: frozenset({Permission.READ, Permission.WRITE, Permission.RESULT}),
    Scope.WORKER: frozenset({Permission.DEQUEUE, Permission.RESULT}),
    Scope.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a scope, the namespace it is limited to (None: all),
    and the token's id (None: the bootstrap token, or no auth at all)."""

    scope: Scope
    namespace: str | None
    token_id: str | None = None

    def allows(self, need: Permission) -> bool:
        return need in GRANTS[self.scope]

    def covers(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace

    @property
    def covers_all(self) -> bool:
        return self.namespace is None

    def describe(self) -> str:
        where = "every namespace" if self.namespace is None else f"namespace {self.namespace!r}"
        name = f"token {self.token_id}" if self.token_id else "this token"
        return f"{name} (scope {self.scope.value}, {where})"


# The caller when the server runs without auth (--insecure-no-auth).
UNRESTRICTED = Principal(Scope.ADMIN, None)
# The bootstrap admin token.
BOOTSTRAP_ADMIN = Principal(Scope.ADMIN, None)


@dataclass(frozen=True)
class NewToken:
    """A token just made: the text to hand out once, its id and its digest."""

    token_id: str
    text: str
    digest: bytes


def new_token() -> NewToken:
    token_id = secrets.token_hex(ID_HEX_CHARS // 2)
    text = f"{PREFIX}{token_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewToken(token_id, text, digest(text))


def new_admin_token() -> str:
    """A bootstrap admin token for `chronosched up --auth` to use when
    CHRONOSCHED_ADMIN_TOKEN gives none: `cs_admin_` and 43 random characters
    (not the stored-token format, so it is never looked up by id)."""
    return f"{PREFIX}admin_{secrets.token_urlsafe(SECRET_BYTES)}"


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def same(presented: str, expected_digest: bytes) -> bool:
    """Constant-time: does `presented` hash to `expected_digest`?"""
    return hmac.compare_digest(digest(presented), expected_digest)


def token_id_of(presented: str) -> str | None:
    """The id part of a token in our format, else None."""
    match = _TOKEN.fullmatch(presented)
    return match["id"] if match else None


def bearer(values: list[str]) -> str:
    """The token of the call's `authorization` metadata values; raises
    Unauthenticated when there is none, several, or not `Bearer <token>`."""
    if not values:
        raise Unauthenticated(
            "this call needs a token: send the metadata `authorization: Bearer <token>`",
            reason="TOKEN_MISSING",
        )
    if len(values) > 1:
        raise Unauthenticated("send one authorization value, not several", reason="TOKEN_MALFORMED")
    match = _BEARER.fullmatch(values[0]) if len(values[0]) <= MAX_TOKEN_CHARS else None
    if match is None:
        raise Unauthenticated("malformed authorization: expected `Bearer <token>`", reason="TOKEN_MALFORMED")
    return match["token"]


def invalid() -> Unauthenticated:
    """A token that is not one of ours, or whose secret is wrong: the same
    answer either way, so a caller cannot tell which ids exist."""
    return Unauthenticated("invalid token", reason="TOKEN_INVALID")


@dataclass(frozen=True)
class Stored:
    """What the database knows of a token, as the check needs it."""

    token_id: str
    digest: bytes
    scope: str
    namespace_id: str | None
    expired: bool
    revoked: bool


def check(presented: str, stored: Stored | None) -> Principal:
    """The principal of a presented token given its row (None: no row)."""
    if stored is None or not same(presented, stored.digest):
        raise invalid()
    if stored.revoked:
        raise Unauthenticated(f"token {stored.token_id} was revoked", reason="TOKEN_REVOKED")
    if stored.expired:
        raise Unauthenticated(f"token {stored.token_id} has expired", reason="TOKEN_EXPIRED")
    return Principal(Scope(stored.scope), stored.namespace_id, stored.token_id)


def require(principal: Principal, need: Permission, what: str) -> None:
    """PERMISSION_DENIED unless the principal's scope grants `need` (`what`
    names the call)."""
    if not principal.allows(need):
        raise PermissionDenied(
            f"{principal.describe()} may not call {what} (it needs {need.value} permission)",
            reason="SCOPE_INSUFFICIENT",
            metadata={"needs": need.value, "scope": principal.scope.value},
        )


def require_namespaces(principal: Principal, namespaces: list[str], every: bool) -> None:
    """PERMISSION_DENIED unless the principal covers each named namespace
    (`every`: all namespaces, present and future)."""
    if every and not principal.covers_all:
        raise PermissionDenied(
            f"{principal.describe()} does not cover every namespace", reason="NAMESPACE_DENIED"
        )
    for namespace in namespaces:
        if namespace and not principal.covers(namespace):
            raise PermissionDenied(
                f"{principal.describe()} does not cover namespace {namespace!r}",
                reason="NAMESPACE_DENIED",
                metadata={"namespace_id": namespace},
            )
