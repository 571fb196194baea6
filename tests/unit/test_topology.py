"""Unit tests for chronosched_server.topology: key-edge resolution and the DAG rule."""

from __future__ import annotations

import pytest

from chronosched_server.errors import FailedPrecondition, FieldViolation, InvalidArgument, Why
from chronosched_server.topology import check_acyclic, indegrees, resolve_key_edges
from chronosched_server.validation import Violations


def test_resolves_keys_to_indexes_in_edge_order() -> None:
    v = Violations()
    edges = resolve_key_edges(v, ["a", "b", "c"], [("a", "b"), ("b", "c"), ("a", "c")])
    assert edges == [(0, 1), (1, 2), (0, 2)]
    assert v.items == []


def test_no_edges_resolve_to_nothing() -> None:
    v = Violations()
    assert resolve_key_edges(v, ["a"], []) == []
    assert v.items == []


def test_duplicate_keys_name_both_positions() -> None:
    v = Violations()
    resolve_key_edges(v, ["a", "b", "a", "a"], [])
    assert v.items == [
        FieldViolation("jobs[2].key", "duplicate key 'a' (also jobs[0].key)", Why.DUPLICATE),
        FieldViolation("jobs[3].key", "duplicate key 'a' (also jobs[0].key)", Why.DUPLICATE),
    ]


def test_duplicate_key_edges_resolve_to_first_occurrence() -> None:
    v = Violations()
    edges = resolve_key_edges(v, ["a", "b", "a"], [("a", "b")])
    assert edges == [(0, 1)]
    assert v.items == [FieldViolation("jobs[2].key", "duplicate key 'a' (also jobs[0].key)", Why.DUPLICATE)]


def test_unknown_parent_and_child_keys() -> None:
    v = Violations()
    edges = resolve_key_edges(
        v,
        ["a", "b"],
        [("a", "b"), ("x", "b"), ("a", "y"), ("p", "q")],
    )
    assert edges == [(0, 1)]
    assert v.items == [
        FieldViolation("dependencies[1].parent", "no job with key 'x' in this request", Why.NOT_FOUND),
        FieldViolation("dependencies[2].child", "no job with key 'y' in this request", Why.NOT_FOUND),
        FieldViolation("dependencies[3].parent", "no job with key 'p' in this request", Why.NOT_FOUND),
        FieldViolation("dependencies[3].child", "no job with key 'q' in this request", Why.NOT_FOUND),
    ]


def test_self_edge() -> None:
    v = Violations()
    edges = resolve_key_edges(v, ["a", "b"], [("a", "b"), ("b", "b")])
    assert edges == [(0, 1)]
    assert v.items == [
        FieldViolation("dependencies[1]", "self-edge on 'b': a job cannot depend on itself", Why.SELF_EDGE),
    ]


def test_duplicate_edges_name_the_first() -> None:
    v = Violations()
    edges = resolve_key_edges(
        v,
        ["a", "b", "c"],
        [("a", "b"), ("b", "c"), ("a", "c"), ("a", "b"), ("a", "b")],
    )
    assert edges == [(0, 1), (1, 2), (0, 2)]
    assert v.items == [
        FieldViolation("dependencies[3]", "duplicate of dependencies[0]", Why.DUPLICATE),
        FieldViolation("dependencies[4]", "duplicate of dependencies[0]", Why.DUPLICATE),
    ]


def test_reverse_edge_is_not_a_duplicate() -> None:
    v = Violations()
    edges = resolve_key_edges(v, ["a", "b"], [("a", "b"), ("b", "a")])
    assert edges == [(0, 1), (1, 0)]
    assert v.items == []


def test_custom_field_name_is_used_in_paths() -> None:
    v = Violations()
    resolve_key_edges(v, ["a", "b"], [("a", "b"), ("a", "b"), ("a", "zz"), ("a", "a")], field="edges")
    assert v.items == [
        FieldViolation("edges[1]", "duplicate of edges[0]", Why.DUPLICATE),
        FieldViolation("edges[2].child", "no job with key 'zz' in this request", Why.NOT_FOUND),
        FieldViolation("edges[3]", "self-edge on 'a': a job cannot depend on itself", Why.SELF_EDGE),
    ]


def test_violations_are_collected_not_raised() -> None:
    v = Violations()
    resolve_key_edges(v, ["a", "a"], [("a", "missing")])
    assert [item.field for item in v.items] == ["jobs[1].key", "dependencies[0].child"]
    with pytest.raises(InvalidArgument) as caught:
        v.raise_if_any()
    assert caught.value.violations == v.items
    assert caught.value.message == (
        "invalid request: jobs[1].key: duplicate key 'a' (also jobs[0].key); "
        "dependencies[0].child: no job with key 'missing' in this request"
    )


def test_check_acyclic_accepts_a_dag() -> None:
    check_acyclic(4, [(0, 1), (0, 2), (1, 3), (2, 3)], ["a", "b", "c", "d"])
    check_acyclic(0, [], [])


def _cycle_texts(names: list[str]) -> set[str]:
    return {" -> ".join([*names[i:], *names[:i], names[i]]) for i in range(len(names))}


def test_check_acyclic_names_the_cycle() -> None:
    names = ["extract", "transform", "load", "report"]
    edges = [(0, 1), (1, 2), (2, 1), (2, 3)]
    with pytest.raises(FailedPrecondition) as caught:
        check_acyclic(4, edges, names)
    err = caught.value
    assert err.reason == "CYCLE_DETECTED"
    path = err.metadata["cycle"]
    assert path in _cycle_texts(["transform", "load"])
    assert err.message == f"dependencies would create a cycle: {path}"
    assert str(err) == err.message


def test_check_acyclic_long_cycle_message_is_shortened() -> None:
    n = 50
    names = [f"job-{i:02d}" for i in range(n)]
    edges = [(i, (i + 1) % n) for i in range(n)]
    with pytest.raises(FailedPrecondition) as caught:
        check_acyclic(n, edges, names)
    err = caught.value
    assert err.reason == "CYCLE_DETECTED"
    assert "... (31 more) ..." in err.message
    assert err.message.count(" -> ") == 20
    assert err.metadata["cycle"] == err.message.removeprefix("dependencies would create a cycle: ")


def test_check_acyclic_metadata_is_capped_at_1000_chars() -> None:
    names = ["n" * 200 + str(i) for i in range(30)]
    edges = [(i, (i + 1) % 30) for i in range(30)]
    with pytest.raises(FailedPrecondition) as caught:
        check_acyclic(30, edges, names)
    assert len(caught.value.message) > 1000
    assert len(caught.value.metadata["cycle"]) == 1000


def test_indegrees() -> None:
    assert indegrees(4, [(0, 1), (0, 2), (1, 3), (2, 3)]) == [0, 1, 1, 2]
    assert indegrees(3, []) == [0, 0, 0]
    assert indegrees(0, []) == []
