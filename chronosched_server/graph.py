"""Cycle check for DAG topologies: pure, linear in jobs + edges.

Kahn's algorithm decides acyclicity; if nodes remain, every one of them has a
parent that also remains, so walking parents from any remaining node must
revisit a node, and the walk between the two visits is a cycle. That keeps the
error message concrete ("a -> b -> c -> a") without a second full search.
"""

from __future__ import annotations

from collections.abc import Sequence


def find_cycle(node_count: int, edges: Sequence[tuple[int, int]]) -> list[int] | None:
    """Return one cycle as node indexes (first == last), or None if acyclic.

    Nodes are 0..node_count-1; edges are (parent, child) index pairs.
    """
    if not edges:
        return None
    indegree = [0] * node_count
    children: list[list[int]] = [[] for _ in range(node_count)]
    for parent, child in edges:
        children[parent].append(child)
        indegree[child] += 1
    stack = [n for n in range(node_count) if indegree[n] == 0]
    removed = 0
    while stack:
        node = stack.pop()
        removed += 1
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                stack.append(child)
    if removed == node_count:
        return None
    # Any remaining node's remaining parent; one per node is enough to walk.
    some_parent: dict[int, int] = {}
    for parent, child in edges:
        if indegree[child] > 0 and indegree[parent] > 0:
            some_parent[child] = parent
    start = next(iter(some_parent))
    seen: dict[int, int] = {}
    walk: list[int] = []
    node = start
    while node not in seen:
        seen[node] = len(walk)
        walk.append(node)
        node = some_parent[node]
    # walk follows parents, so reverse it to read in parent -> child order.
    cycle = walk[seen[node] :]
    cycle.reverse()
    return [*cycle, cycle[0]]


def describe_cycle(cycle: Sequence[int], names: Sequence[str], limit: int = 20) -> str:
    """Render a cycle as `a -> b -> a`, shortened in the middle when long."""
    labels = [names[n] for n in cycle]
    if len(labels) > limit:
        labels = [*labels[: limit // 2], f"... ({len(labels) - limit} more) ...", *labels[-limit // 2 :]]
    return " -> ".join(labels)
