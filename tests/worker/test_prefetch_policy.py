"""chronosched_worker.prefetch: when "auto" prefetches, from run times alone."""

from __future__ import annotations

from chronosched_worker.prefetch import (
    LONG_RUN_S,
    MIN_WINDOW,
    SHORT_RUN_S,
    TINY_END_S,
    TINY_HOLD,
    TINY_ROUNDS,
    TINY_RUN_S,
    AutoPrefetch,
)


def feed(policy: AutoPrefetch, runs: list[float]) -> list[int | None]:
    return [policy.observe(r) for r in runs]


def test_nothing_is_decided_before_a_full_window() -> None:
    policy = AutoPrefetch(concurrency=4, limit=996)
    assert feed(policy, [SHORT_RUN_S] * (MIN_WINDOW - 1)) == [None] * (MIN_WINDOW - 1)
    assert policy.current == 0
    assert policy.observe(SHORT_RUN_S) == 4
    assert policy.current == 4


def test_the_window_is_at_least_a_round() -> None:
    policy = AutoPrefetch(concurrency=40, limit=960)
    assert set(feed(policy, [0.001] * 39)) == {None}
    assert policy.observe(0.001) == 40


def test_on_at_a_short_median_off_above_the_long_line_and_steady_between() -> None:
    policy = AutoPrefetch(concurrency=16, limit=984)
    # A median of exactly the short line turns it on, whatever the outliers.
    runs = [SHORT_RUN_S] * 9 + [5.0] * 7
    assert feed(policy, runs)[-1] == 16
    # Runs between the lines change nothing, in either state.
    assert set(feed(policy, [(SHORT_RUN_S + LONG_RUN_S) / 2] * 32)) == {None}
    assert policy.current == 16
    # Above the long line once the median is: off, once.
    changes = [c for c in feed(policy, [LONG_RUN_S * 1.5] * 16) if c is not None]
    assert changes == [0] and policy.current == 0
    assert set(feed(policy, [(SHORT_RUN_S + LONG_RUN_S) / 2] * 32)) == {None}
    assert policy.current == 0
    changes = [c for c in feed(policy, [SHORT_RUN_S] * 16) if c is not None]
    assert changes == [16]


def test_never_more_than_the_server_allows() -> None:
    assert feed(AutoPrefetch(concurrency=16, limit=3), [0.0] * 16)[-1] == 3
    one = AutoPrefetch(concurrency=1, limit=999)
    assert feed(one, [SHORT_RUN_S] * 16)[-1] == 1
    assert feed(AutoPrefetch(concurrency=1, limit=5), [0.0] * 16)[-1] == 5
    none = AutoPrefetch(concurrency=1000, limit=0)
    assert set(feed(none, [0.0] * 2000)) == {None} and none.current == 0


def test_tiny_runs_on_one_slot_prefetch_the_most_rounds_and_step_down() -> None:
    policy = AutoPrefetch(concurrency=1, limit=999)
    # One slot: TINY_ROUNDS rounds (well under TINY_HOLD), straight from
    # nothing, in one change.
    assert [c for c in feed(policy, [TINY_RUN_S] * 16) if c is not None] == [TINY_ROUNDS]
    # Between the tiny lines: kept.
    assert set(feed(policy, [(TINY_RUN_S + TINY_END_S) / 2] * 32)) == {None}
    assert policy.current == TINY_ROUNDS
    # Above the tiny end but still short: back to a plain round, once.
    assert [c for c in feed(policy, [SHORT_RUN_S] * 16) if c is not None] == [1]
    # Tiny again: the bigger prefetch again. Then long runs: the window's
    # median passes the tiny end before the long line, so a round, then off.
    assert [c for c in feed(policy, [0.0] * 16) if c is not None] == [TINY_ROUNDS]
    assert [c for c in feed(policy, [LONG_RUN_S * 2] * 16) if c is not None] == [1, 0]


def test_from_the_tiny_prefetch_straight_past_the_short_line_is_a_plain_round() -> None:
    policy = AutoPrefetch(concurrency=2, limit=998)
    assert feed(policy, [0.0] * 16)[-1] == 2 * TINY_ROUNDS
    # Runs between the short and the long line: more than the tiny prefetch
    # allows, not long enough to stop.
    changes = [c for c in feed(policy, [(SHORT_RUN_S + LONG_RUN_S) / 2] * 16) if c is not None]
    assert changes == [2] and policy.current == 2


def tiny_prefetch(concurrency: int, limit: int = 1000) -> int:
    policy = AutoPrefetch(concurrency=concurrency, limit=limit - concurrency)
    feed(policy, [0.0] * max(MIN_WINDOW, concurrency))
    return policy.current


def test_tiny_runs_hold_up_to_tiny_hold_in_all() -> None:
    # Few slots: TINY_ROUNDS rounds; more: whatever fills TINY_HOLD; from
    # TINY_HOLD / 2 slots up, one round (never less).
    assert (TINY_HOLD, TINY_ROUNDS) == (64, 8)
    got = {c: tiny_prefetch(c) for c in (1, 2, 4, 7, 8, 16, 24, 32, 40, 64, 100)}
    assert got == {1: 8, 2: 16, 4: 32, 7: 56, 8: 56, 16: 48, 24: 40, 32: 32, 40: 40, 64: 64, 100: 100}
    # The server's limit still bounds it.
    assert tiny_prefetch(16, limit=40) == 24


def test_at_sixteen_slots_tiny_runs_prefetch_more_than_short_ones() -> None:
    policy = AutoPrefetch(concurrency=16, limit=984)
    assert [c for c in feed(policy, [SHORT_RUN_S] * 16) if c is not None] == [16]
    assert [c for c in feed(policy, [0.0] * 16) if c is not None] == [TINY_HOLD - 16]
    assert [c for c in feed(policy, [SHORT_RUN_S] * 16) if c is not None] == [16]
