"""Property tests of the token parser (chronosched_server/tokens.py): what
`bearer` and `token_id_of` accept, and that a token checks only against its
own digest."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chronosched_server import tokens
from chronosched_server.errors import Unauthenticated

pytestmark = pytest.mark.timeout(60)

VISIBLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80)


@settings(max_examples=200, deadline=None)
@given(
    token=VISIBLE,
    spaces=st.integers(1, 3),
    trailing=st.integers(0, 2),
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER"]),
)
def test_bearer_returns_exactly_the_token(token: str, spaces: int, trailing: int, scheme: str) -> None:
    assert tokens.bearer([f"{scheme}{' ' * spaces}{token}{' ' * trailing}"]) == token


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=120))
@example("Bearer")
@example("Bearer ")
@example("Basic abc")
@example("Bearer a b")
@example("Bearer \x00")
def test_bearer_refuses_anything_else_with_unauthenticated(value: str) -> None:
    well_formed = re.fullmatch(r"[Bb][Ee][Aa][Rr][Ee][Rr] +[\x21-\x7e]+ *", value) is not None
    if well_formed:
        assert tokens.bearer([value]) in value
    else:
        with pytest.raises(Unauthenticated) as refused:
            tokens.bearer([value])
        assert refused.value.reason == "TOKEN_MALFORMED"


@settings(max_examples=100, deadline=None)
@given(values=st.lists(VISIBLE.map(lambda t: f"Bearer {t}"), min_size=2, max_size=4))
def test_several_authorization_values_are_refused(values: list[str]) -> None:
    with pytest.raises(Unauthenticated) as refused:
        tokens.bearer(values)
    assert refused.value.reason == "TOKEN_MALFORMED"


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_a_new_token_parses_to_its_id_and_checks_only_against_its_digest(data: st.DataObject) -> None:
    made = tokens.new_token()
    assert tokens.token_id_of(made.text) == made.token_id
    assert tokens.bearer([f"Bearer {made.text}"]) == made.text
    stored = tokens.Stored(made.token_id, made.digest, "read", "team-a", expired=False, revoked=False)
    assert tokens.check(made.text, stored).token_id == made.token_id
    # Any other text with the same id (one changed character) is refused
    # with the same answer as an unknown token.
    i = data.draw(st.integers(len(tokens.PREFIX) + tokens.ID_HEX_CHARS + 1, len(made.text) - 1))
    other = made.text[:i] + ("A" if made.text[i] != "A" else "B") + made.text[i + 1 :]
    with pytest.raises(Unauthenticated) as refused:
        tokens.check(other, stored)
    assert refused.value.reason == "TOKEN_INVALID"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=100))
def test_token_id_of_only_our_format(text: str) -> None:
    found = tokens.token_id_of(text)
    if found is not None:
        assert text.startswith(tokens.PREFIX + found + "_")
        assert re.fullmatch(r"[0-9a-f]{16}", found)
