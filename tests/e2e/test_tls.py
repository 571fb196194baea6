"""`chronosched up` with mutual TLS end to end: the gRPC server and Envoy's
listener both serve TLS and require client certificates, Envoy talks TLS
(with a client certificate) to the server, and up's local worker runs a job
over TLS. Plain HTTP, an unknown CA or no client certificate are refused;
REST and gRPC through Envoy work with the right files.

The PKI is made at run time (tests/support/tls.py). The clients' CA bundle
holds the client CA (for the test's own clients) and the server CA (up's own
clients present the server's certificate, which may act as a client's)."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronosched import Client, JobState, Unavailable
from tests.support.processes import clean_env, free_port
from tests.support.tls import Pki, make_pki
from tests.support.up import UpProcess, temporary_data_root
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

UP_COMMAND = [sys.executable, "-m", "chronosched_server", "up"]


@dataclass
class TlsUp(UpProcess):
    """An `up` with TLS: ready once its state file says so (plain HTTP, which
    UpProcess polls, no longer reaches it)."""

    pki: Pki | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    def wait_ready(self) -> None:
        proc = self.proc
        assert proc is not None
        state_path = self.data_dir / "run" / "up.json"

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                pytest.fail(f"`chronosched up` exited with {proc.returncode}:\n{self.log_tail()}")
            try:
                state: dict[str, Any] = json.loads(state_path.read_text())
            except (OSError, ValueError):
                return None
            return state if state.get("ready") else None

        self.state = wait_until(ready, within=90, what="`up` with TLS to be ready", detail=self.log_tail)


@pytest.fixture(scope="module")
def tls_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsUp]:
    files = tmp_path_factory.mktemp("pki")
    pki = make_pki(files)
    clients_ca = files / "clients-ca.pem"
    clients_ca.write_bytes(pki.client_ca.read_bytes() + pki.ca.read_bytes())
    with temporary_data_root() as root:
        running = TlsUp(
            data_dir=root / "data",
            log_path=tmp_path_factory.mktemp("up") / "up.log",
            extra_args=[
                "--workers",
                "1",
                "--tls-cert",
                str(pki.server.cert),
                "--tls-key",
                str(pki.server.key),
                "--tls-client-ca",
                str(clients_ca),
                "--tls-ca",
                str(pki.ca),
            ],
            pki=pki,
        )
        running.start()
        try:
            running.wait_ready()
            yield running
            running.stop_and_check()
        finally:
            running.stop()


def _pki(up: TlsUp) -> Pki:
    assert up.pki is not None
    return up.pki


def _tls(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """What an HTTPS client trusts (`ca`) and presents (`cert`, `key`)."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def test_rest_needs_tls_and_a_client_certificate(tls_up: TlsUp) -> None:
    pki = _pki(tls_up)
    with httpx.Client(verify=_tls(pki.ca, pki.client.cert, pki.client.key), timeout=10) as api:
        assert api.get(f"{tls_up.base_url}/healthz").status_code == 200
        namespace = f"tls-{uuid.uuid4().hex[:8]}"
        created = api.post(f"{tls_up.base_url}/api/v1/namespaces", json={"namespace_id": namespace})
        assert created.status_code == 200, created.text
        # Through Envoy to the server over TLS and back.
        assert api.get(f"{tls_up.base_url}/api/v1/namespaces/{namespace}").json()["namespace_id"] == namespace

    # Plain HTTP on the TLS listener: no HTTP answer at all.
    with httpx.Client(timeout=10) as plain, pytest.raises(httpx.TransportError):
        plain.get(f"http://127.0.0.1:{tls_up.http_port}/healthz")
    refused = [
        _tls(pki.ca),  # no client certificate
        _tls(pki.ca, pki.stranger.cert, pki.stranger.key),  # one of an unknown CA
        _tls(pki.client_ca, pki.client.cert, pki.client.key),  # the server's CA not trusted
    ]
    for context in refused:
        with httpx.Client(verify=context, timeout=10) as api, pytest.raises(httpx.TransportError):
            api.get(f"{tls_up.base_url}/healthz")


def test_a_job_runs_over_tls_through_envoy_and_the_local_worker(tls_up: TlsUp) -> None:
    pki = _pki(tls_up)
    envoy = f"127.0.0.1:{tls_up.http_port}"
    # gRPC through Envoy: TLS to Envoy, TLS again from Envoy to the server.
    with Client(envoy, ca=pki.ca, cert=pki.client.cert, key=pki.client.key, timeout=10) as client:
        namespace = client.create_namespace(f"tls-{uuid.uuid4().hex[:8]}").namespace_id
        definition = client.create_definition(namespace, "hello", "command", {"argv": ["true"]})
        job = client.tick(namespace, definition.def_id)

        # up's local worker takes it over its own TLS connection.
        def finished() -> JobState | None:
            state = client.get_job(namespace, job.job_id).state
            return state if state.is_finished else None

        assert wait_until(finished, within=30, what="the job to finish") is JobState.SUCCEEDED


def test_grpc_needs_a_client_certificate_too(tls_up: TlsUp) -> None:
    pki = _pki(tls_up)
    for target in (tls_up.grpc_target, f"127.0.0.1:{tls_up.http_port}"):
        with Client(target, ca=pki.ca, timeout=5) as client, pytest.raises(Unavailable):
            client.healthz()
        with Client(target, timeout=5) as client, pytest.raises(Unavailable):
            client.healthz()
        with Client(target, ca=pki.ca, cert=pki.client.cert, key=pki.client.key, timeout=5) as client:
            assert client.healthz().status == "SERVING"


def test_the_banner_and_state_say_tls(tls_up: TlsUp) -> None:
    log = tls_up.log_path.read_text(errors="replace")
    assert f"  REST    https://127.0.0.1:{tls_up.http_port}/api/v1" in log
    assert "\nTLS:  on for gRPC and REST" in log and "client certificates required" in log
    assert tls_up.state["rest_url"] == f"https://127.0.0.1:{tls_up.http_port}/api/v1"


def test_a_certificate_that_does_not_name_the_address_stops_up_at_once(
    data_root: Path, tmp_path: Path
) -> None:
    # The test certificate names 127.0.0.1 and 127.0.0.2, not 127.0.0.3:
    # up's own clients could never verify the server there. up says so
    # instead of waiting for a readiness check that cannot succeed.
    pki = make_pki(tmp_path / "pki")
    result = subprocess.run(
        [
            *UP_COMMAND,
            "--data-dir",
            str(data_root / "data"),
            "--listen",
            "127.0.0.3",
            "--grpc-port",
            str(free_port()),
            "--http-port",
            str(free_port()),
            "--admin-port",
            str(free_port()),
            "--workers",
            "0",
            "--tls-cert",
            str(pki.server.cert),
            "--tls-key",
            str(pki.server.key),
            "--tls-ca",
            str(pki.ca),
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=data_root,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "chronosched up: error: up's own clients cannot talk TLS to the gRPC server at 127.0.0.3:" in (
        result.stderr
    )
    assert "IP address mismatch" in result.stderr
    assert "must be issued by --tls-ca and name 127.0.0.3" in result.stderr
    # Stopped in order: no server or Envoy left behind.
    assert not (data_root / "data" / "run" / "up.json").exists()
