"""Definition and DAG files: every problem is reported at its line and under
its YAML name, unknown keys included; what the server refuses is mapped back
to the line it came from. The readers are tested alone (no server), then
through `chronosched` against the server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from chronosched import Client, MisfirePolicy
from chronosched.cli._specs import SpecError, load_dag, load_definitions
from chronosched.cli._values import format_duration, parse_duration
from chronosched_server import config
from tests.cli.conftest import NS, Cli, chronosched
from tests.client.conftest import Running

pytestmark = pytest.mark.timeout(60)


def problems_of(load: object, text: str, file: str = "f.yaml") -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(text, file)  # type: ignore[operator]
    return [str(p) for p in caught.value.problems]


# --- durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("250ms", 0.25), ("7d", 604800), ("0", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    value = parse_duration(text)
    assert value == timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["90", "5 m", "m", "1x", "-5s", "", "1h 30m", "99999999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration|too long"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["7d", "12h", "30m", "3600s", "0", "1s"])
def test_the_cli_reads_every_duration_the_server_flags_read_alike(text: str) -> None:
    # `prune --older-than` and the server's `--retention` take the same forms.
    assert parse_duration(text) == config.parse_duration(text)


# --- definition files -------------------------------------------------------------


def test_a_definition_file_reads_into_create_definition_arguments() -> None:
    [spec] = load_definitions(
        "name: n\nkind: manual\nmisfire_policy: FIRE_ONCE\nstarting_deadline: 2m\nmax_attempts: 2\n", "d.yaml"
    )
    assert (spec.name, spec.kind) == ("n", "manual")
    assert spec.options == {
        "misfire_policy": MisfirePolicy.FIRE_ONCE,
        "starting_deadline": timedelta(minutes=2),
        "max_attempts": 2,
    }


def test_definition_file_problems_name_their_lines() -> None:
    text = """\
name: report
kind: manual
max_atempts: 3
execution_timeout: 90
backoff_max: 5 minutes
overlap_policy: sometimes
max_attempts: many
payload_template:
  when: 2024-01-01
"""
    assert problems_of(load_definitions, text) == [
        "f.yaml:3: max_atempts: unknown key 'max_atempts' (expected one of: name, kind, payload_template, "
        "cron_spec, time_zone, misfire_policy, overlap_policy, starting_deadline, max_attempts, "
        "backoff_initial, backoff_max, backoff_multiplier, execution_timeout, default_priority, "
        "delay_after_parents)",
        "f.yaml:4: execution_timeout: expected a duration with a unit (90s, 5m, 1h30m), got '90'",
        "f.yaml:5: backoff_max: not a duration: '5 minutes' "
        "(use a number with a unit: 90s, 5m, 1h30m, 250ms, 7d)",
        "f.yaml:6: overlap_policy: unknown overlap policy 'sometimes' (one of: allow, forbid)",
        "f.yaml:7: max_attempts: expected a whole number, got 'many'",
        "f.yaml:9: payload_template.when: not a JSON value: datetime.date(2024, 1, 1) "
        "(quote it to make it text)",
    ]


def test_several_definitions_one_per_document_and_their_problems() -> None:
    specs = load_definitions("name: a\nkind: manual\n---\nname: b\nkind: manual\n", "d.yaml")
    assert [s.name for s in specs] == ["a", "b"]
    assert problems_of(load_definitions, "name: a\nkind: manual\n---\nname: b\n") == [
        "f.yaml:4: [1].kind: required"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: a\n  kind: x\n", "f.yaml:2: not valid YAML: mapping values are not allowed here"),
        ("name: a\nname: b\nkind: manual\n", "f.yaml:2: name: given twice (first on line 1)"),
        ("- name: a\n", "f.yaml:1: expected a mapping, got a list"),
        ("", "f.yaml: no definition in the file"),
    ],
)
def test_malformed_definition_files(text: str, problem: str) -> None:
    assert problems_of(load_definitions, text) == [problem]


# --- DAG files --------------------------------------------------------------------

DAG = """\
name: etl
start: false
jobs:
  - key: extract
    definition: step
    payload: {table: orders}
  - key: a
    definition: step@2
    depends_on: [extract]
  - key: b
    definition: 01a22acc-3f17-7000-85e6-293c51ba101d
    priority: -5
dependencies:
  - {parent: extract, child: b}
  - parent: a
    child: b
