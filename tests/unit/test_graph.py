"""Unit tests for chronosched_server.graph: cycle detection and cycle rendering."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence

import pytest

from chronosched_server.graph import describe_cycle, find_cycle

Edge = tuple[int, int]


def assert_valid_cycle(cycle: list[int] | None, edges: Sequence[Edge]) -> list[int]:
    """A returned cycle closes on itself, is simple, and walks only real edges."""
    assert cycle is not None, "expected a cycle, got None"
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    body = cycle[:-1]
    assert len(set(body)) == len(body), f"cycle repeats a node: {cycle}"
    edge_set = set(edges)
    for parent, child in itertools.pairwise(cycle):
        assert (parent, child) in edge_set, f"{parent} -> {child} is not an edge of the input"
    return body


def rotations(nodes: Sequence[int]) -> list[list[int]]:
    """Every way of writing the cycle `nodes` (closed, first == last)."""
    return [[*nodes[i:], *nodes[:i], nodes[i]] for i in range(len(nodes))]


@pytest.mark.parametrize(
    ("node_count", "edges"),
    [
        pytest.param(0, [], id="empty"),
        pytest.param(1, [], id="single-node"),
        pytest.param(5, [], id="nodes-without-edges"),
        pytest.param(4, [(0, 1), (1, 2), (2, 3)], id="chain"),
        pytest.param(4, [(2, 3), (1, 2), (0, 1)], id="chain-edges-reversed"),
        pytest.param(4, [(0, 1), (0, 2), (1, 3), (2, 3)], id="diamond"),
        pytest.param(4, [(0, 1), (0, 2), (1, 3), (2, 3), (0, 3)], id="diamond-with-shortcut"),
        pytest.param(7, [(0, 1), (0, 2), (3, 4), (5, 6), (4, 6)], id="forest"),
        pytest.param(3, [(0, 1), (0, 1), (1, 2)], id="duplicate-edge"),
    ],
)
def test_acyclic_graphs_return_none(node_count: int, edges: list[Edge]) -> None:
    assert find_cycle(node_count, edges) is None


def test_self_loop_is_a_cycle_of_one_node() -> None:
    assert find_cycle(2, [(0, 1), (1, 1)]) == [1, 1]


def test_two_node_cycle() -> None:
    edges = [(0, 1), (1, 0)]
    cycle = find_cycle(2, edges)
    assert_valid_cycle(cycle, edges)
    assert cycle in rotations([0, 1])


def test_three_node_cycle() -> None:
    edges = [(0, 1), (1, 2), (2, 0)]
    cycle = find_cycle(3, edges)
    assert_valid_cycle(cycle, edges)
    assert cycle in rotations([0, 1, 2])


def test_long_cycle_is_returned_whole() -> None:
    n = 1000
    order = list(range(n))
    random.Random(7).shuffle(order)
    edges = [(order[i], order[(i + 1) % n]) for i in range(n)]
    cycle = find_cycle(n, edges)
    body = assert_valid_cycle(cycle, edges)
    assert len(body) == n
    assert cycle in rotations(order)


def test_cycle_reachable_only_through_acyclic_prefix() -> None:
    # 0 -> 1 -> 2 -> 3 -> 4 -> 2: nodes 0 and 1 are peeled off, the cycle stays.
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 2)]
    cycle = find_cycle(5, edges)
    assert_valid_cycle(cycle, edges)
    assert cycle in rotations([2, 3, 4])


def test_cycle_with_acyclic_tail_downstream() -> None:
    # Nodes below a cycle also survive Kahn's pass but are not part of the cycle.
    edges = [(3, 4), (1, 3), (0, 1), (1, 0), (4, 5)]
    cycle = find_cycle(6, edges)
    assert_valid_cycle(cycle, edges)
    assert cycle in rotations([0, 1])


def test_several_cycles_return_one_valid_cycle() -> None:
    # {0,1,2}, {2,5,6} share node 2; {3,4} is separate; 7 -> 8 is acyclic.
    edges = [(0, 1), (1, 2), (2, 0), (3, 4), (4, 3), (2, 5), (5, 6), (6, 2), (7, 8)]
    cycle = find_cycle(9, edges)
    body = assert_valid_cycle(cycle, edges)
    assert set(body) in ({0, 1, 2}, {3, 4}, {2, 5, 6})


def test_figure_eight_returns_one_loop() -> None:
    edges = [(0, 1), (1, 0), (1, 2), (2, 1)]
    cycle = find_cycle(3, edges)
    body = assert_valid_cycle(cycle, edges)
    assert set(body) in ({0, 1}, {1, 2})


def _random_dag(n: int, m: int, seed: int) -> tuple[list[int], list[Edge]]:
    """A DAG over a shuffled topological order with a path through every node."""
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    edges = [(order[i], order[i + 1]) for i in range(n - 1)]
    while len(edges) < m:
        a = rng.randrange(n - 1)
        b = rng.randrange(a + 1, n)
        edges.append((order[a], order[b]))
    return order, edges


@pytest.mark.timeout(30)
def test_large_dag_is_acyclic_and_one_back_edge_closes_a_cycle() -> None:
    n, m = 100_000, 200_000
    order, edges = _random_dag(n, m, seed=20240601)
    assert len(edges) == m

    started = time.perf_counter()
    acyclic = find_cycle(n, edges)
    back_edge = (order[-1], order[n // 2])
    cyclic_edges = [*edges, back_edge]
    cycle = find_cycle(n, cyclic_edges)
    elapsed = time.perf_counter() - started

    assert acyclic is None
    body = assert_valid_cycle(cycle, cyclic_edges)
    assert cycle is not None
    # The rest is a DAG, so every cycle must run through the added edge.
    closing = set(itertools.pairwise(cycle))
    assert back_edge in closing
    assert len(body) >= 2
    assert elapsed < 2.0, f"find_cycle took {elapsed:.2f}s on {n} nodes / {m} edges"


def test_describe_short_cycle() -> None:
    assert describe_cycle([0, 1, 2, 0], ["extract", "transform", "load"]) == (
        "extract -> transform -> load -> extract"
    )


def test_describe_cycle_at_limit_is_not_shortened() -> None:
    names = [f"j{i}" for i in range(19)]
    cycle = [*range(19), 0]  # 20 labels
    assert describe_cycle(cycle, names) == " -> ".join([*names, "j0"])


def test_describe_long_cycle_is_shortened_in_the_middle() -> None:
    names = [f"j{i}" for i in range(30)]
    cycle = [*range(30), 0]  # 31 labels
    head = " -> ".join(f"j{i}" for i in range(10))
    tail = " -> ".join([*(f"j{i}" for i in range(21, 30)), "j0"])
    assert describe_cycle(cycle, names) == f"{head} -> ... (11 more) ... -> {tail}"


def test_describe_cycle_with_custom_limit() -> None:
    names = ["a", "b", "c", "d", "e", "f"]
    cycle = [0, 1, 2, 3, 4, 5, 0]
    assert describe_cycle(cycle, names, limit=4) == "a -> b -> ... (3 more) ... -> f -> a"
