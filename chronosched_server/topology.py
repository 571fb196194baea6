"""DAG topology checks shared by CreateDag and AddDependencies: pure, linear.

Malformed edges (unknown keys, self-edges, duplicates) are INVALID_ARGUMENT
naming the field; an edge set that closes a cycle breaks the DAG rule and is
FAILED_PRECONDITION naming the cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

from chronosched_server.errors import FailedPrecondition, Why
from chronosched_server.graph import describe_cycle, find_cycle
from chronosched_server.validation import Violations


def resolve_key_edges(
    v: Violations, keys: Sequence[str], edges: Sequence[tuple[str, str]], field: str = "dependencies"
) -> list[tuple[int, int]]:
    """Map (parent_key, child_key) pairs to job indexes, collecting violations."""
    index = {key: i for i, key in enumerate(keys)}
    if len(index) == len(keys):
        # Fast path for well-formed input (the 100,000-job case): one
        # comprehension, then whole-set checks; any doubt falls through to
        # the slow path, which names every bad field.
        try:
            fast = [(index[p], index[c]) for p, c in edges]
        except KeyError:
            pass
        else:
            if len(set(fast)) == len(fast) and all(p != c for p, c in fast):
                return fast
    index = {}
    for i, key in enumerate(keys):
        if key in index:
            v.add(f"jobs[{i}].key", f"duplicate key {key!r} (also jobs[{index[key]}].key)", Why.DUPLICATE)
        else:
            index[key] = i
    resolved: list[tuple[int, int]] = []
    seen: dict[tuple[int, int], int] = {}
    for n, (parent, child) in enumerate(edges):
        p, c = index.get(parent), index.get(child)
        if p is None:
            v.add(f"{field}[{n}].parent", f"no job with key {parent!r} in this request", Why.NOT_FOUND)
        if c is None:
            v.add(f"{field}[{n}].child", f"no job with key {child!r} in this request", Why.NOT_FOUND)
        if p is None or c is None:
            continue
        if p == c:
            v.add(f"{field}[{n}]", f"self-edge on {parent!r}: a job cannot depend on itself", Why.SELF_EDGE)
            continue
        if (p, c) in seen:
            v.add(f"{field}[{n}]", f"duplicate of {field}[{seen[(p, c)]}]", Why.DUPLICATE)
            continue
        seen[(p, c)] = n
        resolved.append((p, c))
    return resolved


def check_acyclic(node_count: int, edges: Sequence[tuple[int, int]], names: Sequence[str]) -> None:
    cycle = find_cycle(node_count, edges)
    if cycle is not None:
        path = describe_cycle(cycle, names)
        raise FailedPrecondition(
            f"dependencies would create a cycle: {path}",
            reason="CYCLE_DETECTED",
            metadata={"cycle": path[:1000]},
        )


def indegrees(node_count: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    counts = [0] * node_count
    for _, child in edges:
        counts[child] += 1
    return counts
