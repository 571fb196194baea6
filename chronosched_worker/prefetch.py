"""When a worker prefetches by itself (`prefetch="auto"`, the default).

Prefetch pays when a handler's run is short next to the few milliseconds a
result takes to reach the server and a dispatch cycle to answer it; it costs
when runs are long, because a leased attempt waiting here could have started
on another worker. So the worker prefetches a whole round (as many as its
slots: docs/workers.md, "Prefetch", says why not fewer) while the handler runs
it has seen lately were short, and nothing otherwise. The bound on what a
prefetched attempt waits is then about one short run.

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
# Runs looked at: the last this many, but never fewer than a round.
MIN_WINDOW = 16


class AutoPrefetch:
    """Decides a worker's prefetch from its recent handler run times."""

    def __init__(self, concurrency: int, limit: int) -> None:
        # No more than the slots (a round) and than the server lets it hold.
        self.most = max(0, min(concurrency, limit))
        self.current = 0
        self._runs: deque[float] = deque(maxlen=max(MIN_WINDOW, concurrency))

    def observe(self, run_s: float) -> int | None:
        """Record one handler run; return the new prefetch when it changes."""
        self._runs.append(run_s)
        if len(self._runs) < (self._runs.maxlen or 0) or self.most == 0:
            return None
        median = statistics.median(self._runs)
        if self.current == 0 and median <= SHORT_RUN_S:
            self.current = self.most
            return self.current
        if self.current > 0 and median > LONG_RUN_S:
            self.current = 0
            return 0
        return None
