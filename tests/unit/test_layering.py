"""The import layering of docs/architecture.md, enforced: every arrow between
the project's packages points down, and only the storage layer knows psycopg.

The checker reads each module's imports with `ast` (function-level imports
included) and maps them to layers; a forbidden arrow fails with the module,
line and rule. The last tests feed it invented modules, so it is known to
fail when an arrow runs back up.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The pure modules: domain rules with no I/O.
PURE = {
    "cron",
    "errors",
    "graph",
    "ids",
    "quotas",
    "tokens",
    "topology",
    "transitions",
    "validation",
    "waiting",
    "waits",
}

# Layer of each chronosched_server module (by its first name under the package).
LAYER_OF = {
    **dict.fromkeys(PURE, "pure"),
    "storage": "storage",
    "render": "render",
    "dispatch": "dispatch",
    "scheduler": "scheduler",
    "api": "api",
    "config": "config",
    "eventloop": "eventloop",
    "metrics": "metrics",
    "local": "local",
    "app": "app",
    "cli": "entry",
    "__main__": "entry",
    "__init__": "entry",
}

# Which layers each layer may import (besides itself).
ALLOWED = {
    "pure": {"pure"},
    "config": set(),
    "eventloop": set(),
    "storage": {"pure"},
    # Metric objects and their collectors; fed by dispatch, api and app.
    "metrics": {"pure", "storage"},
    "render": {"pure", "storage"},
    "dispatch": {"pure", "storage", "render", "metrics"},
    "scheduler": {"pure", "storage"},
    "api": {"pure", "storage", "render", "dispatch", "metrics"},
    "local": {"pure", "storage", "config"},
    "app": {"pure", "storage", "render", "dispatch", "scheduler", "api", "config", "eventloop", "metrics"},
    "entry": {
        "pure",
        "storage",
        "render",
        "dispatch",
        "scheduler",
        "api",
        "config",
        "eventloop",
        "local",
        "app",
        "metrics",
    },
}

# Layers of the client package (chronosched, beside the generated chronosched.v1):
# the operator CLI (chronosched.cli) sits on the client; nothing else of the
# client imports it. Every other module of the package is "client".
CLIENT_LAYER_OF = {"cli": "operator", "logs": "logs"}

# Third-party packages only some layers may use.
RESTRICTED_LIBRARIES = {"psycopg": {"storage"}, "psycopg_pool": {"storage"}, "rich": {"operator"}}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted


def imports_of(module: str, source: str) -> list[Import]:
    package = module.rsplit(".", 1)[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if "." in base:
                found.append(Import(module, node.lineno, base))
            else:
                # `from chronosched_server import render` imports modules of a package.
                found += [Import(module, node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "chronosched_server" or len(parts) < 2:
        return None
    return LAYER_OF.get(parts[1])


def client_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "chronosched":
        return None
    return CLIENT_LAYER_OF.get(parts[1], "client") if len(parts) > 1 else "client"


def violations(modules: dict[str, str]) -> list[str]:
    """Every forbidden arrow among `modules` (dotted name -> source)."""
    found: list[str] = []
    for module, source in sorted(modules.items()):
        top = module.split(".")[0]
        own = layer(module)
        side = client_layer(module)
        for imp in imports_of(module, source):
            target_top = imp.target.split(".")[0]
            where = f"{module}:{imp.line} imports {imp.target}"
            if top == "chronosched_worker" and target_top == "chronosched_server":
                found.append(f"{where}: the worker never imports the server")
            if top == "chronosched" and target_top in ("chronosched_server", "chronosched_worker"):
                found.append(f"{where}: the client package imports neither server nor worker")
            allowed_in = RESTRICTED_LIBRARIES.get(target_top)
            if allowed_in is not None and (own or side) not in allowed_in:
                found.append(f"{where}: only {', '.join(sorted(allowed_in))} may use {target_top}")
            if side == "client" and client_layer(imp.target) == "operator":
                found.append(f"{where}: the client never imports its CLI (chronosched.cli)")
            if (
                top == "chronosched_server"
                and target_top == "chronosched"
                and not imp.target.startswith("chronosched.v1")
                and not (own == "entry" and client_layer(imp.target) in ("operator", "logs"))
            ):
                found.append(
                    f"{where}: the server uses only chronosched.v1 "
                    "(and, in cli.py, chronosched.cli and chronosched.logs)"
                )
            if own is None or target_top != "chronosched_server":
                continue
            theirs = layer(imp.target)
            if theirs is None or theirs == own:
                continue
            if theirs not in ALLOWED[own]:
                found.append(f"{where}: {own} may import only {', '.join(sorted(ALLOWED[own])) or 'nothing'}")
    return found


def project_modules() -> dict[str, str]:
    sources: dict[str, str] = {}
    for base, package in (
        (ROOT, "chronosched_server"),
        (ROOT, "chronosched_worker"),
        (ROOT / "clients" / "python", "chronosched"),
    ):
        for path in sorted((base / package).rglob("*.py")):
            relative = path.relative_to(base).with_suffix("")
            if "v1" in relative.parts:
                continue  # generated
            sources[".".join(relative.parts)] = path.read_text()
    return sources


def test_every_module_is_in_a_layer() -> None:
    unplaced = sorted(
        m for m in project_modules() if m.startswith("chronosched_server.") and layer(m) is None
    )
    assert unplaced == [], "add these to LAYER_OF (and docs/architecture.md)"


def test_the_project_has_no_forbidden_import() -> None:
    assert violations(project_modules()) == []


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        (
            "chronosched_server.storage.leases",
            "from chronosched_server.dispatch.streams import WorkerStream",
            "storage may import only pure",
        ),
        (
            "chronosched_server.dispatch.dispatcher",
            "from chronosched_server.api import worker",
            "dispatch may import only",
        ),
        (
            "chronosched_server.scheduler.loop",
            "def f():\n    import psycopg\n",
            "only storage may use psycopg",
        ),
        ("chronosched_server.render", "from chronosched_server import dispatch", "render may import only"),
        (
            "chronosched_server.transitions",
            "from chronosched_server.storage import db",
            "pure may import only pure",
        ),
        ("chronosched_server.api.jobs", "from ..scheduler import loop", "api may import only"),
        (
            "chronosched_worker.sdk",
            "from chronosched_server import ids",
            "the worker never imports the server",
        ),
        ("chronosched.client", "import chronosched_worker", "the client package imports neither"),
        ("chronosched.dag", "from chronosched_server import ids", "the client package imports neither"),
        (
            "chronosched.cli._commands",
            "from chronosched_server import cli",
            "the client package imports neither",
        ),
        ("chronosched.client", "from chronosched.cli import main", "the client never imports its CLI"),
        ("chronosched", "from chronosched import cli", "the client never imports its CLI"),
        ("chronosched.types", "import rich.console", "only operator may use rich"),
        ("chronosched_server.api.jobs", "from chronosched import cli", "the server uses only chronosched.v1"),
        (
            "chronosched_server.render",
            "from chronosched.client import Client",
            "the server uses only chronosched.v1",
        ),
    ],
)
def test_a_forbidden_arrow_is_caught(module: str, source: str, complaint: str) -> None:
    found = violations({module: source})
    assert len(found) == 1 and complaint in found[0], found


def test_allowed_arrows_pass() -> None:
    allowed = {
        "chronosched_server.api.jobs": "from chronosched_server import render\nfrom ..storage import jobs",
        "chronosched_server.dispatch.dispatcher": "from chronosched_server.storage.records import Job",
        "chronosched_server.storage.db": "import psycopg",
        "chronosched_server.cli": "from chronosched import cli as operator_cli",
        "chronosched_server.api.dags": "from chronosched.v1 import dag_pb2",
        "chronosched.cli._commands": "from chronosched.client import Client\nfrom rich.table import Table",
        "chronosched.cli._parser": "from chronosched.cli import _values\nfrom chronosched import types",
    }
    assert violations(allowed) == []
