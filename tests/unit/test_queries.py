"""Unit tests for chronosched_server.storage.queries: named-block parsing and loading."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from chronosched_server.storage.queries import all_queries, parse, q

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def sql_files() -> dict[str, str]:
    folder = resources.files("chronosched_server.storage").joinpath("sql")
    return {entry.name: entry.read_text() for entry in folder.iterdir() if entry.name.endswith(".sql")}


def test_parse_splits_named_blocks() -> None:
    text = (
        "-- file preamble, not a query\n"
        "\n"
        "-- name: first\n"
        "select 1;\n"
        "\n"
        "-- name: second_one\n"
        "-- a comment inside the block stays\n"
        "select 2\n"
        "from t;\n"
    )
    assert parse(text, "x.sql") == {
        "first": "select 1",
        "second_one": "-- a comment inside the block stays\nselect 2\nfrom t",
    }


def test_parse_keeps_file_order() -> None:
    text = "-- name: b\nselect 2;\n-- name: a\nselect 1;\n-- name: c\nselect 3;\n"
    assert list(parse(text, "x.sql")) == ["b", "a", "c"]


def test_parse_header_allows_trailing_spaces() -> None:
    assert parse("-- name: q1   \nselect 1;\n", "x.sql") == {"q1": "select 1"}


def test_parse_without_headers_is_empty() -> None:
    assert parse("", "x.sql") == {}
    assert parse("select 1;\n", "x.sql") == {}


def test_parse_lines_that_are_not_headers_stay_in_the_body() -> None:
    # Only a whole `-- name: <lowercase_name>` line opens a block.
    text = "-- name: a\nselect 1 -- name: b\n;\n  -- name: c\n"
    assert parse(text, "x.sql") == {"a": "select 1 -- name: b\n;\n  -- name: c"}


def test_parse_rejects_duplicate_names() -> None:
    text = "-- name: get_x\nselect 1;\n-- name: other\nselect 2;\n-- name: get_x\nselect 3;\n"
    with pytest.raises(ValueError, match=r"^dup\.sql: query 'get_x' defined twice$"):
        parse(text, "dup.sql")


def test_all_queries_loads_every_sql_file() -> None:
    files = sql_files()
    assert {"admin.sql", "dags.sql", "definitions.sql", "dispatch.sql", "jobs.sql", "namespaces.sql"} <= set(
        files
    )
    loaded = all_queries()
    expected: dict[str, str] = {}
    for name in sorted(files):
        per_file = parse(files[name], name)
        assert per_file, f"{name} holds no named query"
        assert not set(per_file) & set(expected), f"{name} repeats a query name of another file"
        expected.update(per_file)
    assert loaded == expected


def test_every_header_line_is_recognised() -> None:
    # A malformed header (e.g. `-- name: GetJob`) would silently become part of
    # the previous query's body. Only `name` followed by a colon reads as a
    # header: a comment line may well begin with "namespace".
    headers = [
        line
        for text in sql_files().values()
        for line in text.splitlines()
        if re.match(r"--\s*name\s*:", line.lstrip().lower())
    ]
    assert len(headers) == len(all_queries())


def test_query_names_are_unique_and_well_formed() -> None:
    names = list(all_queries())
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", name) for name in names)
    assert {"insert_namespace", "get_dag", "lock_jobs", "succeed_jobs", "claim_jobs_in", "prune"} <= set(
        names
    )


def test_query_bodies_are_single_statements_without_trailing_semicolon() -> None:
    for name, sql in all_queries().items():
        assert sql, f"{name} is empty"
        assert sql == sql.strip(), name
        assert not sql.endswith(";"), name
        code = re.sub(r"--[^\n]*", "", sql)
        assert ";" not in code, f"{name} holds more than one statement"


def test_every_parameter_has_an_explicit_cast() -> None:
    for name, sql in all_queries().items():
        for match in PLACEHOLDER.finditer(sql):
            assert sql[match.end() : match.end() + 2] == "::", f"{name}: %({match[1]})s has no cast"
        assert "%s" not in sql, f"{name} uses a positional placeholder"


def test_q_returns_bytes_and_unknown_names_fail() -> None:
    assert q("get_namespace") == all_queries()["get_namespace"].encode()
    with pytest.raises(KeyError):
        q("no_such_query")
