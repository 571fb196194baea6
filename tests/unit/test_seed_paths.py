"""The seed's REST paths stay bound, and docs/seed-compatibility.md lists every
path the protos bind.

The first test keeps the compatibility promise: each (method, path) of the
seed's README must be a google.api.http binding of a service Envoy
transcodes. The second keeps the page complete: an endpoint added to a proto
without a row in the page's endpoint table fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from chronosched_server.local.envoy import DESCRIPTOR_SET, TRANSCODED_SERVICES

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "seed-compatibility.md"

# The seed README's path list, as it defined it.
SEED = {
    ("POST", "/api/v1/namespaces"),
    ("GET", "/api/v1/namespaces"),
    ("GET", "/api/v1/namespaces/{namespace_id}"),
    ("POST", "/api/v1/dags/{namespace_id}"),
    ("GET", "/api/v1/dags/{namespace_id}"),
    ("GET", "/api/v1/dags/{namespace_id}/{dag_id}"),
    ("DELETE", "/api/v1/dags/{namespace_id}/{dag_id}"),
    ("POST", "/api/v1/definitions/{namespace_id}"),
    ("GET", "/api/v1/definitions/{namespace_id}"),
    ("GET", "/api/v1/definitions/{namespace_id}/{def_id}"),
    ("POST", "/api/v1/dags/{namespace_id}/{dag_id}/jobs"),
    ("GET", "/api/v1/dags/{namespace_id}/{dag_id}/jobs"),
    ("GET", "/api/v1/jobs/{namespace_id}/{job_id}"),
    ("GET", "/api/v1/jobs/{namespace_id}"),
    ("POST", "/api/v1/jobs/{job_id}/complete"),
    ("POST", "/api/v1/jobs/{job_id}/fail"),
    ("POST", "/api/v1/dags/{namespace_id}/{dag_id}/dependencies/bulk"),
    ("POST", "/api/v1/dags/{namespace_id}/{dag_id}/dependencies"),
    ("GET", "/api/v1/dags/{namespace_id}/{dag_id}/dependencies"),
    ("POST", "/api/v1/admin/prune"),
    ("GET", "/healthz"),
}

# Paths Envoy serves that no proto binds: /api/v1/healthz is rewritten to
# /healthz by envoy.yaml's Lua filter (docs/rest-errors.md).
ALIASES = {("GET", "/api/v1/healthz")}

VERBS = ("get", "put", "post", "delete", "patch")
Endpoint = tuple[str, str]


def bindings() -> dict[Endpoint, str]:
    """(METHOD, path template) -> "Service.Method" for every google.api.http
    rule (additional bindings included) of the chronosched services in the
    generated descriptor set."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    found: dict[Endpoint, str] = {}
    for file in files.file:
        if not file.package.startswith("chronosched."):
            continue
        for service in file.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    assert verb in VERBS, (service.name, method.name, verb)
                    endpoint = (verb.upper(), getattr(binding, verb))
                    assert endpoint not in found, (endpoint, found.get(endpoint))
                    found[endpoint] = f"{file.package}.{service.name}.{method.name}"
    return found


_SPAN = re.compile(r"`(GET|POST|PUT|DELETE|PATCH) (/[^`\s]*)`")
_HEADER = re.compile(r"^\|\s*seed path\s*\|\s*ours\s*\|")


def endpoint_table(text: str) -> tuple[set[Endpoint], set[Endpoint]]:
    """The (METHOD, path) spans of the seed column and of the ours column of
    the page's endpoint table (the table whose header starts `| seed path |
    ours |`)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    assert len(starts) == 1, "one endpoint table, its header starting `| seed path | ours |`"
    seed: set[Endpoint] = set()
    ours: set[Endpoint] = set()
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = line.strip().strip("|").split("|")
        assert len(cells) == 4, line
        seed |= {(m, p) for m, p in _SPAN.findall(cells[0])}
        ours |= {(m, p) for m, p in _SPAN.findall(cells[1])}
    return seed, ours


def test_every_seed_path_is_still_bound() -> None:
    bound = bindings()
    missing = sorted(SEED - set(bound))
    assert missing == [], f"seed paths no RPC binds any more: {missing}"
    # Bound is not enough: Envoy must transcode the service that binds it.
    for endpoint in sorted(SEED):
        service = bound[endpoint].rsplit(".", 1)[0]
        assert service in TRANSCODED_SERVICES, (endpoint, service)


def test_the_page_lists_every_bound_path() -> None:
    seed, ours = endpoint_table(PAGE.read_text(encoding="utf-8"))
    assert seed == SEED, "the seed column shows exactly the seed's path list"
    missing = sorted(set(bindings()) - ours)
    assert missing == [], f"bound in the protos, without a row in {PAGE.name}: {missing}"
    stale = sorted(ours - set(bindings()) - ALIASES)
    assert stale == [], f"rows in {PAGE.name} for paths nothing binds: {stale}"


def test_the_table_parser_sees_a_missing_row() -> None:
    # The check above must be able to fail: drop one row and it notices.
    text = PAGE.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if "`POST /api/v1/jobs/{job_id}/fail`" in line)
    _, ours = endpoint_table(text.replace(row + "\n", ""))
    assert ("POST", "/api/v1/jobs/{job_id}/fail") not in ours
    assert ("POST", "/api/v1/jobs/{job_id}/complete") in ours
