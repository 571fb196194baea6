"""Bytes that are not UTF-8, through the real Envoy (found by the REST fuzzer,
tests/fuzz/): the REST check refuses them with its usual 400 naming where
they are, and every refusal it writes is UTF-8 JSON, whatever bytes of the
request it quotes.

Before, a path variable or query value that percent-decoded to such bytes
reached the server, which could not decode the request and answered 500; a
body holding them was refused in the transcoder's own shape; and a refusal
quoting them (an unknown key, the bytes where a body broke) was not UTF-8.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.support.rest import BAD_REQUEST, ERROR_INFO, details

pytestmark = pytest.mark.timeout(120)

REPLACEMENT = "\ufffd"


def refusal(resp: httpx.Response) -> list[dict[str, Any]]:
    """The violations of a REST-check 400, after checking the reply is UTF-8 JSON."""
    assert resp.status_code == 400, (resp.status_code, resp.content[:300])
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = json.loads(resp.content.decode("utf-8"))
    assert body["code"] == 3, body
    (info,) = details(body, ERROR_INFO)
    assert info["domain"] == "chronosched.dev"
    (bad_request,) = details(body, BAD_REQUEST)
    violations: list[dict[str, Any]] = bad_request["field_violations"]
    return violations


def post_bytes(api: httpx.Client, path: str, content: bytes) -> httpx.Response:
    return api.post(path, content=content, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("content", "column"),
    [
        pytest.param(b'{"namespace_id": "\xd7"}', 19, id="lone-lead-byte-in-a-string"),
        pytest.param(b'{"\xd7x": 1}', 3, id="in-a-key"),
        pytest.param(b'{"namespace_id": "\xed\xa0\x80"}', 19, id="encoded-surrogate"),
        pytest.param(b'{"namespace_id": "\xc0\xaf"}', 19, id="overlong"),
        pytest.param(b'{"namespace_id": "ok"}\xff', 23, id="after-the-value"),
    ],
)
def test_a_body_that_is_not_utf8_is_invalid_json_located_at_the_byte(
    api: httpx.Client, content: bytes, column: int
) -> None:
    (violation,) = refusal(post_bytes(api, "/api/v1/namespaces", content))
    assert violation["reason"] == "INVALID_JSON", violation
    assert f"not UTF-8 (line 1, column {column})" in violation["description"], violation


def test_well_formed_utf8_passes_the_check(api: httpx.Client) -> None:
    # Two-, three- and four-byte characters reach the server, which judges
    # the value (a namespace id is ASCII).
    text = '{"namespace_id": "é€😀"}'
    (violation,) = refusal(post_bytes(api, "/api/v1/namespaces", text.encode()))
    assert violation["field"] == "namespace_id" and violation["reason"] == "INVALID_FORMAT", violation
    assert "é€😀" in violation["description"], violation


def test_quoted_body_bytes_cut_inside_a_character_stay_utf8(api: httpx.Client) -> None:
    # The check quotes ten bytes where the body broke: here they end in the
    # middle of the fourth euro sign.
    (violation,) = refusal(post_bytes(api, "/api/v1/namespaces", "€€€€€".encode()))
    assert violation["reason"] == "INVALID_JSON", violation
    assert "€€€" + REPLACEMENT in violation["description"], violation


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/namespaces/%d7x", "namespace_id"),
        ("GET", "/api/v1/dags/ns/%ff%fe", "dag_id"),
        ("POST", "/api/v1/jobs/%c3%28/complete", "job_id"),
        ("POST", "/api/v1/schedules/ns/%e2%82/pause", "name"),
    ],
)
def test_a_path_variable_that_is_not_utf8_is_a_400_naming_it(
    api: httpx.Client, method: str, path: str, field: str
) -> None:
    resp = api.request(method, path, content=b"{}" if method == "POST" else None)
    (violation,) = refusal(resp)
    assert violation == {
        "field": field,
        "description": "must be UTF-8 once percent-decoded",
        "reason": "INVALID_FORMAT",
    }


def test_a_query_value_that_is_not_utf8_is_a_400_naming_it(api: httpx.Client) -> None:
    (violation,) = refusal(api.get("/api/v1/namespaces?page_token=%d7x"))
    assert (violation["field"], violation["reason"]) == ("page_token", "INVALID_FORMAT"), violation


def test_an_unknown_query_name_that_is_not_utf8_is_quoted_as_utf8(api: httpx.Client) -> None:
    (violation,) = refusal(api.get("/api/v1/namespaces?%d7x=1"))
    assert violation["field"] == REPLACEMENT + "x" and violation["reason"] == "UNKNOWN_FIELD", violation


def test_percent_encoded_utf8_in_a_path_reaches_the_server(api: httpx.Client) -> None:
    # Valid UTF-8 passes the check: the server answers for the value itself.
    name = f"caf%C3%A9-{uuid.uuid4().hex[:6]}"
    resp = api.get(f"/api/v1/namespaces/{name}")
    (violation,) = refusal(resp)
    assert violation["field"] == "namespace_id" and violation["reason"] == "INVALID_FORMAT", violation
    assert "café" in violation["description"], violation
