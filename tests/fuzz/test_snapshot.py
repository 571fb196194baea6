"""The fuzzer's state check can fail: a write shows in the snapshot, a
refused request leaves it as it was, and a change that keeps the row count
still shows."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fuzz.database import Connection, changed, snapshot, tables
from tests.support.rest import ok
from tests.support.up import UpProcess

pytestmark = pytest.mark.timeout(120)


def test_the_snapshot_sees_writes_and_not_refusals(up: UpProcess, db: Connection) -> None:
    names = tables(db)
    ns = f"snap-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=up.base_url, timeout=30.0) as api:
        first = snapshot(db, names)
        refused = api.post("/api/v1/namespaces", json={"namespace_id": "Not A Slug"})
        assert refused.status_code == 400
        assert snapshot(db, names) == first

        ok(api.post("/api/v1/namespaces", json={"namespace_id": ns}))
        second = snapshot(db, names)
        assert changed(first, second) == {
            "namespaces": f"{first['namespaces'][0]} -> {first['namespaces'][0] + 1} rows"
        }

        # Same row count, other contents.
        db.execute("update namespaces set description = 'touched' where namespace_id = %s", (ns,))
        assert changed(second, snapshot(db, names)) == {
            "namespaces": f"{second['namespaces'][0]} -> {second['namespaces'][0]} rows (contents changed)"
        }
