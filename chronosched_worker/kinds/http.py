"""The `http` kind: make one HTTP request, succeed on 2xx.

Payload: {"method": "GET", "url": "https://...", "headers": {"K": "V"},
"body": "text" | {...}, "timeout": seconds}. A JSON body (object or list) is
encoded with content-type application/json unless the headers set one.

A non-2xx answer fails the attempt with "HTTP <status>: <body>". 4xx answers
other than 408 (request timeout) and 429 (too many requests) fail the job for
good: sending the same request again will be refused again.

Uses urllib in a thread to keep the worker free of extra dependencies.
"""

from __future__ import annotations

import asyncio
import codecs
import email.message
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import IO, Any

from chronosched_worker.context import JobContext, JobFailed, NonRetryable
from chronosched_worker.kinds._payload import invalid, optional_seconds, required_str, str_dict
from chronosched_worker.threads import run_in_thread

DEFAULT_TIMEOUT_S = 30.0
BODY_BYTES = 64 * 1024
USER_AGENT = "chronosched-worker"
_METHOD = re.compile(r"[A-Za-z]{1,32}")
_RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class HttpSpec:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout_s: float


def parse_http(payload: dict[str, Any]) -> HttpSpec:
    """Validate an `http` payload; raises NonRetryable naming the bad field."""
    url = required_str(payload, "url")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise invalid("url", f"must be an http or https URL, got {url!r}")
    if not parts.hostname:
        raise invalid("url", f"has no host: {url!r}")

    method = payload.get("method", "GET")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise invalid("method", "must be an HTTP method name such as GET or POST")

    headers = str_dict(payload, "headers")
    for name, value in headers.items():
        if not name or any(c in name for c in ":\r\n") or any(c in value for c in "\r\n"):
            raise invalid(f"headers.{name}", "is not a valid header")

    raw_body = payload.get("body")
    body: bytes | None
    if raw_body is None:
        body = None
    elif isinstance(raw_body, str):
        body = raw_body.encode("utf-8")
    elif isinstance(raw_body, dict | list):
        body = json.dumps(raw_body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    else:
        raise invalid("body", "must be a string or a JSON object")

    timeout_s = optional_seconds(payload, "timeout")
    return HttpSpec(
        method=method.upper(),
        url=url,
        headers=headers,
        body=body,
        timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
    )


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str | None
    body: str
    truncated: bool


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    # urllib follows redirects to ftp:// too; a job asked for HTTP.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(
                newurl, code, f"redirect to a non-HTTP URL refused: {newurl}", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    # Only what an HTTP job needs: no file://, ftp:// or data: handlers.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),  # honours http_proxy/https_proxy/no_proxy
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        _HttpOnlyRedirects(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _read_capped(fp: IO[bytes] | None, headers: email.message.Message, limit: int) -> tuple[str, bool]:
    data = fp.read(limit + 1) if fp is not None else b""
    truncated = len(data) > limit
    charset = headers.get_content_charset() or "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(charset)(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # final=False when cut: a multi-byte character split by the cap is
    # dropped instead of shown as garbage.
    return decoder.decode(data[:limit], final=not truncated), truncated


def fetch(spec: HttpSpec, body_limit: int = BODY_BYTES) -> Response:
    """Blocking: make the request and read at most `body_limit` bytes of the answer."""
    request = urllib.request.Request(spec.url, data=spec.body, method=spec.method)
    request.add_header("User-Agent", USER_AGENT)
    for name, value in spec.headers.items():
        request.add_header(name, value)
    try:
        with _opener().open(request, timeout=spec.timeout_s) as response:
            text, truncated = _read_capped(response, response.headers, body_limit)
            return Response(response.status, response.headers.get("content-type"), text, truncated)
    except urllib.error.HTTPError as error:
        with error:
            text, truncated = _read_capped(error.fp, error.headers, body_limit)
            return Response(error.code, error.headers.get("content-type"), text, truncated)


class HttpKind:
    """Handler for the `http` kind."""

    def __init__(self, *, body_bytes: int = BODY_BYTES) -> None:
        self.body_bytes = body_bytes

    async def __call__(self, ctx: JobContext) -> dict[str, Any]:
        spec = parse_http(ctx.payload)
        timed_out = JobFailed(f"HTTP request timed out after {spec.timeout_s:g}s")
        try:
            # urllib's timeout bounds each socket operation, not the whole
            # exchange; this bounds the whole. The abandoned thread ends at
            # its own socket timeout.
            async with asyncio.timeout(spec.timeout_s):
                response = await run_in_thread(
                    lambda: fetch(spec, self.body_bytes), name=f"chronosched-http-{ctx.job_id}"
                )
        except TimeoutError:
            raise timed_out from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise timed_out from None
            raise JobFailed(f"HTTP request failed: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise JobFailed(f"HTTP request failed: {type(exc).__name__}: {exc}") from exc

        if 200 <= response.status < 300:
            return {
                "status": response.status,
                "headers": {"content-type": response.content_type} if response.content_type else {},
                "body": response.body,
                "truncated": response.truncated,
            }
        message = f"HTTP {response.status}: {response.body}"
        if 400 <= response.status < 500 and response.status not in _RETRYABLE_4XX:
            raise NonRetryable(message)
        raise JobFailed(message)
