"""Envoy's listener address and TLS as the launcher renders them: loopback
and plaintext unless asked, a DownstreamTlsContext on the listener and an
UpstreamTlsContext (checking the server's name) on the cluster when asked,
half-given pairs refused, and the `render` command's flags. The real Envoy
validates a config with every TLS option (it loads the PEM files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chronosched_server.local.envoy import (
    TLS_SOCKET,
    EnvoyError,
    EnvoySettings,
    main,
    render_config,
    validate_config,
    write_config,
)
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.timeout(60)

TLS_TYPES = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _listener(cfg: dict[str, Any]) -> dict[str, Any]:
    (listener,) = cfg["static_resources"]["listeners"]
    found: dict[str, Any] = listener
    return found


def _cluster(cfg: dict[str, Any]) -> dict[str, Any]:
    (cluster,) = cfg["static_resources"]["clusters"]
    found: dict[str, Any] = cluster
    return found


def _downstream(cfg: dict[str, Any]) -> dict[str, Any] | None:
    (chain,) = _listener(cfg)["filter_chains"]
    socket: dict[str, Any] | None = chain.get("transport_socket")
    return socket


def test_by_default_loopback_and_plaintext() -> None:
    cfg = render_config(EnvoySettings())
    assert _listener(cfg)["address"]["socket_address"]["address"] == "127.0.0.1"
    assert cfg["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert _downstream(cfg) is None
    assert "transport_socket" not in _cluster(cfg)


def test_the_listen_address_moves_the_listener_and_never_the_admin_api() -> None:
    cfg = render_config(EnvoySettings(listen_address="0.0.0.0"))
    assert _listener(cfg)["address"]["socket_address"]["address"] == "0.0.0.0"
    assert cfg["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_listener_tls(pki: Pki) -> None:
    cfg = render_config(EnvoySettings(tls_cert=pki.server.cert, tls_key=pki.server.key))
    socket = _downstream(cfg)
    assert socket is not None and socket["name"] == TLS_SOCKET
    context = socket["typed_config"]
    assert context["@type"] == TLS_TYPES + "DownstreamTlsContext"
    common = context["common_tls_context"]
    assert common["tls_certificates"] == [
        {
            "certificate_chain": {"filename": str(pki.server.cert.resolve())},
            "private_key": {"filename": str(pki.server.key.resolve())},
        }
    ]
    # gRPC clients need h2 by ALPN.
    assert common["alpn_protocols"] == ["h2", "http/1.1"]
    assert "validation_context" not in common and "require_client_certificate" not in context
    # Upstream stays plaintext unless asked.
    assert "transport_socket" not in _cluster(cfg)


def test_listener_mutual_tls(pki: Pki) -> None:
    settings = EnvoySettings(tls_cert=pki.server.cert, tls_key=pki.server.key, tls_client_ca=pki.client_ca)
    socket = _downstream(render_config(settings))
    assert socket is not None
    context = socket["typed_config"]
    assert context["require_client_certificate"] is True
    assert context["common_tls_context"]["validation_context"] == {
        "trusted_ca": {"filename": str(pki.client_ca.resolve())}
    }


@pytest.mark.parametrize(
    ("host", "name", "san_type", "sni"),
    [
        ("127.0.0.1", None, "IP_ADDRESS", None),
        ("server", None, "DNS", "server"),
        ("10.0.0.7", "sched.internal", "DNS", "sched.internal"),
    ],
)
def test_upstream_tls_checks_the_servers_name(
    pki: Pki, host: str, name: str | None, san_type: str, sni: str | None
) -> None:
    settings = EnvoySettings(upstream_host=host, upstream_tls_ca=pki.ca, upstream_tls_name=name)
    socket = _cluster(render_config(settings))["transport_socket"]
    assert socket["name"] == TLS_SOCKET
    context = socket["typed_config"]
    assert context["@type"] == TLS_TYPES + "UpstreamTlsContext"
    assert context.get("sni") == sni
    common = context["common_tls_context"]
    assert common["alpn_protocols"] == ["h2"]
    assert common["tls_params"] == {"tls_maximum_protocol_version": "TLSv1_3"}
    assert common["validation_context"] == {
        "trusted_ca": {"filename": str(pki.ca.resolve())},
        "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": name or host}}],
    }
    assert "tls_certificates" not in common


def test_upstream_mutual_tls_presents_a_client_certificate(pki: Pki) -> None:
    settings = EnvoySettings(
        upstream_tls_ca=pki.ca, upstream_tls_cert=pki.client.cert, upstream_tls_key=pki.client.key
    )
    common = _cluster(render_config(settings))["transport_socket"]["typed_config"]["common_tls_context"]
    assert common["tls_certificates"] == [
        {
            "certificate_chain": {"filename": str(pki.client.cert.resolve())},
            "private_key": {"filename": str(pki.client.key.resolve())},
        }
    ]


@pytest.mark.parametrize(
    "given",
    [
        {"tls_cert": "cert"},
        {"tls_key": "key"},
        {"tls_client_ca": "ca"},
        {"upstream_tls_cert": "cert", "upstream_tls_key": "key"},
        {"upstream_tls_ca": "ca", "upstream_tls_cert": "cert"},
        {"upstream_tls_name": "server"},
    ],
)
def test_half_given_tls_is_refused(pki: Pki, given: dict[str, str]) -> None:
    files: dict[str, Any] = {"cert": pki.server.cert, "key": pki.server.key, "ca": pki.ca, "server": "server"}
    with pytest.raises(EnvoyError):
        render_config(EnvoySettings(**{field: files[name] for field, name in given.items()}))


def test_render_command_takes_the_listen_address_and_tls(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "envoy.yaml"
    code = main(
        [
            "render",
            "--output",
            str(out),
            "--listen-address",
            "0.0.0.0",
            "--tls-cert",
            str(pki.server.cert),
            "--tls-key",
            str(pki.server.key),
            "--tls-client-ca",
            str(pki.client_ca),
            "--upstream-tls-ca",
            str(pki.ca),
            "--upstream-tls-cert",
            str(pki.client.cert),
            "--upstream-tls-key",
            str(pki.client.key),
            "--upstream-tls-name",
            "localhost",
        ]
    )
    assert code == 0
    cfg = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert _listener(cfg)["address"]["socket_address"]["address"] == "0.0.0.0"
    downstream = _downstream(cfg)
    assert downstream is not None and downstream["typed_config"]["require_client_certificate"] is True
    upstream = _cluster(cfg)["transport_socket"]["typed_config"]
    assert upstream["sni"] == "localhost"
    assert upstream["common_tls_context"]["tls_certificates"][0]["private_key"] == {
        "filename": str(pki.client.key.resolve())
    }
    # The real Envoy accepts it, PEM files and all.
    result = validate_config(out)
    assert result.ok, result.output


def test_render_command_refuses_half_a_pair(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["render", "--output", str(tmp_path / "x.yaml"), "--tls-cert", str(pki.server.cert)])
    assert exited.value.code == 2
    assert "a certificate and its key go together" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_envoy_refuses_a_tls_config_whose_files_are_missing(pki: Pki, tmp_path: Path) -> None:
    # Proves validate mode reads the PEM files, so the test above can fail.
    missing = tmp_path / "missing.pem"
    cfg = render_config(EnvoySettings(tls_cert=missing, tls_key=pki.server.key))
    result = validate_config(write_config(cfg, tmp_path / "envoy.yaml"))
    assert not result.ok
