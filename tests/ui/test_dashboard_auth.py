"""The dashboard against `chronosched up --auth`: read-only without a token,
the API's own message when a token may not do something, and actions that
work with a token that may."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.up import UpProcess, session_up
from tests.ui.conftest import screenshot

pytestmark = pytest.mark.timeout(120)

NS = "ui-auth"


@pytest.fixture(scope="module")
def auth_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with session_up(tmp_path_factory.mktemp("ui-auth"), "--auth", "--workers", "0") as running:
        yield running


@pytest.fixture(scope="module")
def admin(auth_up: UpProcess) -> Iterator[httpx.Client]:
    found = re.search(r"admin token for this run: (\S+)", auth_up.log_tail(100_000))
    assert found, auth_up.log_tail()
    headers = {"authorization": f"Bearer {found[1]}"}
    with httpx.Client(base_url=auth_up.base_url, timeout=60.0, headers=headers) as client:
        assert client.post("/api/v1/namespaces", json={"namespace_id": NS}).status_code == 200
        yield client


def token(admin: httpx.Client, scope: str) -> str:
    made = admin.post("/api/v1/tokens", json={"scope": scope, "namespace_id": NS})
    assert made.status_code == 200, made.text
    secret: str = made.json()["secret"]
    return secret


def use_token(page: Page, secret: str) -> None:
    box = page.locator("#token-box")
    if box.get_attribute("open") is None:
        box.locator("summary").click()
    page.locator("#token-input").fill(secret)
    page.get_by_test_id("token-save").click()


def test_tokens_decide_what_the_dashboard_may_do(page: Page, auth_up: UpProcess, admin: httpx.Client) -> None:
    def_id = admin.post(f"/api/v1/definitions/{NS}", json={"name": "approve", "kind": "manual"}).json()[
        "def_id"
    ]
    made = admin.post(
        f"/api/v1/dags/{NS}",
        json={"name": "guarded", "jobs": [{"key": "only", "def_id": def_id}], "start": True},
    )
    assert made.status_code == 200, made.text
    dag_id = made.json()["dag_id"]

    # No token: the API's 401 message, and no actions.
    no_token = httpx.get(f"{auth_up.base_url}/api/v1/dags/{NS}/{dag_id}")
    assert no_token.status_code == 401
    page.goto(f"{auth_up.base_url}/ui/#/dags/{NS}/{dag_id}")
    expect(page.get_by_role("alert")).to_contain_text(no_token.json()["message"])
    expect(page.locator("#token-summary")).to_have_text("Token: none (read-only)")

    # A read token: the DAG shows; its scope cannot be read by a client, so
    # the action is offered and the server's refusal is shown as it says it.
    read = token(admin, "SCOPE_READ")
    denied = httpx.post(
        f"{auth_up.base_url}/api/v1/dags/{NS}/{dag_id}/cancel",
        json={},
        headers={"authorization": f"Bearer {read}"},
    )
    assert denied.status_code == 403, denied.text
    use_token(page, read)
    expect(page.locator("#token-summary")).to_have_text("Token: set")
    expect(page.locator('g.node[data-key="only"]')).to_have_attribute("data-state", "READY")
    page.get_by_test_id("cancel-dag").click()
    page.get_by_test_id("confirm-yes").click()
    refused = page.get_by_role("alert")
    expect(refused).to_contain_text("HTTP 403")
    expect(refused).to_contain_text(denied.json()["message"])
    screenshot(page, "auth-refused")
    assert admin.get(f"/api/v1/dags/{NS}/{dag_id}").json()["state"] == "STATE_RUNNING"

    # A write token may: the DAG and its job end CANCELLED.
    use_token(page, token(admin, "SCOPE_WRITE"))
    page.get_by_test_id("cancel-dag").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("dag-state")).to_contain_text("CANCELLED")
    expect(page.locator('g.node[data-key="only"]')).to_have_attribute("data-state", "CANCELLED")
    assert admin.get(f"/api/v1/dags/{NS}/{dag_id}").json()["state"] == "STATE_CANCELLED"
    expect(page.get_by_test_id("cancel-dag")).to_have_count(0)

    # A refused token says so; forgetting it goes back to read-only.
    use_token(page, "cs_0000000000000000_not-a-real-secret-at-all-but-long-enough")
    expect(page.locator("#token-summary")).to_have_text("Token: refused")
    page.get_by_test_id("token-clear").click()
    expect(page.locator("#token-summary")).to_have_text("Token: none (read-only)")
    assert page.evaluate("sessionStorage.getItem('chronosched.token')") is None
