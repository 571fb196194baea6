"""`chronosched up`'s --listen and TLS flags without starting anything: the
flags (and their environment variables) reach its options, combinations
that cannot work are usage errors, and the banner names every listener,
who can reach it, TLS and auth, warning when nothing guards a listener
other machines can reach."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chronosched_server.cli import build_parser, main
from chronosched_server.config import connect_host, host_port
from chronosched_server.local import up as local_up

pytestmark = pytest.mark.timeout(30)


def _parse(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["up", *flags])


def test_listen_defaults_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHRONOSCHED_LISTEN", raising=False)
    assert _parse().listen == "127.0.0.1" == local_up.DEFAULT_LISTEN
    assert _parse("--listen", "0.0.0.0").listen == "0.0.0.0"
    monkeypatch.setenv("CHRONOSCHED_LISTEN", "::")
    assert _parse().listen == "::"


def test_listen_takes_an_ip_address(capsys: pytest.CaptureFixture[str]) -> None:
    # Envoy binds addresses, not names.
    assert main(["up", "--listen", "example.com"]) == 2
    assert "argument --listen: not an IP address: 'example.com'" in capsys.readouterr().err


def test_tls_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = _parse(
        "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "cca.pem", "--tls-ca", "ca.pem"
    )
    assert (args.tls_cert, args.tls_key, args.tls_client_ca, args.tls_ca) == tuple(
        map(Path, ("c.pem", "k.pem", "cca.pem", "ca.pem"))
    )
    monkeypatch.setenv("CHRONOSCHED_TLS_CERT", "env-c.pem")
    monkeypatch.setenv("CHRONOSCHED_TLS_CA", "env-ca.pem")
    args = _parse()
    assert (args.tls_cert, args.tls_ca) == (Path("env-c.pem"), Path("env-ca.pem"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "k.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert"),
        (["--tls-ca", "ca.pem"], "--tls-ca is what up's own clients trust"),
    ],
)
def test_tls_flags_that_cannot_work_are_usage_errors(
    tmp_path: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", "--data-dir", str(tmp_path / "data"), "--workers", "0", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before anything


def test_addresses() -> None:
    assert host_port("127.0.0.1", 8080) == "127.0.0.1:8080"
    assert host_port("::1", 8080) == "[::1]:8080"
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "::1"
    assert connect_host("127.0.0.2") == "127.0.0.2"


@pytest.fixture
def make_up(tmp_path: Path) -> Iterator[type[local_up._Up]]:
    made: list[local_up._Up] = []

    class Up(local_up._Up):
        def __post_init__(self) -> None:
            super().__post_init__()
            made.append(self)

    yield Up
    for up in made:
        # Never installed: only its pipe is open.
        os.close(up.signals.read_fd)
        os.close(up.signals._write_fd)


def _options(tmp_path: Path, **more: Any) -> dict[str, Any]:
    """The fields of an UpOptions (every flag at its default), with `more`."""
    options = local_up.UpOptions(
        data_dir=tmp_path,
        grpc_port=50051,
        http_port=8080,
        admin_port=9901,
        database_url="postgresql:///elsewhere",
        workers=0,
        log_level="INFO",
    )
    return {**dataclasses.asdict(options), **more}


def test_the_default_banner(make_up: type[local_up._Up], tmp_path: Path) -> None:
    banner = "\n".join(make_up(**_options(tmp_path)).banner(1.25))
    assert banner == "\n".join(
        [
            "chronosched is up (started in 1.2s)",
            "  REST    http://127.0.0.1:8080/api/v1   (health: /healthz)",
            "  gRPC    127.0.0.1:50051   (also through Envoy on :8080)",
            f"  data    {tmp_path}",
            "Listening on this machine only:",
            "  127.0.0.1:8080   Envoy: REST under /api/v1 and /healthz, gRPC passed through to the server",
            "  127.0.0.1:50051  gRPC server: the API and the workers' job streams",
            "  127.0.0.1:9901   Envoy's admin API (always 127.0.0.1: it can stop Envoy)",
            "  PostgreSQL       yours (--database-url); up starts none",
            "TLS:  off (plaintext gRPC and HTTP)",
            "auth: off (loopback only)",
            "workers: none here (--workers 0); connect your own",
            "Press Ctrl-C to stop.",
        ]
    )


@pytest.mark.parametrize(
    ("connected", "line"),
    [
        (2, "workers: 2 local, connected (every namespace, the built-in kinds)"),
        (1, "workers: 1 of 2 local connected so far; the others keep trying"),
    ],
)
def test_the_banner_says_how_many_local_workers_connected(
    make_up: type[local_up._Up], tmp_path: Path, connected: int, line: str
) -> None:
    up = make_up(**_options(tmp_path, workers=2))
    up.workers_connected = connected
    assert line in up.banner(1.0)


def test_every_interface_without_tls_or_auth_is_a_warning(
    make_up: type[local_up._Up], tmp_path: Path
) -> None:
    lines = make_up(**_options(tmp_path, listen="0.0.0.0")).banner(1.0)
    assert "Listening on every interface (0.0.0.0), other machines included:" in lines
    assert (
        "  0.0.0.0:8080    Envoy: REST under /api/v1 and /healthz, gRPC passed through to the server" in lines
    )
    assert "  127.0.0.1:9901  Envoy's admin API (always 127.0.0.1: it can stop Envoy)" in lines
    # Its own clients reach it on loopback.
    assert "  gRPC    127.0.0.1:50051   (also through Envoy on :8080)" in lines
    assert any(line.startswith("WARNING: anyone who can reach 0.0.0.0") for line in lines)


def test_mutual_tls_on_every_interface(make_up: type[local_up._Up], tmp_path: Path) -> None:
    up = make_up(
        **_options(
            tmp_path,
            listen="::",
            tls_cert=Path("/pki/server.pem"),
            tls_key=Path("/pki/server-key.pem"),
            tls_client_ca=Path("/pki/clients.pem"),
        )
    )
    lines = up.banner(1.0)
    assert "  REST    https://[::1]:8080/api/v1   (health: /healthz)" in lines
    assert "  [::]:50051      gRPC server: the API and the workers' job streams" in lines
    assert (
        "TLS:  on for gRPC and REST, certificate /pki/server.pem; client certificates required "
        "(issued by /pki/clients.pem)"
    ) in lines
    assert not any(line.startswith("WARNING") for line in lines)
    # Its own clients trust the certificate itself and present it.
    assert up.trusted_ca == Path("/pki/server.pem")
    assert up.client_identity == (Path("/pki/server.pem"), Path("/pki/server-key.pem"))
