"""Property tests (hypothesis) for chronosched_server.graph.find_cycle, against
a reference written here: depth-first search with three colours."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronosched_server.graph import describe_cycle, find_cycle

pytestmark = pytest.mark.timeout(60)

FAST = settings(max_examples=100, deadline=None, database=None)

Edge = tuple[int, int]


def reference_has_cycle(node_count: int, edges: Sequence[Edge]) -> bool:
    """Iterative DFS: a cycle exists iff some edge reaches a node still on the stack."""
    children: list[list[int]] = [[] for _ in range(node_count)]
    for parent, child in edges:
        children[parent].append(child)
    white, grey, black = 0, 1, 2
    colour = [white] * node_count
    for root in range(node_count):
        if colour[root] != white:
            continue
        colour[root] = grey
        stack = [(root, iter(children[root]))]
        while stack:
            node, pending = stack[-1]
            child = next(pending, -1)
            if child == -1:
                colour[node] = black
                stack.pop()
            elif colour[child] == grey:
                return True
            elif colour[child] == white:
                colour[child] = grey
                stack.append((child, iter(children[child])))
    return False


def assert_real_cycle(cycle: list[int] | None, edges: Sequence[Edge]) -> None:
    """Closed, simple, and every step an edge of the input."""
    assert cycle is not None
    assert len(cycle) >= 2 and cycle[0] == cycle[-1]
    body = cycle[:-1]
    assert len(set(body)) == len(body), cycle
    edge_set = set(edges)
    assert all(step in edge_set for step in itertools.pairwise(cycle)), cycle


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 40) -> tuple[int, list[Edge]]:
    """Edges only from a lower to a higher index: acyclic by construction
    (duplicate edges included, as a request may hold them before topology
    refuses them)."""
    node_count = draw(st.integers(0, max_nodes))
    if node_count < 2:
        return node_count, []
    pairs = st.tuples(st.integers(0, node_count - 1), st.integers(0, node_count - 1))
    edges = draw(st.lists(pairs.filter(lambda e: e[0] != e[1]).map(lambda e: (min(e), max(e))), max_size=120))
    return node_count, edges


@FAST
@given(graph=dags())
def test_a_dag_has_no_cycle(graph: tuple[int, list[Edge]]) -> None:
    node_count, edges = graph
    assert find_cycle(node_count, edges) is None


@FAST
@given(graph=dags(), data=st.data())
def test_a_dag_under_any_numbering_has_no_cycle(graph: tuple[int, list[Edge]], data: st.DataObject) -> None:
    node_count, edges = graph
    order = data.draw(st.permutations(range(node_count)))
    assert find_cycle(node_count, [(order[p], order[c]) for p, c in edges]) is None


@FAST
@given(graph=dags(), data=st.data())
def test_a_planted_cycle_is_found_and_is_real(graph: tuple[int, list[Edge]], data: st.DataObject) -> None:
    node_count, edges = graph
    node_count = max(node_count, 1)
    # A cycle through 1..8 distinct nodes (one node: a self-loop).
    ring = data.draw(st.lists(st.integers(0, node_count - 1), min_size=1, max_size=8, unique=True))
    planted = [*edges, *itertools.pairwise([*ring, ring[0]])]
    order = data.draw(st.permutations(range(len(planted))))
    shuffled = [planted[i] for i in order]
    assert_real_cycle(find_cycle(node_count, shuffled), shuffled)


@FAST
@given(
    node_count=st.integers(1, 25),
    data=st.data(),
)
def test_find_cycle_agrees_with_the_reference_on_any_graph(node_count: int, data: st.DataObject) -> None:
    node = st.integers(0, node_count - 1)
    edges = data.draw(st.lists(st.tuples(node, node), max_size=60))
    cycle = find_cycle(node_count, edges)
    assert (cycle is not None) == reference_has_cycle(node_count, edges)
    if cycle is not None:
        assert_real_cycle(cycle, edges)


@settings(max_examples=100, deadline=None, database=None)
@given(length=st.integers(1, 80), limit=st.integers(4, 30))
def test_a_described_cycle_keeps_both_ends_and_counts_what_it_leaves_out(length: int, limit: int) -> None:
    cycle = [*range(length), 0]
    names = [f"j{i}" for i in range(length)]
    text = describe_cycle(cycle, names, limit)
    labels = text.split(" -> ")
    assert labels[0] == "j0" and labels[-1] == "j0"
    if len(cycle) <= limit:
        assert labels == [names[n] for n in cycle]
    else:
        assert f"({len(cycle) - limit} more)" in text
        assert len(labels) == limit + 1
