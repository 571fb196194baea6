"""`chronosched up --auth` end to end: the real Envoy in front of a server
that requires bearer tokens. Every REST binding answers 401 without a
token and 403 with too little scope (driven from the descriptor and the
server's RULES table); up's own workers, holding the worker token up made,
run jobs; the admin token up made is shown once, in its banner."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from chronosched import Client, Unauthenticated
from chronosched_server.api import auth
from chronosched_server.local.envoy import DESCRIPTOR_SET, TRANSCODED_SERVICES
from chronosched_server.tokens import Permission
from tests.support.up import UpProcess, session_up
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

NS = "auth-e2e"


@pytest.fixture(scope="module")
def auth_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with session_up(tmp_path_factory.mktemp("auth-up"), "--auth", "--workers", "1") as running:
        yield running


@pytest.fixture(scope="module")
def admin_token(auth_up: UpProcess) -> str:
    found = re.search(r"admin token for this run: (\S+)", auth_up.log_tail(100_000))
    assert found, auth_up.log_tail()
    return found[1]


@pytest.fixture(scope="module")
def admin(auth_up: UpProcess, admin_token: str) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=auth_up.base_url, timeout=60.0, headers=headers) as client:
        if client.get(f"/api/v1/namespaces/{NS}").status_code == 404:
            assert client.post("/api/v1/namespaces", json={"namespace_id": NS}).status_code == 200
        yield client


def token(admin: httpx.Client, scope: str, namespace_id: str) -> str:
    made = admin.post("/api/v1/tokens", json={"scope": scope, "namespace_id": namespace_id})
    assert made.status_code == 200, made.text
    secret: str = made.json()["secret"]
    return secret


def bindings() -> list[tuple[str, str, str]]:
    """(HTTP method, path template, "/pkg.Service/Method") of every binding Envoy transcodes."""
    files = descriptor_pb2.FileDescriptorSet.FromString(Path(DESCRIPTOR_SET).read_bytes())
    found: list[tuple[str, str, str]] = []
    for file in files.file:
        for service in file.service:
            full = f"{file.package}.{service.name}"
            if full not in TRANSCODED_SERVICES:
                continue
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    if verb in ("get", "post", "delete", "put", "patch"):
                        found.append((verb.upper(), getattr(binding, verb), f"/{full}/{method.name}"))
    return found


def concrete(template: str) -> str:
    values = {"namespace_id": NS, "token_id": "0123456789abcdef", "name": "noop"}
    return re.sub(r"\{([a-z_]+)\}", lambda m: values.get(m[1], str(uuid.uuid4())), template)


def send(client: httpx.Client, method: str, template: str, headers: dict[str, str]) -> httpx.Response:
    body: dict[str, object] | None = {} if method == "POST" else None
    return client.request(method, concrete(template), json=body, headers=headers)


def test_the_banner_shows_the_admin_token_once_and_auth_on(auth_up: UpProcess, admin_token: str) -> None:
    log = auth_up.log_tail(100_000)
    assert log.count(admin_token) == 1, "the admin token is printed once, in the banner"
    assert "auth: on (bearer tokens)" in log


def test_every_binding_is_401_without_a_token_and_403_with_too_little_scope(
    auth_up: UpProcess, admin: httpx.Client
) -> None:
    little = {
        Permission.READ: token(admin, "SCOPE_WORKER", NS),
        Permission.WRITE: token(admin, "SCOPE_READ", NS),
        Permission.RESULT: token(admin, "SCOPE_READ", NS),
        Permission.ADMIN: token(admin, "SCOPE_WRITE", "*"),
    }
    found = bindings()
    # Every RPC of the table has a binding, but the workers' stream.
    assert {rpc for _, _, rpc in found} == set(auth.RULES) - {"/chronosched.v1.WorkerService/Dequeue"}
    problems: list[str] = []
    with httpx.Client(base_url=auth_up.base_url, timeout=60.0) as plain:
        for method, template, rpc in found:
            rule = auth.RULES[rpc]
            cases: list[tuple[str, dict[str, str], int]] = [
                ("no token", {}, 401),
                ("a malformed token", {"authorization": "Bearer"}, 401),
                ("an unknown token", {"authorization": "Bearer cs_0123456789abcdef_" + "x" * 43}, 401),
            ]
            if rule.need is None:
                cases = [("no token", {}, 200)]
            else:
                cases.append(("too little scope", {"authorization": f"Bearer {little[rule.need]}"}, 403))
            for case, headers, want in cases:
                got = send(plain, method, template, headers)
                if got.status_code != want:
                    problems.append(
                        f"{method} {template} with {case}: {got.status_code}, want {want}: {got.text}"
                    )
                elif want != 200:
                    error = got.json()
                    code = error["code"]
                    expected = (
                        grpc.StatusCode.UNAUTHENTICATED if want == 401 else grpc.StatusCode.PERMISSION_DENIED
                    )
                    if code != expected.value[0]:
                        problems.append(f"{method} {template} with {case}: code {code}")
    assert problems == []


def test_a_token_for_another_namespace_is_403(auth_up: UpProcess, admin: httpx.Client) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/v1/namespaces", json={"namespace_id": other}).status_code == 200
    theirs = {"authorization": f"Bearer {token(admin, 'SCOPE_WRITE', other)}"}
    with httpx.Client(base_url=auth_up.base_url, timeout=60.0) as plain:
        assert plain.get(f"/api/v1/dags/{NS}", headers=theirs).status_code == 403
        assert plain.get(f"/api/v1/dags/{other}", headers=theirs).status_code == 200
        listed = plain.get("/api/v1/namespaces", headers=theirs).json()["namespaces"]
        assert [n["namespace_id"] for n in listed] == [other]


def test_ups_workers_run_jobs_with_their_worker_token(auth_up: UpProcess, admin: httpx.Client) -> None:
    tokens = admin.get("/api/v1/tokens").json()["tokens"]
    workers = [t for t in tokens if t["description"].startswith("chronosched up: its local workers")]
    assert [(t["scope"], t["namespace_id"]) for t in workers] == [("SCOPE_WORKER", "*")]
    made = admin.post(
        f"/api/v1/definitions/{NS}",
        json={
            "name": f"true-{uuid.uuid4().hex[:6]}",
            "kind": "command",
            "payload_template": {"argv": ["true"]},
        },
    )
    assert made.status_code == 200, made.text
    ticked = admin.post(f"/api/v1/definitions/{NS}/{made.json()['def_id']}/tick", json={})
    assert ticked.status_code == 200, ticked.text
    job_id = ticked.json()["job_id"]

    def finished() -> dict[str, str] | None:
        job: dict[str, str] = admin.get(f"/api/v1/jobs/{NS}/{job_id}").json()
        return job if job["state"] in ("STATE_SUCCEEDED", "STATE_FAILED") else None

    job = wait_until(finished, within=60, what="up's worker to run the job", every=0.2)
    assert job["state"] == "STATE_SUCCEEDED", job
    assert job["worker_id"].startswith("local-")


def test_grpc_through_envoy_needs_a_token_too(auth_up: UpProcess, admin_token: str) -> None:
    target = f"127.0.0.1:{auth_up.http_port}"
    with Client(target, timeout=10) as nobody, pytest.raises(Unauthenticated):
        nobody.list_namespaces_page()
    with Client(target, token=admin_token, timeout=10) as admin_client:
        assert NS in [n.namespace_id for n in admin_client.list_namespaces()]
    # Health stays open, for balancers.
    started = time.monotonic()
    assert httpx.get(f"{auth_up.base_url}/healthz", timeout=10).status_code == 200
    assert time.monotonic() - started < 10
