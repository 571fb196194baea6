"""`dag show`: the exact tree, Mermaid and Graphviz text of a small
fan-out/fan-in DAG, the summaries that keep big DAGs short (pure walks of
made-up graphs), and a DAG of 10,000 jobs drawn through the server."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime

import pytest

from chronosched import Client, Dag, DagState, JobSpec, JobState
from chronosched.cli._show import Graph, Kind, Limits, mermaid, plain, tree, walk
from tests.cli.conftest import NS, Cli

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def etl(client: Client) -> str:
    """extract -> clean-a, clean-b -> load, and a lone audit; extract and
    clean-a done."""
    dag = client.dag(NS, "etl")
    extract, a, b, load = (dag.job(k, "step") for k in ("extract", "clean-a", "clean-b", "load"))
    dag.job("audit", "step")
    extract >> [a, b] >> load
    run = dag.submit()
    jobs = run.jobs()
    client.complete_job(jobs["extract"].job_id)
    client.complete_job(jobs["clean-a"].job_id)
    return run.dag_id


def test_the_tree(cli: Cli, etl: str) -> None:
    result = cli("dag", "show", NS, etl)
    assert result.code == 0, result.err
    assert result.out == (
        f"etl ({etl}) [RUNNING] 2/5 finished\n"
        "├── audit [READY] (no worker for kind manual)\n"
        "└── extract [SUCCEEDED]\n"
        "    ├── clean-a [SUCCEEDED]\n"
        "    │   └── load [PENDING]\n"
        "    └── clean-b [READY] (no worker for kind manual)\n"
        "        └── load [PENDING] (see above)\n"
    )


def test_mermaid(cli: Cli, etl: str) -> None:
    result = cli("dag", "show", NS, etl, "--format", "mermaid")
    assert result.code == 0, result.err
    assert result.out == (
        "flowchart TD\n"
        '    j_audit["audit"]:::ready\n'
        '    j_extract["extract"]:::succeeded\n'
        '    j_clean_a["clean-a"]:::succeeded\n'
        "    j_extract --> j_clean_a\n"
        '    j_load["load"]:::pending\n'
        "    j_clean_a --> j_load\n"
        '    j_clean_b["clean-b"]:::ready\n'
        "    j_extract --> j_clean_b\n"
        "    j_clean_b --> j_load\n"
        "    classDef pending fill:#eeeeee,stroke:#9e9e9e\n"
        "    classDef ready fill:#fff3cd,stroke:#b08800\n"
        "    classDef succeeded fill:#d1e7dd,stroke:#198754\n"
    )


def test_dot(cli: Cli, etl: str) -> None:
    result = cli("dag", "show", NS, etl, "--format", "dot")
    assert result.code == 0, result.err
    ready, succeeded, pending = (
        'fillcolor="#fff3cd", color="#b08800"',
        'fillcolor="#d1e7dd", color="#198754"',
        'fillcolor="#eeeeee", color="#9e9e9e"',
    )
    assert result.out == (
        "digraph dag {\n"
        f'    label="etl ({etl}) [RUNNING] 2/5 finished";\n'
        "    labelloc=t;\n"
        "    rankdir=TB;\n"
        '    node [shape=box, style="rounded,filled", fontname="Helvetica"];\n'
        f'    j_audit [label="audit", {ready}];\n'
        f'    j_extract [label="extract", {succeeded}];\n'
        f'    j_clean_a [label="clean-a", {succeeded}];\n'
        "    j_extract -> j_clean_a;\n"
        f'    j_load [label="load", {pending}];\n'
        "    j_clean_a -> j_load;\n"
        f'    j_clean_b [label="clean-b", {ready}];\n'
        "    j_extract -> j_clean_b;\n"
        "    j_clean_b -> j_load;\n"
        "}\n"
    )


def test_json_is_the_graph_by_key(cli: Cli, etl: str) -> None:
    data = json.loads(cli("dag", "show", NS, etl, "-o", "json").out)
    assert data["dag"]["state"] == "STATE_RUNNING"
    assert {j["key"]: j["state"] for j in data["jobs"]} == {
        "audit": "STATE_READY",
        "clean-a": "STATE_SUCCEEDED",
        "clean-b": "STATE_READY",
        "extract": "STATE_SUCCEEDED",
        "load": "STATE_PENDING",
    }
    assert sorted((d["parent"], d["child"]) for d in data["dependencies"]) == [
        ("clean-a", "load"),
        ("clean-b", "load"),
        ("extract", "clean-a"),
        ("extract", "clean-b"),
    ]


# --- summaries, on made-up graphs --------------------------------------------------


def _graph(keys: list[str], edges: list[tuple[str, str]], state: JobState = JobState.PENDING) -> Graph:
    now = datetime.now(UTC)
    dag = Dag("d", NS, "big", DagState.RUNNING, len(keys), len(keys), now, now, None, None)
    ordered = sorted(keys)
    index = {k: i for i, k in enumerate(ordered)}
    children: list[list[int]] = [[] for _ in ordered]
    for parent, child in edges:
        children[index[parent]].append(index[child])
    has_parent = {child for _, child in edges}
    return Graph(
        dag=dag,
        keys=ordered,
        states=[state] * len(ordered),
        children=[sorted(kids) for kids in children],
        roots=[index[k] for k in ordered if k not in has_parent],
        ids=[f"j_{k}" for k in ordered],
    )


def test_wide_levels_are_summarised_with_their_states() -> None:
    kids = [f"k{i:02d}" for i in range(25)]
    graph = _graph(["root", *kids], [("root", k) for k in kids])
    lines = plain(tree(graph, Limits(max_children=3))).splitlines()
    assert lines[1:] == [
        "└── root [PENDING]",
        "    ├── k00 [PENDING]",
        "    ├── k01 [PENDING]",
        "    ├── k02 [PENDING]",
        "    └── … and 22 more (22 PENDING)",
        "(4 of 26 jobs drawn; --max-children, --max-depth and --max-lines draw more, -o json lists them all)",
    ]
    # Roots count as a level too; 0 turns the limit off.
    flat = _graph(kids, [])
    assert plain(tree(flat, Limits(max_children=2))).splitlines()[3] == "└── … and 23 more (23 PENDING)"
    assert len(plain(tree(flat, Limits(max_children=0))).splitlines()) == 26


def test_deep_chains_stop_at_max_depth_and_long_drawings_at_max_lines() -> None:
    keys = [f"c{i:05d}" for i in range(10_000)]
    chain = _graph(keys, list(itertools.pairwise(keys)))
    lines = plain(tree(chain, Limits(max_depth=3))).splitlines()
    assert lines[1:5] == [
        "└── c00000 [PENDING]",
        "    └── c00001 [PENDING]",
        "        └── c00002 [PENDING]",
        "            └── … 1 more below (--max-depth 3)",
    ]
    assert len(lines) == 6
    cut = [item.kind for item in walk(chain, Limits(max_depth=0, max_lines=50))]
    assert len(cut) == 51 and cut[-1] is Kind.CUT
    assert "%% cut at 50 lines (--max-lines)" in mermaid(chain, Limits(max_depth=0, max_lines=50))


def test_node_ids_are_sanitized_and_unique() -> None:
    from chronosched.cli._show import _unique_ids

    assert _unique_ids(["a-b", "a.b", "a:b", "a_b", "end", "9x"]) == [
        "j_a_b",
        "j_a_b_2",
        "j_a_b_3",
        "j_a_b_4",
        "j_end",
        "j_9x",
    ]


# --- 10,000 jobs through the server ------------------------------------------------


def test_a_dag_of_10000_jobs_draws_in_a_few_lines(
    cli: Cli, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    step = client.resolve_definition(NS, "step").def_id
    middle = [f"m{i:04d}" for i in range(9_998)]
    jobs = [JobSpec("root", step), *(JobSpec(k, step) for k in middle), JobSpec("sink", step)]
    edges = [("root", k) for k in middle] + [(k, "sink") for k in middle]
    dag = client.create_dag(NS, "big", jobs, edges, start=True)

    started = time.perf_counter()
    result = cli("dag", "show", NS, dag.dag_id)
    took_tree = time.perf_counter() - started
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:5] == [
        f"big ({dag.dag_id}) [RUNNING] 0/10,000 finished",
        "└── root [READY] (no worker for kind manual)",
        "    ├── m0000 [PENDING]",
        "    │   └── sink [PENDING]",
        "    ├── m0001 [PENDING]",
    ]
    assert lines[-3:] == [
        "    │   └── sink [PENDING] (see above)",
        "    └── … and 9,988 more (9,988 PENDING)",
        "(12 of 10,000 jobs drawn; --max-children, --max-depth and --max-lines draw more,"
        " -o json lists them all)",
    ]
    assert len(lines) == 24 and len(result.out) < 2_000

    started = time.perf_counter()
    diagram = cli("dag", "show", NS, dag.dag_id, "--format", "mermaid")
    took_mermaid = time.perf_counter() - started
    # Measured, not asserted (a shared machine); the server runs in this
    # process too, so its work competes for the same interpreter.
    with capsys.disabled():  # shown with -s
        print(
            f"\ndag show of 10,000 jobs / 19,996 edges, in-process:"
            f" tree {took_tree:.3f}s, mermaid {took_mermaid:.3f}s"
        )
    assert diagram.code == 0
    assert diagram.out.count("-->") == 20 and '["… and 9,988 more (9,988 PENDING)"]:::more' in diagram.out
