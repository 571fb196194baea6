"""The `http` kind against a real local HTTP server."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chronosched_worker import Outcome, execute
from chronosched_worker.kinds.http import BODY_BYTES, HttpKind
from tests.support.worker import make_ctx

pytestmark = pytest.mark.timeout(30)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", **extra: str
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        if path == "/ok":
            self._send(200, b"hello")
        elif path == "/missing":
            self._send(404, b"no such thing")
        elif path == "/fail":
            self._send(500, b"boom")
        elif path in ("/408", "/429", "/400"):
            self._send(int(path[1:]), b"status " + path[1:].encode())
        elif path == "/big":
            self._send(200, b"x" * (BODY_BYTES + 1000))
        elif path == "/exact":
            self._send(200, b"y" * BODY_BYTES)
        elif path == "/latin1":
            self._send(200, "café".encode("latin-1"), "text/plain; charset=latin-1")
        elif path == "/redirect":
            self._send(302, b"", Location="/ok")
        elif path == "/redirect-ftp":
            self._send(302, b"", Location="ftp://127.0.0.1/file")
        elif path == "/slow":
            self.server.release.wait(10)
            # The client has usually given up by now (what the tests of
            # timeouts make it do): a write to its closed socket is expected.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(200, b"late")
        else:
            self._send(400, b"unknown path")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        echo = {
            "method": self.command,
            "content_type": self.headers.get("Content-Type"),
            "x_test": self.headers.get("X-Test"),
            "user_agent": self.headers.get("User-Agent"),
            "body": body,
        }
        self._send(201, json.dumps(echo).encode(), "application/json")

    do_PUT = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    release: threading.Event


@pytest.fixture
def base_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


async def call(payload: dict[str, Any]) -> Outcome:
    return await execute(HttpKind(), make_ctx(payload, kind="http"))


async def test_2xx_succeeds_with_status_content_type_and_body(base_url: str) -> None:
    assert await call({"url": f"{base_url}/ok"}) == Outcome(
        success=True,
        result={
            "status": 200,
            "headers": {"content-type": "text/plain; charset=utf-8"},
            "body": "hello",
            "truncated": False,
        },
    )


async def test_json_body_is_encoded_and_headers_are_sent(base_url: str) -> None:
    outcome = await call(
        {"method": "post", "url": f"{base_url}/echo", "headers": {"X-Test": "1"}, "body": {"a": [1, "é"]}}
    )
    assert outcome.success and outcome.result["status"] == 201
    assert json.loads(outcome.result["body"]) == {
        "method": "POST",
        "content_type": "application/json",
        "x_test": "1",
        "user_agent": "chronosched-worker",
        "body": '{"a":[1,"é"]}',
    }


async def test_text_body_keeps_the_callers_content_type(base_url: str) -> None:
    outcome = await call(
        {
            "method": "PUT",
            "url": f"{base_url}/echo",
            "headers": {"Content-Type": "text/csv"},
            "body": "a,b\n1,2",
        }
    )
    echoed = json.loads(outcome.result["body"])
    assert (echoed["method"], echoed["content_type"], echoed["body"]) == ("PUT", "text/csv", "a,b\n1,2")


async def test_404_fails_the_job_for_good(base_url: str) -> None:
    assert await call({"url": f"{base_url}/missing"}) == Outcome(
        success=False, error="HTTP 404: no such thing", non_retryable=True
    )


async def test_500_is_retryable(base_url: str) -> None:
    assert await call({"url": f"{base_url}/fail"}) == Outcome(success=False, error="HTTP 500: boom")


@pytest.mark.parametrize(("status", "non_retryable"), [(400, True), (408, False), (429, False)])
async def test_4xx_retryability(base_url: str, status: int, non_retryable: bool) -> None:
    assert await call({"url": f"{base_url}/{status}"}) == Outcome(
        success=False, error=f"HTTP {status}: status {status}", non_retryable=non_retryable
    )


async def test_body_is_capped_at_64_kib_with_a_flag(base_url: str) -> None:
    big = await call({"url": f"{base_url}/big"})
    assert big.result["body"] == "x" * BODY_BYTES and big.result["truncated"] is True
    exact = await call({"url": f"{base_url}/exact"})
    assert exact.result["body"] == "y" * BODY_BYTES and exact.result["truncated"] is False


async def test_body_is_decoded_with_the_declared_charset(base_url: str) -> None:
    assert (await call({"url": f"{base_url}/latin1"})).result["body"] == "café"


async def test_redirects_are_followed_only_to_http(base_url: str) -> None:
    assert (await call({"url": f"{base_url}/redirect"})).result["body"] == "hello"
    refused = await call({"url": f"{base_url}/redirect-ftp"})
    assert refused == Outcome(success=False, error="HTTP 302: ")


async def test_timeout_fails_the_attempt_quickly(base_url: str) -> None:
    started = time.monotonic()
    outcome = await call({"url": f"{base_url}/slow", "timeout": 0.3})
    assert outcome == Outcome(success=False, error="HTTP request timed out after 0.3s")
    assert time.monotonic() - started < 3


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        outcome = await call({"url": f"http://127.0.0.1:{port}/", "timeout": 5})
    assert outcome == Outcome(success=False, error="HTTP request failed: [Errno 111] Connection refused")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({}, "payload.url is required"),
        ({"url": 5}, "payload.url must be a non-empty string"),
        (
            {"url": "ftp://example.com/x"},
            "payload.url must be an http or https URL, got 'ftp://example.com/x'",
        ),
        ({"url": "file:///etc/passwd"}, "payload.url must be an http or https URL, got 'file:///etc/passwd'"),
        ({"url": "not a url"}, "payload.url must be an http or https URL, got 'not a url'"),
        ({"url": "http://"}, "payload.url has no host: 'http://'"),
        (
            {"url": "http://h/", "method": "GE T"},
            "payload.method must be an HTTP method name such as GET or POST",
        ),
        ({"url": "http://h/", "headers": {"A": 1}}, "payload.headers.A must be a string"),
        ({"url": "http://h/", "headers": {"A": "x\r\nB: y"}}, "payload.headers.A is not a valid header"),
        ({"url": "http://h/", "headers": "A: 1"}, "payload.headers must be an object of strings"),
        ({"url": "http://h/", "body": 5}, "payload.body must be a string or a JSON object"),
        ({"url": "http://h/", "timeout": 0}, "payload.timeout must be a positive number of seconds"),
        ({"url": "http://h/", "timeout": "1"}, "payload.timeout must be a number of seconds"),
    ],
)
async def test_bad_payload_fails_the_job_for_good_naming_the_field(
    payload: dict[str, Any], error: str
) -> None:
    assert await call(payload) == Outcome(
        success=False, error=f"invalid payload: {error}", non_retryable=True
    )
