"""Record -> protobuf conversions: pure arithmetic and field copies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from chronosched.v1 import job_pb2, worker_pb2
from chronosched_server import render
from chronosched_server.render import ts
from chronosched_server.storage.records import Job, from_row, from_rows, from_tuples

MOMENTS = [
    datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1901, 5, 6, 7, 8, 9, 1, tzinfo=UTC),
    datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC),
    datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_ts_matches_protobufs_own_conversion(moment: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(moment)
    assert ts(moment) == expected
    got = ts(moment)
    assert got is not None and 0 <= got.nanos < 1_000_000_000
    assert got.ToDatetime(tzinfo=UTC) == moment


def test_ts_of_none_is_none() -> None:
    assert ts(None) is None


def _record(**overrides: Any) -> Job:
    moment = datetime(2026, 11, 30, 18, 0, 0, 250000, tzinfo=UTC)
    fields: dict[str, Any] = {
        "job_id": uuid.UUID("0192f0a0-0000-7000-8000-000000000001"),
        "namespace_id": "ns",
        "dag_id": uuid.UUID("0192f0a0-0000-7000-8000-000000000002"),
        "def_id": uuid.UUID("0192f0a0-0000-7000-8000-000000000003"),
        "def_version": 4,
        "kind": "http",
        "key": "fetch",
        "state": "FAILED",
        "attempt": 2,
        "max_attempts": 3,
        "priority": -7,
        "payload": {"url": "https://example.test", "tries": [1, 2.5, None, True], "nested": {"a": "b"}},
        "result": {"status": 500},
        "error": "boom",
        "due_time": moment,
        "create_time": moment - timedelta(minutes=5),
        "start_time": moment + timedelta(seconds=1),
        "end_time": moment + timedelta(seconds=2),
        "update_time": moment + timedelta(seconds=2),
        "lease_expire_time": moment + timedelta(seconds=31),
        "worker_id": "w-1",
    }
    fields.update(overrides)
    return Job(**fields)


def _expected(row: Job) -> job_pb2.Job:
    """The same job built field by field with protobuf's own conversions."""
    out = job_pb2.Job(
        job_id=str(row.job_id),
        namespace_id=row.namespace_id,
        dag_id=str(row.dag_id) if row.dag_id else "",
        def_id=str(row.def_id),
        def_version=row.def_version,
        kind=row.kind,
        key=row.key,
        state=job_pb2.Job.State.Value("STATE_" + row.state),
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        priority=row.priority,
        error=row.error,
        worker_id=row.worker_id,
    )
    for name in ("payload", "result"):
        if (value := getattr(row, name)) is not None:
            getattr(out, name).update(value)
            getattr(out, name).SetInParent()
    for name in ("due_time", "create_time", "start_time", "end_time", "update_time", "lease_expire_time"):
        if (value := getattr(row, name)) is not None:
            getattr(out, name).FromDatetime(value)
    return out


@pytest.mark.parametrize(
    "row",
    [
        _record(),
        _record(dag_id=None, result=None, error="", end_time=None, lease_expire_time=None, state="PENDING"),
        _record(payload={}, due_time=None, start_time=None, worker_id="", state="READY"),
        *(_record(state=state) for state in ("RUNNING", "SUCCEEDED", "CANCELLED")),
    ],
)
def test_job_rendered_in_place_matches_one_built_field_by_field(row: Job) -> None:
    assert render.job(row) == _expected(row)
    frame = worker_pb2.DequeueResponse()
    render.fill_job(frame.assignments.add().job, row)
    assert frame.assignments[0].job == _expected(row)
    # An empty payload is still present (a worker reads `{}`, not "unset").
    assert render.job(row).HasField("payload")


def test_every_job_field_is_rendered() -> None:
    # A field added to the Job message but not to render.fill_job fails here.
    # Typed as any message: HasField is asked of every field by its name.
    rendered: Message = render.job(_record())
    missing = [
        f.name
        for f in job_pb2.Job.DESCRIPTOR.fields
        if f.name != "waiting"
        and not (
            rendered.HasField(f.name)
            if f.message_type is not None
            else getattr(rendered, f.name) != f.default_value
        )
    ]
    assert missing == []


def _row(record: Job, **extra: Any) -> dict[str, Any]:
    return {**{name: getattr(record, name) for name in Job.__dataclass_fields__}, **extra}


def test_records_from_rows_equal_one_row_at_a_time() -> None:
    rows = [_row(_record(key=f"k{i}", execution_timeout=timedelta(seconds=i))) for i in range(3)]
    # Every field there (built positionally), and a column no field takes.
    assert (
        from_rows(Job, rows)
        == [from_row(Job, row) for row in rows]
        == [_record(key=f"k{i}", execution_timeout=timedelta(seconds=i)) for i in range(3)]
    )
    assert from_rows(Job, [{**row, "dag_state": "RUNNING"} for row in rows]) == from_rows(Job, rows)
    # Optional fields left out (built by name): their defaults.
    short = [
        {k: v for k, v in row.items() if k not in ("execution_timeout", "parents_done_time")} for row in rows
    ]
    assert [r.execution_timeout for r in from_rows(Job, short)] == [None] * 3
    assert from_rows(Job, short) == [from_row(Job, row) for row in short]
    assert from_rows(Job, []) == []


def _tuples(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The rows as a tuple row factory gives them, with the columns in
    another order than the record's fields."""
    columns = sorted(rows[0])
    return columns, [tuple(row[c] for c in columns) for row in rows]


def test_records_from_tuples_equal_those_from_rows() -> None:
    rows = [_row(_record(key=f"k{i}", execution_timeout=timedelta(seconds=i))) for i in range(3)]
    optional = ("execution_timeout", "parents_done_time")
    for variant in (
        rows,
        [{**row, "dag_state": "RUNNING"} for row in rows],
        [{k: v for k, v in row.items() if k not in optional} for row in rows],
    ):
        assert from_tuples(Job, *_tuples(variant)) == from_rows(Job, variant)
    assert [r.key for r in from_tuples(Job, *_tuples(rows))] == ["k0", "k1", "k2"]
    assert from_tuples(Job, ["job_id"], []) == []


def test_records_from_rows_name_a_missing_column() -> None:
    rows = [{k: v for k, v in _row(_record()).items() if k != "attempt"}]
    with pytest.raises(KeyError, match="attempt"):
        from_rows(Job, rows)
    with pytest.raises(KeyError, match="attempt"):
        from_tuples(Job, *_tuples(rows))