"""


def test_a_dag_file_reads_into_a_create_dag_request() -> None:
    spec = load_dag(DAG, "dag.yaml")
    assert (spec.name, spec.start) == ("etl", False)
    assert [(j.key, j.definition, j.payload, j.priority) for j in spec.jobs] == [
        ("extract", "step", {"table": "orders"}, None),
        ("a", "step@2", None, None),
        ("b", "01a22acc-3f17-7000-85e6-293c51ba101d", None, -5),
    ]
    # depends_on edges first, then the dependencies list.
    assert spec.dependencies == [("extract", "a"), ("extract", "b"), ("a", "b")]
    # Request fields map back to YAML lines and names.
    origins = spec.origins
    assert origins.locate("jobs[1].def_id") == (8, "jobs[1].definition")
    assert origins.locate("jobs[0].payload.table") == (6, "jobs[0].payload.table")
    assert origins.locate("jobs[0].payload.table.deeper[2]") == (6, "jobs[0].payload.table.deeper[2]")
    assert origins.locate("dependencies[0].parent") == (9, "jobs[1].depends_on[0]")
    assert origins.locate("dependencies[1]") == (14, "dependencies[0]")
    assert origins.locate("dependencies[2].child") == (16, "dependencies[1].child")
    assert origins.locate("name") == (1, "name")
    assert origins.locate("start_time") == (None, "start_time")


def test_dag_file_problems_name_their_lines() -> None:
    text = """\
name: etl
jobs:
  - key: extract
    definiton: step
  - key: load
    definition: step@x
    depends_on: extract
    priority: high
  - definition: step
    payload: [1, 2]
dependencies:
  - {parent: extract}
  - {parent: extract, child: load, why: because}
start: maybe
"""
    assert problems_of(load_dag, text, "dag.yaml") == [
        "dag.yaml:3: jobs[0].definition: required",
        "dag.yaml:4: jobs[0].definiton: unknown key 'definiton' (expected one of: key, definition, payload, "
        "priority, depends_on)",
        "dag.yaml:6: jobs[1].definition: 'step@x': expected name@version with a version of 1 or more "
        "(or a bare name, or a def_id)",
        "dag.yaml:7: jobs[1].depends_on: expected a list, got 'extract'",
        "dag.yaml:8: jobs[1].priority: expected a whole number, got 'high'",
        "dag.yaml:9: jobs[2].key: required",
        "dag.yaml:10: jobs[2].payload: expected a mapping, got a list",
        "dag.yaml:12: dependencies[0].child: required",
        "dag.yaml:13: dependencies[1].why: unknown key 'why' (expected one of: parent, child)",
        "dag.yaml:14: start: expected true or false, got 'maybe'",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\n", "f.yaml:1: jobs: required (a list of jobs)"),
        ("jobs: []\n---\njobs: []\n", "f.yaml: expected one DAG, found 2 documents"),
        (
            "jobs:\n  - key: a\n    key: b\n    definition: s\n",
            "f.yaml:3: jobs[0].key: given twice (first on line 2)",
        ),
        (
            "jobs: [\n",
            "f.yaml:2: not valid YAML: while parsing a flow node "
            "expected the node content, but found '<stream end>'",
        ),
    ],
)
def test_malformed_dag_files(text: str, problem: str) -> None:
    assert problems_of(load_dag, text) == [problem]


def test_anchors_and_merge_keys_work_and_still_check_keys() -> None:
    text = """\
jobs:
  - &base {key: a, definition: step, payload: {x: 1}}
  - <<: *base
    key: b
"""
    spec = load_dag(text, "f.yaml")
    assert [(j.key, j.payload) for j in spec.jobs] == [("a", {"x": 1}), ("b", {"x": 1})]
    merged_unknown = "base: &base {key: a, definition: step, colour: red}\njobs:\n  - <<: *base\n"
    assert problems_of(load_dag, merged_unknown) == [
        "f.yaml:1: base: unknown key 'base' (expected one of: name, start, jobs, dependencies)",
        "f.yaml:1: jobs[0].colour: unknown key 'colour' "
        "(expected one of: key, definition, payload, priority, depends_on)",
    ]


# --- through the command, against the server ----------------------------------------


def test_yaml_errors_exit_2_with_lines(server: Running, tmp_path: Path) -> None:
    path = tmp_path / "dag.yaml"
    path.write_text("name: etl\njobs:\n  - key: a\n    definition: step\n    colour: blue\n")
    result = chronosched(server.target, "dag", "submit", NS, "-f", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"{path}:5: jobs[0].colour: unknown key 'colour' "
        "(expected one of: key, definition, payload, priority, depends_on)\n"
    )
    assert result.stdout == ""


def test_unknown_definitions_exit_1_at_their_lines(cli: Cli, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "dag.yaml"
    path.write_text(
        """\
name: etl
jobs:
  - {key: a, definition: step}
  - key: b
    definition: sya
  - key: c
    definition: step@4
  - key: d
    definition: 00000000-0000-7000-8000-000000000000
  - {key: e, definition: sya}
