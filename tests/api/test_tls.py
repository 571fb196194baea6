"""The gRPC server with TLS and with mutual TLS, against every kind of
client: the Python clients (sync and async), a worker built by its command
line (running a job), and the operator CLI. A client that cannot verify the
server, or that a mutual-TLS server cannot verify, fails the handshake and
gets UNAVAILABLE; nothing reaches a servicer without it.

The certificates come from a throw-away PKI made per module
(tests/support/tls.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from chronosched import AsyncClient, Client, JobState, Unavailable
from chronosched_server import cli as server_cli
from chronosched_server.app import Server, TlsError, server_credentials
from chronosched_server.config import Config
from chronosched_worker.cli import build_worker
from tests.support.tls import Pki, make_pki
from tests.support.waiting import poll
from tests.support.worker import running

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@asynccontextmanager
async def tls_server(database_url: str, pki: Pki, *, mutual: bool) -> AsyncIterator[str]:
    """A server on a free port with the test server certificate (and the
    test client CA for mutual TLS); yields its target."""
    config = Config(
        database_url=database_url,
        grpc_port=0,
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        tls_client_ca=pki.client_ca if mutual else None,
    )
    server = Server(config)
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=0)


async def healthz(target: str, **tls: Any) -> str:
    async with AsyncClient(target, timeout=5, **tls) as client:
        return (await client.healthz()).status


async def refused(target: str, **tls: Any) -> None:
    with pytest.raises(Unavailable):
        await healthz(target, **tls)


async def test_tls_needs_the_ca_that_issued_the_servers_certificate(database_url: str, pki: Pki) -> None:
    async with tls_server(database_url, pki, mutual=False) as target:
        await refused(target)  # plaintext against TLS
        await refused(target, ca=pki.client_ca)  # a CA that did not issue it
        await refused(target, ca=pki.stranger.cert)
        assert await healthz(target, ca=pki.ca) == "SERVING"
        # PEM text and bytes work as well as a path.
        assert await healthz(target, ca=pki.ca.read_text()) == "SERVING"

        # The blocking client, in a thread (the server runs on this loop).
        def blocking() -> str:
            with Client(target, ca=str(pki.ca), timeout=5) as client:
                namespace = client.create_namespace(f"tls-{uuid.uuid4().hex[:8]}")
                return namespace.namespace_id

        assert (await asyncio.to_thread(blocking)).startswith("tls-")


async def test_mutual_tls_needs_a_client_certificate_of_the_client_ca(database_url: str, pki: Pki) -> None:
    async with tls_server(database_url, pki, mutual=True) as target:
        await refused(target, ca=pki.ca)  # no client certificate
        await refused(target, ca=pki.ca, cert=pki.stranger.cert, key=pki.stranger.key)
        # The server's own certificate is of another CA than the client CA.
        await refused(target, ca=pki.ca, cert=pki.server.cert, key=pki.server.key)
        await refused(target, cert=pki.client.cert, key=pki.client.key)  # server not trusted
        assert await healthz(target, ca=pki.ca, cert=pki.client.cert, key=pki.client.key) == "SERVING"

        def blocking() -> str:
            with Client(target, ca=pki.ca, cert=pki.client.cert, key=pki.client.key, timeout=5) as client:
                return client.healthz().status

        assert await asyncio.to_thread(blocking) == "SERVING"


def test_a_client_certificate_needs_its_key(pki: Pki) -> None:
    with pytest.raises(ValueError, match="go together"):
        Client("127.0.0.1:1", ca=pki.ca, cert=pki.client.cert)
    with pytest.raises(ValueError, match="go together"):
        AsyncClient("127.0.0.1:1", key=pki.client.key)


async def test_a_worker_runs_a_job_over_mutual_tls(database_url: str, pki: Pki) -> None:
    async with (
        tls_server(database_url, pki, mutual=True) as target,
        AsyncClient(target, ca=pki.ca, cert=pki.client.cert, key=pki.client.key) as client,
    ):
        namespace = f"tls-{uuid.uuid4().hex[:8]}"
        await client.create_namespace(namespace)
        definition = await client.create_definition(namespace, "hello", "command", {"argv": ["true"]})
        # The worker as its command line builds it, TLS flags and all.
        worker = build_worker(
            [
                "--server",
                target,
                "--namespace",
                namespace,
                "--kinds",
                "command",
                "--tls-ca",
                str(pki.ca),
                "--tls-cert",
                str(pki.client.cert),
                "--tls-key",
                str(pki.client.key),
            ],
            env={},
        )
        async with running(worker):
            job = await client.tick(namespace, definition.def_id)

            async def finished() -> JobState | None:
                state = (await client.get_job(namespace, job.job_id)).state
                return state if state.is_finished else None

            assert await poll(finished, within=20, what="the job to finish") is JobState.SUCCEEDED


async def test_a_worker_without_a_client_certificate_gets_no_job(database_url: str, pki: Pki) -> None:
    async with (
        tls_server(database_url, pki, mutual=True) as target,
        AsyncClient(target, ca=pki.ca, cert=pki.client.cert, key=pki.client.key) as client,
    ):
        namespace = f"tls-{uuid.uuid4().hex[:8]}"
        await client.create_namespace(namespace)
        definition = await client.create_definition(namespace, "hello", "command", {"argv": ["true"]})
        job = await client.tick(namespace, definition.def_id)
        # The same worker as above, trusting the server but without a
        # certificate of its own.
        worker = build_worker(
            ["--server", target, "--namespace", namespace, "--kinds", "command", "--tls-ca", str(pki.ca)],
            env={},
        )
        async with running(worker):
            # Long enough for several connection attempts (the worker's
            # reconnect backoff starts well under a second); a worker that
            # got through would have taken the job within milliseconds.
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                assert (await client.get_job(namespace, job.job_id)).state is JobState.READY
                await asyncio.sleep(0.1)


def test_worker_tls_flags_come_from_the_environment_and_pair_up(pki: Pki) -> None:
    env = {
        "CHRONOSCHED_TLS_CA": str(pki.ca),
        "CHRONOSCHED_TLS_CLIENT_CERT": str(pki.client.cert),
        "CHRONOSCHED_TLS_CLIENT_KEY": str(pki.client.key),
    }
    worker = build_worker(["--all-namespaces"], env=env)
    assert worker._credentials is not None
    assert build_worker(["--all-namespaces"], env={})._credentials is None
    with pytest.raises(SystemExit):
        build_worker(["--all-namespaces", "--tls-cert", str(pki.client.cert)], env={})
    with pytest.raises(SystemExit):
        build_worker(["--all-namespaces", "--tls-ca", str(pki.ca.with_name("missing.pem"))], env={})


# --- the operator CLI -----------------------------------------------------------


def _cli(*argv: str) -> int:
    return server_cli.main(list(argv))


async def test_the_operator_cli_over_mutual_tls(
    database_url: str, pki: Pki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CHRONOSCHED_TLS_CA", "CHRONOSCHED_TLS_CLIENT_CERT", "CHRONOSCHED_TLS_CLIENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    namespace = f"tls-{uuid.uuid4().hex[:8]}"
    tls = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
    async with tls_server(database_url, pki, mutual=True) as target:

        async def cli(*argv: str) -> int:
            return await asyncio.to_thread(_cli, *argv, "--server", target, "--timeout", "5")

        assert await cli("ns", "create", namespace, *tls) == 0
        assert await cli("ns", "list", "-o", "json", *tls) == 0
        assert namespace in capsys.readouterr().out

        # Without a client certificate the server cannot be reached (2).
        assert await cli("ns", "list", "--tls-ca", str(pki.ca)) == 2
        assert "cannot reach the server" in capsys.readouterr().err
        # A certificate without its key is bad input (2), said before any call.
        assert await cli("ns", "list", "--tls-ca", str(pki.ca), "--tls-cert", str(pki.client.cert)) == 2
        assert "go together" in capsys.readouterr().err

        # The same from the environment.
        monkeypatch.setenv("CHRONOSCHED_TLS_CA", str(pki.ca))
        monkeypatch.setenv("CHRONOSCHED_TLS_CLIENT_CERT", str(pki.client.cert))
        monkeypatch.setenv("CHRONOSCHED_TLS_CLIENT_KEY", str(pki.client.key))
        assert await cli("ns", "get", namespace) == 0


# --- the server's own checks of its files ---------------------------------------


def _config(
    pki: Pki, tls_cert: Path | None = None, tls_key: Path | None = None, tls_client_ca: Path | None = None
) -> Config:
    return Config(
        database_url="postgresql:///unused", tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca
    )


def test_plaintext_without_files(pki: Pki) -> None:
    assert server_credentials(_config(pki)) is None


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"tls_cert": "server.cert"}, "both a certificate and its key"),
        ({"tls_client_ca": "client_ca"}, "needs the server's own certificate"),
        ({"tls_cert": "server.cert", "tls_key": "client.key"}, "cannot use certificate"),
        ({"tls_cert": "missing", "tls_key": "server.key"}, "cannot use certificate"),
        ({"tls_cert": "server.cert", "tls_key": "server.key", "tls_client_ca": "missing"}, "client CA"),
    ],
)
def test_unusable_tls_files_are_refused_with_a_reason(pki: Pki, files: dict[str, str], message: str) -> None:
    paths = {
        "server.cert": pki.server.cert,
        "server.key": pki.server.key,
        "client.key": pki.client.key,
        "client_ca": pki.client_ca,
        "missing": pki.ca.with_name("missing.pem"),
    }
    with pytest.raises(TlsError, match=message):
        server_credentials(_config(pki, **{field: paths[name] for field, name in files.items()}))


def _server_cmd(pki: Pki, *flags: str) -> Sequence[str]:
    # Without tokens: what is under test here is TLS alone.
    return ["server", "--database-url", "postgresql:///unused", "--insecure-no-auth", *flags]


def test_server_command_tls_errors(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    # Half a pair is a usage error (2); a key of another certificate stops
    # the start (1) before anything opens.
    assert _cli(*_server_cmd(pki, "--tls-cert", str(pki.server.cert))) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert _cli(*_server_cmd(pki, "--tls-client-ca", str(pki.client_ca))) == 2
    assert "--tls-client-ca needs --tls-cert" in capsys.readouterr().err
    code = _cli(*_server_cmd(pki, "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.client.key)))
    assert code == 1
    assert "chronosched server: error: cannot use certificate" in capsys.readouterr().err


def test_server_tls_flags_and_environment_reach_the_config(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    parse = server_cli.build_parser().parse_args
    config = server_cli.server_config(
        parse(
            _server_cmd(
                pki,
                "--tls-cert",
                str(pki.server.cert),
                "--tls-key",
                str(pki.server.key),
                "--tls-client-ca",
                str(pki.client_ca),
                "--listen",
                "0.0.0.0",
            )
        )
    )
    assert (config.tls_cert, config.tls_key, config.tls_client_ca) == (
        pki.server.cert,
        pki.server.key,
        pki.client_ca,
    )
    assert config.grpc_host == "0.0.0.0"
    # The listen address is loopback unless given; --grpc-host is the same flag.
    assert server_cli.server_config(parse(_server_cmd(pki))).grpc_host == "127.0.0.1"
    assert server_cli.server_config(parse(_server_cmd(pki, "--grpc-host", "::"))).grpc_address == "[::]:50051"
    monkeypatch.setenv("CHRONOSCHED_TLS_CERT", str(pki.server.cert))
    monkeypatch.setenv("CHRONOSCHED_TLS_KEY", str(pki.server.key))
    monkeypatch.setenv("CHRONOSCHED_TLS_CLIENT_CA", str(pki.client_ca))
    from_env = server_cli.server_config(server_cli.build_parser().parse_args(_server_cmd(pki)))
    assert from_env.tls_client_ca == pki.client_ca and from_env.tls_key == pki.server.key
