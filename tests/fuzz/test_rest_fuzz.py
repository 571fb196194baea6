"""Schemathesis against the real stack: every operation of docs/openapi.yaml,
with requests generated from the document both valid (positive) and invalid
(negative), sent through Envoy to a `chronosched up`.

Every case must hold to three rules:
- no 5xx;
- the answer conforms to the document: its status code is documented (200,
  or an error), and its content type, headers and body are the ones the
  document gives (schemathesis's own checks);
- a refused request (any 4xx) changes nothing: every table of the database
  has the same rows before and after it.

Random ids would only ever meet 404s, so each operation runs against a world
of its own (a namespace with two definitions, a schedule, an open DAG, a
started DAG and a standalone job), and hooks put the world's ids (and valid
values of fields whose rules the document gives only in words) into most
cases, wherever the document names them: paths, query and bodies.

Generation is seeded (FUZZ_SEED), so runs draw much the same cases (the
server's ids and times still differ); change the seed to explore further.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import TestPhase
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.database import Connection, changed, snapshot, tables
from tests.fuzz.tally import TALLY
from tests.support.rest import create_dag, create_definition, dag_jobs, ok
from tests.support.up import UpProcess

# A case of any operation (schemathesis's Case is generic in the operation,
# which is generic four times over).
Case = schemathesis.Case[schemathesis.APIOperation[Any, Any, Any, Any]]

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
# Cases drawn per operation in the fuzzing phase, positive and negative
# together; the examples and coverage phases add their own fixed cases. The
# whole run stays well within 90 s on 2 cores.
MAX_EXAMPLES = 50
FUZZ_SEED = 20261130

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_path(DOCUMENT)
schema.config.seed = FUZZ_SEED
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    # No example database: a failure prints its case, and the seed replays it.
    database="none",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


# Valid values of the fields whose rules the document states only in words
# (formats and ranges in descriptions), so that some generated requests get
# past validation; the generated value still goes out a quarter of the time.
# Cron specs are yearly or none: no schedule may fire during a run.
VALID: dict[str, list[Any]] = {
    "kind": ["manual"],
    "key": ["p", "q", "r", "s"],
    "cron_spec": ["@yearly", ""],
    "time_zone": ["UTC", "Europe/Berlin"],
    "max_attempts": [1, 3],
    "backoff_multiplier": [2.0],
    "default_priority": [0, 10],
    "priority": [-5, 0],
    "starting_deadline": ["60s"],
    "backoff_initial": ["1s"],
    "backoff_max": ["60s"],
    "execution_timeout": ["3600s"],
    "delay_after_parents": ["0s", "1.5s"],
    "older_than": ["3600s", "0s"],
    "page_size": [0, 2],
}


@dataclass
class World:
    """The known resources of one operation's run, under the names the
    document gives their ids."""

    namespace_id: str = ""
    by_name: dict[str, list[Any]] = field(default_factory=dict)

    def known(self, name: str) -> list[Any]:
        return self.by_name.get(name, []) or VALID.get(name, [])


# The current operation's world; the hooks read it while cases are drawn.
WORLD = World()
_worlds = itertools.count()


def build_world(api: httpx.Client) -> World:
    ns = f"fz{next(_worlds)}-{uuid.uuid4().hex[:8]}"
    ok(api.post("/api/v1/namespaces", json={"namespace_id": ns, "description": "fuzz world"}))
    # `manual`: no worker runs it (and this `up` has none), so nothing moves
    # by itself.
    work = create_definition(api, ns, "work", kind="manual")
    # Yearly: a schedule to pause and resume that does not fire during a run.
    nightly = create_definition(api, ns, "nightly", kind="manual", cron_spec="@yearly")
    open_dag = create_dag(api, ns, work["def_id"], ["a", "b", "c"], [], start=False)
    live_dag = create_dag(api, ns, work["def_id"], ["x", "y"], [("x", "y")], start=True)
    ticked = ok(api.post(f"/api/v1/definitions/{ns}/{work['def_id']}/tick", json={}))
    open_jobs = [j["job_id"] for j in dag_jobs(api, ns, open_dag["dag_id"]).values()]
    live_jobs = [j["job_id"] for j in dag_jobs(api, ns, live_dag["dag_id"]).values()]
    return World(
        namespace_id=ns,
        by_name={
            "namespace_id": [ns],
            "dag_id": [open_dag["dag_id"], live_dag["dag_id"]],
            "def_id": [work["def_id"], nightly["def_id"]],
            "job_id": [*open_jobs, *live_jobs, ticked["job_id"]],
            "name": ["work", "nightly"],
            # New edges go into the open DAG.
            "parent_job_id": open_jobs,
            "child_job_id": open_jobs,
        },
    )


def _known_or(value: Any, known: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly a known value, sometimes the generated one."""
    if not known:
        return st.just(value)
    return st.sampled_from([*known, *known, *known, value])