"""
    )
    result = cli("dag", "submit", NS, "-f", str(path))
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{path}:5: jobs[1].definition: unknown definition 'sya' in namespace team-a",
        f"{path}:7: jobs[2].definition: definition 'step' has no version 4 in namespace team-a (versions: 1)",
        f"{path}:9: jobs[3].definition: no definition 00000000-0000-7000-8000-000000000000"
        " in namespace team-a",
        f"{path}:10: jobs[4].definition: unknown definition 'sya' in namespace team-a",
    ]
    assert list(client.list_dags(NS)) == []


def test_a_retired_definition_is_reported_at_its_line(cli: Cli, client: Client, tmp_path: Path) -> None:
    old = client.create_definition(NS, "old", "manual")
    client.retire_definition(NS, old.def_id)
    path = tmp_path / "dag.yaml"
    path.write_text("jobs:\n  - key: a\n    definition: old\n")
    result = cli("dag", "submit", NS, "-f", str(path))
    assert result.code == 1
    assert result.err.startswith(f"{path}:3: jobs[0].definition: definition old@1 is retired (since ")


def test_server_violations_map_back_to_yaml_lines(cli: Cli, client: Client, tmp_path: Path) -> None:
    client.create_definition(NS, "cmd", "command")
    path = tmp_path / "dag.yaml"
    path.write_text(
        """\
name: etl
jobs:
  - key: extract
    definition: step
  - key: "bad key!"
    definition: step
    priority: 5000
  - key: load
    definition: step
    depends_on: [extract, nowhere]
"""
    )
    result = cli("dag", "submit", NS, "-f", str(path))
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{path}: INVALID_ARGUMENT: invalid request (3 fields)",
        f"{path}:5: jobs[1].key: 'bad key!' must match [A-Za-z0-9][A-Za-z0-9._:-]{{0,127}} (INVALID_FORMAT)",
        f"{path}:7: jobs[1].priority: must be between -1000 and 1000, got 5000 (OUT_OF_RANGE)",
        f"{path}:10: jobs[2].depends_on[1]: no job with key 'nowhere' in this request (NOT_FOUND)",
    ]
    # A payload the kind refuses: the violation points into the payload.
    path.write_text("jobs:\n  - key: a\n    definition: cmd\n    payload:\n      argv: 3\n")
    result = cli("dag", "submit", NS, "-f", str(path))
    assert result.code == 1
    assert result.err.splitlines()[1] == (
        f"{path}:5: jobs[0].payload.argv: must be a non-empty list of strings (INVALID_FORMAT)"
    )
    # A cycle has no field: the message names it.
    path.write_text(
        "jobs:\n"
        "  - {key: a, definition: step, depends_on: [b]}\n"
        "  - {key: b, definition: step, depends_on: [a]}\n"
    )
    result = cli("dag", "submit", NS, "-f", str(path))
    assert result.code == 1
    assert result.err in (
        f"{path}: FAILED_PRECONDITION [CYCLE_DETECTED]: dependencies would create a cycle: {cycle}\n"
        for cycle in ("a -> b -> a", "b -> a -> b")
    )


def test_definition_violations_map_back_to_yaml_lines(cli: Cli, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text(
        "name: ok\nkind: manual\n---\nname: nightly\nkind: manual\nmax_attempts: 0\ntime_zone: Mars/Base\n"
    )
    result = cli("def", "create", NS, "-f", str(path))
    assert result.code == 1
    # ok@1 was made, and warned about (no worker serves kind manual), first.
    warning, *lines = result.err.splitlines()
    assert warning.startswith("chronosched: warning: ok@1: no worker has served kind manual ")
    assert lines[0] == f"{path}: INVALID_ARGUMENT: invalid request (2 fields)"
    assert lines[1].startswith(f"{path}:7: [1].time_zone: ")
    assert lines[2].startswith(f"{path}:6: [1].max_attempts: ")
    assert lines[3] == "(created before the error: ok@1)"
    assert [d.name for d in client.list_definitions(NS)] == ["step", "ok"]


def test_files_from_stdin_and_unreadable_files(server: Running, client: Client) -> None:
    result = chronosched(
        server.target, "def", "create", NS, "-f", "-", "-o", "json", stdin="name: s2\nkind: manual\n"
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "s2"' in result.stdout
    missing = chronosched(server.target, "dag", "submit", NS, "-f", "/nonexistent/dag.yaml")
    assert missing.returncode == 2
    assert (
        missing.stderr == "chronosched: error: cannot read /nonexistent/dag.yaml: No such file or directory\n"
    )
