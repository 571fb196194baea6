"""When a worker prefetches by itself (`prefetch="auto"`, the default).

Prefetch pays when a handler's run is short next to the few milliseconds a
result takes to reach the server and a dispatch cycle to answer it; it costs
when runs are long, because a leased attempt waiting here could have started
on another worker. So the worker prefetches a whole round (as many as its
slots: docs/workers.md, "Prefetch", says why not fewer) while the handler runs
it has seen lately were short, and nothing otherwise. The bound on what a
prefetched attempt waits is then about one short run.

A worker of few slots whose runs are tiny (a median of a millisecond or
less) gets a round of at least MIN_ROUND instead: a round of one or two
jobs leaves the server a whole dispatch cycle per job or two, the costliest
way to run them, while the last of eight prefetched attempts waits about
eight such runs, under 16 ms even at the 2 ms where the bigger round ends.

Pure: the worker feeds it each handler's run time and sends a SlotUpdate
when `observe` returns a new prefetch.
"""

from __future__ import annotations

import statistics
from collections import deque

# A run this short or shorter counts as short (the median of the window).
SHORT_RUN_S = 0.010
# Prefetch stops only when the median is above this: between the two the
# worker keeps what it does, so runs near the line do not flip it each job.
LONG_RUN_S = 0.020
# Runs this short earn a round of at least MIN_ROUND; the worker keeps it
# until the median is above TINY_END_S (the same hysteresis, a size down).
TINY_RUN_S = 0.001
TINY_END_S = 0.002
MIN_ROUND = 8
# Runs looked at: the last this many, but never fewer than a round.
MIN_WINDOW = 16


class AutoPrefetch:
    """Decides a worker's prefetch from its recent handler run times."""

    def __init__(self, concurrency: int, limit: int) -> None:
        # A round: no more than the slots and than the server lets it hold.
        self.round = max(0, min(concurrency, limit))
        # The round for tiny runs: at least MIN_ROUND, within the same limit.
        self.tiny_round = max(0, min(max(concurrency, MIN_ROUND), limit))
        self.current = 0
        self._runs: deque[float] = deque(maxlen=max(MIN_WINDOW, concurrency))

    def observe(self, run_s: float) -> int | None:
        """Record one handler run; return the new prefetch when it changes."""
        self._runs.append(run_s)
        if len(self._runs) < (self._runs.maxlen or 0) or self.round == 0:
            return None
        median = statistics.median(self._runs)
        wanted = self.current
        if median > LONG_RUN_S:
            wanted = 0
        elif median <= TINY_RUN_S:
            wanted = self.tiny_round
        elif self.current == 0:
            if median <= SHORT_RUN_S:
                wanted = self.round
        elif self.current == self.tiny_round and median > TINY_END_S:
            wanted = self.round
        if wanted == self.current:
            return None
        self.current = wanted
        return wanted