def _known_in(value: Any) -> st.SearchStrategy[Any]:
    """`value` with known values swapped in, at any depth, where the body
    names them (a known name's generated object or list is left whole)."""
    if isinstance(value, dict):
        return st.fixed_dictionaries(
            {
                key: _known_or(item, WORLD.known(key))
                if WORLD.known(key) and not isinstance(item, dict | list)
                else _known_in(item)
                for key, item in value.items()
            }
        )
    if isinstance(value, list):
        return st.tuples(*(_known_in(item) for item in value)).map(list)
    return st.just(value)


def _known_params(params: dict[str, Any] | None) -> st.SearchStrategy[dict[str, Any] | None]:
    if not params:
        return st.just(params)
    return st.fixed_dictionaries(
        {name: _known_or(value, WORLD.known(name)) for name, value in params.items()}
    )


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    return _known_params(path_parameters)


@schema.hook
def flatmap_query(
    context: schemathesis.HookContext, query: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    return _known_params(query)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    return _known_in(body)


def settle_fixed_case(case: Case) -> None:
    """Known ids into the paths of the examples' and coverage phases' cases.

    Those cases are built when the test is collected, before any world
    exists, so the hooks met no ids; each path parameter but the one a
    coverage case is about gets the world's first id here."""
    if case.meta is None or case.meta.phase.name == TestPhase.FUZZING or not case.path_parameters:
        return
    data = case.meta.phase.data
    target = getattr(data, "parameter", None) if getattr(data, "parameter_location", None) == "path" else None
    for name in case.path_parameters:
        known = WORLD.known(name)
        if known and name != target:
            case.path_parameters[name] = known[0]


@pytest.fixture(scope="package")
def api(up: UpProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=up.base_url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="package")
def table_names(db: Connection) -> list[str]:
    return tables(db)


@pytest.fixture
def world(api: httpx.Client) -> Iterator[World]:
    """A fresh world for each operation (the fuzzer deletes and starts DAGs,
    retires definitions, fails jobs), published for the hooks."""
    built = build_world(api)
    WORLD.namespace_id, WORLD.by_name = built.namespace_id, built.by_name
    yield built
    WORLD.namespace_id, WORLD.by_name = "", {}


@schema.parametrize()
# One world per operation, not per case, is the point of `world`.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_the_rest_api_holds_to_its_document(
    case: Case,
    up: UpProcess,
    world: World,
    db: Connection,
    table_names: list[str],
) -> None:
    settle_fixed_case(case)
    before = snapshot(db, table_names)
    response = case.call(base_url=up.base_url, timeout=30)
    TALLY.operations.add(case.operation.label)
    TALLY.modes[case.meta.generation.mode.value if case.meta else "explicit"] += 1
    TALLY.phases[case.meta.phase.name.value if case.meta else "explicit"] += 1
    TALLY.statuses[response.status_code] += 1
    case.validate_response(response, checks=CHECKS)
    # The document gives each operation a 200 and a `default` that is "an
    # error": no other success, and no redirect.
    assert response.status_code == 200 or response.status_code >= 400, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
    if 400 <= response.status_code < 500:
        after = snapshot(db, table_names)
        TALLY.refusals_checked += 1
        assert after == before, (
            f"{case.method} {case.formatted_path} was refused with {response.status_code} "
            f"but changed the database: {changed(before, after)}\n"
            f"query: {case.query!r}\nbody: {case.body!r}\nanswer: {response.text[:500]}"
        )
