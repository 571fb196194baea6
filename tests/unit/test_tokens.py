"""The pure token rules (chronosched_server.tokens): the text format, the
`authorization` value, the check against a stored row, and the scopes."""

from __future__ import annotations

import pytest

from chronosched_server import tokens
from chronosched_server.errors import PermissionDenied, Unauthenticated
from chronosched_server.tokens import Permission, Principal, Scope

pytestmark = pytest.mark.timeout(10)


def test_a_new_token_is_prefixed_random_and_stored_as_its_digest() -> None:
    made = tokens.new_token()
    assert made.text.startswith(f"cs_{made.token_id}_") and len(made.text) == 3 + 16 + 1 + 43
    assert tokens.token_id_of(made.text) == made.token_id
    assert made.digest == tokens.digest(made.text) and len(made.digest) == 32
    assert tokens.new_token().text != made.text
    assert tokens.same(made.text, made.digest) and not tokens.same(made.text + "x", made.digest)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cs_0123456789abcdef",  # no secret
        "cs_0123456789ABCDEF_" + "a" * 43,  # upper-case id
        "cs_0123456789abcde_" + "a" * 43,  # short id
        "cs_0123456789abcdef_" + "a" * 42,  # short secret
        "cs_0123456789abcdef_" + "a" * 44,
        "cs_0123456789abcdef_" + "a" * 42 + "!",
        "xx_0123456789abcdef_" + "a" * 43,
        # up's admin tokens are never looked up; a fixed id, as the token is random
        pytest.param(tokens.new_admin_token(), id="an-admin-token"),
    ],
)
def test_only_our_format_has_an_id(text: str) -> None:
    assert tokens.token_id_of(text) is None


@pytest.mark.parametrize(
    ("values", "token"),
    [
        (["Bearer abc"], "abc"),
        (["bearer abc"], "abc"),
        (["BEARER  abc "], "abc"),
    ],
)
def test_bearer_reads_the_token(values: list[str], token: str) -> None:
    assert tokens.bearer(values) == token


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([], "TOKEN_MISSING"),
        (["Bearer a", "Bearer b"], "TOKEN_MALFORMED"),
        (["Basic abc"], "TOKEN_MALFORMED"),
        (["Bearer"], "TOKEN_MALFORMED"),
        (["Bearer a b"], "TOKEN_MALFORMED"),
        (["Bearer " + "a" * 600], "TOKEN_MALFORMED"),
        (["abc"], "TOKEN_MALFORMED"),
    ],
)
def test_bearer_refuses(values: list[str], reason: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        tokens.bearer(values)
    assert refused.value.reason == reason


def _stored(text: str, **state: bool) -> tokens.Stored:
    token_id = tokens.token_id_of(text)
    assert token_id is not None
    return tokens.Stored(
        token_id,
        tokens.digest(text),
        "write",
        "team-a",
        state.get("expired", False),
        state.get("revoked", False),
    )


def test_check_against_the_stored_row() -> None:
    made = tokens.new_token().text
    assert tokens.check(made, _stored(made)) == Principal(Scope.WRITE, "team-a", made[3:19])
    other = tokens.new_token().text
    wrong_secret = made[:-43] + other[-43:]
    for presented, row, reason in [
        (made, None, "TOKEN_INVALID"),
        (wrong_secret, _stored(made), "TOKEN_INVALID"),
        (made, _stored(made, revoked=True), "TOKEN_REVOKED"),
        (made, _stored(made, expired=True), "TOKEN_EXPIRED"),
        # A wrong secret says nothing about the row's state.
        (wrong_secret, _stored(made, revoked=True), "TOKEN_INVALID"),
    ]:
        with pytest.raises(Unauthenticated) as refused:
            tokens.check(presented, row)
        assert refused.value.reason == reason


def test_the_scopes_grant_a_lattice() -> None:
    grants = {scope: {p for p in Permission if Principal(scope, None).allows(p)} for scope in Scope}
    assert grants[Scope.READ] < grants[Scope.WRITE] < grants[Scope.ADMIN]
    assert grants[Scope.WORKER] < grants[Scope.ADMIN]
    assert grants[Scope.WORKER] == {Permission.DEQUEUE, Permission.RESULT}
    assert Permission.DEQUEUE not in grants[Scope.WRITE] and Permission.ADMIN not in grants[Scope.WRITE]
    assert grants[Scope.ADMIN] == set(Permission)


def test_namespaces() -> None:
    one, every = Principal(Scope.READ, "team-a"), Principal(Scope.READ, None)
    tokens.require_namespaces(one, ["team-a", ""], every=False)
    tokens.require_namespaces(every, ["team-b"], every=True)
    for names, all_of_them in ((["team-b"], False), (["team-a", "team-b"], False), ([], True)):
        with pytest.raises(PermissionDenied) as refused:
            tokens.require_namespaces(one, names, all_of_them)
        assert refused.value.reason == "NAMESPACE_DENIED"
    with pytest.raises(PermissionDenied) as refused:
        tokens.require(one, Permission.WRITE, "DagService.CreateDag")
    assert refused.value.reason == "SCOPE_INSUFFICIENT" and "DagService.CreateDag" in refused.value.message
