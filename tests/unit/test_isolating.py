"""storage.db.isolating: one transaction for a batch, each item alone when the
batch breaks, never item by item while the database is away."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from chronosched_server.errors import DatabaseError, DomainError, Unavailable
from chronosched_server.storage.db import isolating

Run = Callable[[Sequence[int]], Awaitable[list[int]]]


def runner(bad: set[int], *, away: bool = False) -> tuple[list[list[int]], Run]:
    calls: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if away:
            raise Unavailable("database unavailable")
        if bad & set(items):
            raise DatabaseError()
        return [i * 10 for i in items]

    return calls, run


async def test_a_good_batch_is_one_transaction() -> None:
    calls, run = runner(set())
    ((group, got),) = await isolating([1, 2, 3], run)
    assert (group, got) == ([1, 2, 3], [10, 20, 30])
    assert calls == [[1, 2, 3]]


async def test_a_broken_batch_is_retried_item_by_item() -> None:
    calls, run = runner({2})
    got = await isolating([1, 2, 3], run)
    assert calls == [[1, 2, 3], [1], [2], [3]]
    assert [(g, r) for g, r in got if not isinstance(r, DomainError)] == [([1], [10]), ([3], [30])]
    assert [g for g, r in got if isinstance(r, DatabaseError)] == [[2]]


async def test_an_absent_database_is_not_tried_item_by_item() -> None:
    calls, run = runner(set(), away=True)
    ((group, error),) = await isolating([1, 2, 3], run)
    assert group == [1, 2, 3] and isinstance(error, Unavailable)
    assert calls == [[1, 2, 3]]


async def test_each_alone_from_the_start() -> None:
    calls, run = runner(set())
    await isolating([1, 2], run, together=False)
    assert calls == [[1], [2]]
