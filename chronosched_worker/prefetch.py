"""When a worker prefetches by itself (`prefetch="auto"`, the default).

Prefetch pays when a handler's run is short next to the few milliseconds a
result takes to reach the server and a dispatch cycle to answer it; it costs
when runs are long, because a leased attempt waiting here could have started
on another worker. So the worker prefetches a whole round (as many as its
slots: docs/workers.md, "Prefetch", says why not fewer) while the handler runs
it has seen lately were short, and nothing otherwise. The bound on what a
prefetched attempt waits is then about one short run.

A worker whose runs are tiny (a median of a millisecond or less) prefetches
more: enough to hold about TINY_HOLD attempts in all, within TINY_ROUNDS
rounds and never less than one round. Each dispatch cycle costs the server
and PostgreSQL a millisecond or two whatever its size, so a worker that holds
few tiny jobs spends most of its time waiting on cycles; holding more makes
each cycle carry more and lets the worker run while the next is on its way.
The last prefetched attempt waits for about TINY_ROUNDS runs of a slot at
most: under 16 ms even at the 2 ms where the bigger prefetch ends.

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
# Runs this short earn the tiny prefetch; the worker keeps it until the
# median is above TINY_END_S (the same hysteresis, a size down).
TINY_RUN_S = 0.001
TINY_END_S = 0.002
# What a worker of tiny runs holds (slots and prefetch). At 16 slots each
# step from 16 to 64 prefetched drained faster (docs/workers.md, "Prefetch");
# more would leave more attempts waiting on the leases of a worker that dies.
TINY_HOLD = 64
# ...but no more than this many rounds of its slots, which bounds the wait.
TINY_ROUNDS = 8
# Runs looked at: the last this many, but never fewer than a round.
MIN_WINDOW = 16


class AutoPrefetch:
    """Decides a worker's prefetch from its recent handler run times."""

    def __init__(self, concurrency: int, limit: int) -> None:
        # A round: no more than the slots and than the server lets it hold.
        self.round = max(0, min(concurrency, limit))
        # The prefetch for tiny runs: up to TINY_HOLD held in all, at most
        # TINY_ROUNDS rounds, at least a round, within the same limit.
        tiny = max(concurrency, min(TINY_ROUNDS * concurrency, TINY_HOLD - concurrency))
        self.tiny_round = max(0, min(tiny, limit))
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
