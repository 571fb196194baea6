"""One error shape for every REST error, through the real Envoy.

Errors the server makes reach REST clients through the transcoder's
convert_grpc_status; errors Envoy makes itself (the transcoder's rejections,
the 405/404 routes, the size limits, an unreachable server) go through the
local_reply_config of envoy/envoy.yaml. Both must come out as
`{"code": <gRPC code>, "message": ..., "details": [...]}` with
content-type application/json (docs/rest-errors.md).

Most cases run against the session's `chronosched up`. The size limits and an
unreachable server are checked on Envoys of this module's own, rendered from
the same envoy/envoy.yaml with only the limit or the upstream port changed:
the real request limit is 512 MiB, too much to send in a test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from chronosched_server.local.envoy import (
    TRANSCODER_FILTER,
    EnvoyProcess,
    EnvoySettings,
    find_envoy_binary,
    render_config,
    write_config,
)
from tests.e2e.conftest import UpProcess
from tests.support.processes import free_port
from tests.support.rest import (
    BAD_REQUEST,
    ERROR_INFO,
    INVALID_ARGUMENT,
    NOT_FOUND,
    Json,
    details,
    error,
    ok,
)

pytestmark = pytest.mark.timeout(120)

# gRPC codes of Envoy's own replies (see envoy/envoy.yaml, local_reply_config).
INTERNAL = 13
RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14
UNIMPLEMENTED = 12
UNKNOWN = 2


def envoy_error(resp: httpx.Response, http_status: int, grpc_code: int) -> Json:
    """An error made by Envoy itself: the shape of a gRPC error, no details."""
    body = error(resp, http_status, grpc_code)
    assert body["details"] == [], body
    assert set(body) == {"code", "message", "details"}, body
    return body


def allowed(resp: httpx.Response) -> set[str]:
    return {m.strip() for m in resp.headers["allow"].split(",")}


# --- the transcoder's rejections: 400 ------------------------------------------
#
# The REST check (tests/e2e/test_rest_check.py) refuses bad JSON, wrong types,
# unknown fields and bad query parameters before the transcoder sees them, in
# the server's error shape. What is left for the transcoder to refuse gets
# Envoy's local-reply shape: its own text, no details.


def test_the_rest_check_refuses_before_the_transcoder(api: httpx.Client, ns: str) -> None:
    # What the transcoder used to answer in text/plain is now the check's
    # 400 with a BadRequest naming the field.
    resp = api.post(f"/api/v1/definitions/{ns}", json={"name": "x", "kind": "noop", "max_attempts": "two"})
    body = error(resp, 400, INVALID_ARGUMENT)
    assert [v["field"] for d in details(body, BAD_REQUEST) for v in d["field_violations"]] == ["max_attempts"]


def test_duration_out_of_range_is_the_transcoders_400(api: httpx.Client, ns: str) -> None:
    # Well-formed, so the check lets it through; the transcoder refuses it
    # (durations stop at 10,000 years).
    resp = api.post(
        f"/api/v1/definitions/{ns}", json={"name": "x", "kind": "noop", "backoff_initial": "315576000001s"}
    )
    body = envoy_error(resp, 400, INVALID_ARGUMENT)
    assert "backoff_initial" in body["message"], body
    assert ok(api.get(f"/api/v1/definitions/{ns}"))["definitions"] == []


def test_body_field_contradicting_the_path(api: httpx.Client, ns: str) -> None:
    resp = api.post(f"/api/v1/dags/{ns}", json={"namespace_id": "someone-else", "name": "x"})
    body = envoy_error(resp, 400, INVALID_ARGUMENT)
    assert "namespace_id" in body["message"], body


def test_oversized_headers_and_malformed_http(up: UpProcess, api: httpx.Client) -> None:
    # Refusals below the transcoder take the same shape: a 431 (headers over
    # Envoy's 60 KiB) has no gRPC code of its own and becomes UNKNOWN...
    body = envoy_error(api.get("/api/v1/namespaces", headers={"x-big": "a" * 70_000}), 431, UNKNOWN)
    assert "Header" in body["message"], body
    # ...and a request Envoy cannot even parse as HTTP is a 400.
    with socket.create_connection(("127.0.0.1", up.http_port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), raw
    assert b"content-type: application/json" in head.lower(), raw
    parsed = json.loads(payload)
    assert parsed["code"] == INVALID_ARGUMENT and parsed["details"] == [], parsed


# --- unknown paths: 404; known paths, other methods: 405 ------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/nothing-here"),
        ("POST", "/api/v1/nothing-here/at/all"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/not-the-api"),
    ],
)
def test_unknown_path_is_a_json_404_naming_it(api: httpx.Client, method: str, path: str) -> None:
    body = envoy_error(api.request(method, path, params={"q": "1"}), 404, NOT_FOUND)
    assert path in body["message"], body
    # The query string is not part of the path named.
    assert "q=1" not in body["message"], body


def test_wrong_method_is_a_405_with_allow(api: httpx.Client, ns: str) -> None:
    job_id = str(uuid.uuid4())
    dag_id = str(uuid.uuid4())
    cases = [
        ("PUT", "/api/v1/namespaces", {"GET", "POST"}),
        ("PATCH", f"/api/v1/namespaces/{ns}", {"GET", "DELETE"}),
        ("GET", "/api/v1/admin/prune", {"POST"}),
        ("PATCH", f"/api/v1/dags/{ns}/{dag_id}", {"GET", "DELETE"}),
        ("GET", f"/api/v1/dags/{ns}/{dag_id}/dependencies/bulk", {"POST"}),
        ("DELETE", f"/api/v1/jobs/{ns}/{job_id}", {"GET"}),
        # jobs/{job_id}/complete (POST) and jobs/{namespace_id}/{job_id}
        # (GET) share this path; both methods are allowed.
        ("PUT", f"/api/v1/jobs/{job_id}/complete", {"GET", "POST"}),
        ("POST", "/healthz", {"GET"}),
        ("POST", "/api/v1/healthz", {"GET"}),
        # Trailing slashes are ignored, as the transcoder ignores them.
        ("PUT", "/api/v1/namespaces/", {"GET", "POST"}),
    ]
    for method, path, methods in cases:
        resp = api.request(method, path, params={"q": "1"})
        body = envoy_error(resp, 405, UNIMPLEMENTED)
        assert allowed(resp) == methods, (method, path, resp.headers)
        assert method in body["message"] and path in body["message"], body
        assert "q=1" not in body["message"], body
        # Every allowed method is named.
        assert all(m in body["message"] for m in methods), body


def test_wrong_method_never_reaches_the_server(api: httpx.Client) -> None:
    namespace_id = f"w-{uuid.uuid4().hex[:12]}"
    resp = api.put("/api/v1/namespaces", json={"namespace_id": namespace_id})
    envoy_error(resp, 405, UNIMPLEMENTED)
    error(api.get(f"/api/v1/namespaces/{namespace_id}"), 404, NOT_FOUND)


def test_head_and_options_are_405(api: httpx.Client) -> None:
    head = api.head("/api/v1/namespaces")
    assert head.status_code == 405
    assert allowed(head) == {"GET", "POST"}
    assert head.content == b""
    envoy_error(api.options("/healthz"), 405, UNIMPLEMENTED)


# --- /api/v1/healthz -------------------------------------------------------------


def test_api_healthz_is_healthz(api: httpx.Client) -> None:
    plain = ok(api.get("/healthz"))
    assert ok(api.get("/api/v1/healthz")) == plain
    assert plain["status"] == "SERVING"
    # Its errors too: the same 400 for a parameter Healthz does not take.
    for path in ("/healthz", "/api/v1/healthz"):
        body = error(api.get(path, params={"bogus": "1"}), 400, INVALID_ARGUMENT)
        assert [v["field"] for d in details(body, BAD_REQUEST) for v in d["field_violations"]] == ["bogus"]


# --- the server's own errors pass unchanged ------------------------------------


def test_grpc_errors_keep_their_details(api: httpx.Client) -> None:
    # Errors from the server are not Envoy's local replies: status, message
    # and ErrorInfo / BadRequest details come through as the server made them.
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    body = error(api.get(f"/api/v1/namespaces/{missing}"), 404, NOT_FOUND)
    assert missing in body["message"], body
    (info,) = details(body, ERROR_INFO)
    assert info["reason"] == "NAMESPACE_NOT_FOUND", body

    bad = error(api.post("/api/v1/namespaces", json={"namespace_id": "Not_A_Slug!"}), 400, INVALID_ARGUMENT)
    assert details(bad, ERROR_INFO), bad
    assert [v["field"] for d in details(bad, BAD_REQUEST) for v in d["field_violations"]] == ["namespace_id"]


# --- size limits and an unreachable server, on Envoys of our own -----------------


def _set_transcoder(cfg: dict[str, Any], **options: Any) -> None:
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (transcoder,) = [f for f in hcm["http_filters"] if f["name"] == TRANSCODER_FILTER]
    transcoder["typed_config"].update(options)


@contextlib.contextmanager
def _own_envoy(
    work_dir: Path, upstream_port: int, edit: Callable[[dict[str, Any]], None] | None = None
) -> Iterator[str]:
    """Envoy with envoy/envoy.yaml as rendered for `up`, changed by `edit`;
    yields its base URL."""
    settings = EnvoySettings(http_port=free_port(), admin_port=free_port(), upstream_port=upstream_port)
    cfg = render_config(settings)
    if edit is not None:
        edit(cfg)
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = write_config(cfg, work_dir / "envoy.yaml")
    log_path = work_dir / "envoy.log"
    admin_path = work_dir / "admin-address"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                find_envoy_binary(),
                "--config-path",
                str(config_path),
                "--log-level",
                "warn",
                "--use-dynamic-base-id",
                "--admin-address-path",
                str(admin_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    envoy = EnvoyProcess(proc, config_path, log_path, admin_path)
    try:
        envoy.wait_ready(30.0)
        yield f"http://127.0.0.1:{settings.http_port}"
    finally:
        envoy.stop()


REQUEST_LIMIT = 4096
RESPONSE_LIMIT = 512


@pytest.fixture(scope="module")
def small_limits(up: UpProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The real server behind an Envoy whose body limits are a few KiB."""

    def limits(cfg: dict[str, Any]) -> None:
        _set_transcoder(cfg, max_request_body_size=REQUEST_LIMIT, max_response_body_size=RESPONSE_LIMIT)

    with (
        _own_envoy(tmp_path_factory.mktemp("small-limits"), up.grpc_port, limits) as url,
        httpx.Client(base_url=url, timeout=30.0) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def no_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An Envoy whose upstream port has nothing listening."""
    with _own_envoy(tmp_path_factory.mktemp("no-server"), free_port()) as url:
        yield url


def test_body_over_the_limit_is_a_json_413(small_limits: httpx.Client) -> None:
    namespace_id = f"b-{uuid.uuid4().hex[:12]}"
    resp = small_limits.post(
        "/api/v1/namespaces", json={"namespace_id": namespace_id, "description": "x" * (2 * REQUEST_LIMIT)}
    )
    body = envoy_error(resp, 413, RESOURCE_EXHAUSTED)
    assert "limit" in body["message"], body
    error(small_limits.get(f"/api/v1/namespaces/{namespace_id}"), 404, NOT_FOUND)


def test_response_over_the_limit_is_a_json_500(small_limits: httpx.Client) -> None:
    namespace_id = f"r-{uuid.uuid4().hex[:12]}"
    # Under the request limit (and the server's 1024-character cap on a
    # description), but its echo is over the response limit.
    resp = small_limits.post(
        "/api/v1/namespaces", json={"namespace_id": namespace_id, "description": "x" * 1000}
    )
    body = envoy_error(resp, 500, INTERNAL)
    assert "limit" in body["message"], body


def test_unreachable_server_is_a_json_503(no_server: str) -> None:
    with httpx.Client(base_url=no_server, timeout=30.0) as client:
        for path in ("/api/v1/namespaces", "/api/v1/healthz"):
            envoy_error(client.get(path), 503, UNAVAILABLE)
        # Envoy's own 404/405 need no server.
        envoy_error(client.get("/api/v1/nothing"), 404, NOT_FOUND)
        envoy_error(client.put("/api/v1/namespaces"), 405, UNIMPLEMENTED)


def test_grpc_clients_keep_envoys_plain_status(no_server: str) -> None:
    # The JSON mapping is for REST clients only: a gRPC client of the same
    # Envoy gets UNAVAILABLE with Envoy's text as the message.
    target = no_server.removeprefix("http://")
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as failure:
            check(health_pb2.HealthCheckRequest(), timeout=10)
    rpc_error: Any = failure.value
    assert rpc_error.code() == grpc.StatusCode.UNAVAILABLE
    message: str = rpc_error.details()
    assert message and not message.lstrip().startswith("{"), message
