"""Fixtures for scheduler tests: the in-process server with its own scheduler
off, and schedulers driven by a fake clock (database time, set by the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import pytest

from chronosched_server.scheduler import Scheduler
from chronosched_server.storage.db import Database
from tests.support.server import api, api_without_scheduler  # noqa: F401


class FakeClock:
    """Database time as the test says it is."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


MakeScheduler = Callable[[FakeClock], Awaitable[Scheduler]]


@pytest.fixture
async def make_scheduler(database_url: str) -> AsyncIterator[MakeScheduler]:
    """Schedulers with pools of their own (like separate replicas), driven by `run_once()`."""
    pools: list[Database] = []

    async def make(clock: FakeClock) -> Scheduler:
        db = Database(database_url, min_size=1, max_size=4)
        await db.open()
        pools.append(db)
        return Scheduler(db, clock=clock)

    yield make
    for db in pools:
        await db.close()
