"""Database time, estimated locally.

Every scheduling comparison is made in database time: definition create
times, resume times and job create times are all PostgreSQL's `now()`, and
replicas on hosts whose clocks disagree must still agree on when a tick is
due. Asking the database for the time at every decision would put a round
trip in front of every fire, so the scheduler measures the offset between
its local clock and the database's (`clock_timestamp()` bracketed by two
local readings, the sample's error being at most half its round trip) and
reads the local clock plus that offset. The sample with the smallest round
trip among the recent ones wins, so one slow round trip cannot skew it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

# About the last ten seconds of samples at one reload a second: long enough
# to ride out a slow round trip, short enough to follow a local clock step.
_WINDOW: Final = 10


class DbClock:
    """Local clock + measured offset = an estimate of the database's clock."""

    def __init__(self, local: Callable[[], float] = time.time):
        self._local = local
        self._samples: deque[tuple[float, float]] = deque(maxlen=_WINDOW)  # (round trip, offset)
        self._offset = 0.0

    @property
    def offset(self) -> timedelta:
        """Database time minus local time."""
        return timedelta(seconds=self._offset)

    def local(self) -> float:
        """The local clock (seconds since the epoch) this estimate is built on."""
        return self._local()

    def now(self) -> datetime:
        """The estimated database time, aware UTC."""
        return datetime.fromtimestamp(self._local() + self._offset, UTC)

    def observe(self, sent: float, db_time: datetime, received: float) -> None:
        """Record one measurement: the local clock just before the query was
        sent and just after its answer arrived, and the database's clock."""
        round_trip = max(received - sent, 0.0)
        offset = db_time.timestamp() - (sent + received) / 2
        self._samples.append((round_trip, offset))
        self._offset = min(self._samples)[1]
