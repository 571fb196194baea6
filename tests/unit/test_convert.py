"""Row -> protobuf conversions that are pure arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2

from chronosched_server.render import ts

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
