"""Browser tests of the dashboard (ui/, docs/dashboard.md): a real headless
Chromium, driven by Playwright, against a real `chronosched up` (embedded
PostgreSQL, the gRPC server, Envoy serving /ui/ and /api/v1, local workers).

The browser is Debian's `chromium` (scripts/test.sh installs it when it can),
never one Playwright downloads. Without it the tests fail under CI (CI=true)
and are skipped, loudly, elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import httpx
import pytest

from tests.support.up import UpProcess, session_up

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "ui-screenshots"
# Debian's package puts the browser here; CHRONOSCHED_CHROMIUM overrides.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A 1280-px-wide screen: the width the dashboard must fit without scrolling.
WIDTH = 1280


def find_chromium() -> str | None:
    explicit = os.environ.get("CHRONOSCHED_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return shutil.which("chromium")


def no_browser(why: str) -> NoReturn:
    """Fail in CI; skip, loudly, on a developer's machine."""
    message = f"NO BROWSER: {why}. The dashboard's browser tests did NOT run (apt-get install chromium)."
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    print(f"\n*** {message} ***", file=sys.stderr)
    pytest.skip(message)


@pytest.fixture(scope="session")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """One `chronosched up` for the session (auth off, as `up` runs by
    default); tests work in namespaces of their own."""
    with session_up(tmp_path_factory.mktemp("ui")) as running:
        yield running


@pytest.fixture
def api(up: UpProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=up.base_url, timeout=120.0) as client:
        yield client


@pytest.fixture
def ns(api: httpx.Client) -> str:
    namespace_id = f"ui-{uuid.uuid4().hex[:10]}"
    resp = api.post("/api/v1/namespaces", json={"namespace_id": namespace_id})
    assert resp.status_code == 200, resp.text
    return namespace_id


# Per module, not per session: Playwright's sync API keeps an event loop
# running on the main thread while it is open, and every asyncio test that
# runs after it (pytest-asyncio) would then fail to start its own.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        no_browser("no Chromium found at " + ", ".join(CHROMIUM_CANDIDATES) + " or on PATH")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": WIDTH, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        context.close()
    # An uncaught exception in the dashboard fails the test that saw it.
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Page, name: str) -> Path:
    """Save the page (whole height) for the closing note; prints the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
