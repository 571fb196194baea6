"""Per-caller quotas: requests per second and open Dequeue streams. Pure (no
I/O); the auth interceptor asks before any servicer runs.

A caller is its token (its id), or, on a server without auth, the peer's
address: one noisy client must not starve the others, and a flood of
requests or streams must end in RESOURCE_EXHAUSTED (429 through Envoy), never
in a server that slows for everyone or runs out of memory. Both quotas are
off (0) unless configured; `chronosched up` leaves them off.

Requests use a token bucket: `rate` requests a second on average, up to
`burst` at once. A Dequeue stream counts as one request when it opens and
holds one of `max_streams` slots until it ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chronosched_server.errors import ResourceExhausted

# Buckets of callers unseen for this long are forgotten (they would be full
# again anyway), so the table stays as small as the set of active callers.
_IDLE_S = 300.0


@dataclass(frozen=True)
class QuotaConfig:
    """Requests per second and open streams per caller; 0 turns one off."""

    rate: float = 0.0
    burst: int = 0
    max_streams: int = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0 or self.max_streams > 0


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class Quotas:
    """The quota state of one server process."""

    config: QuotaConfig
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _streams: dict[str, int] = field(default_factory=dict)
    _last_sweep: float = 0.0

    def admit(self, caller: str) -> None:
        """Take one request from `caller`'s bucket, or raise ResourceExhausted."""
        rate = self.config.rate
        if rate <= 0:
            return
        # A burst of 0 means one second's worth of requests.
        burst = float(self.config.burst or max(1, math.ceil(rate)))
        now = self.clock()
        self._sweep(now)
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        # The epsilon absorbs float drift of many small refills.
        if bucket.tokens < 1.0 - 1e-9:
            wait = (1.0 - bucket.tokens) / rate
            raise ResourceExhausted(
                f"rate limit: at most {rate:g} requests a second (bursts of {burst:g}) per caller; "
                f"retry in {wait:.2f}s",
                limit="requests_per_second",
                retry_after_s=wait,
            )
        bucket.tokens -= 1.0

    def open_stream(self, caller: str) -> None:
        """Hold one of `caller`'s stream slots, or raise ResourceExhausted.
        Every successful call must be paired with `close_stream`."""
        limit = self.config.max_streams
        if limit <= 0:
            return
        held = self._streams.get(caller, 0)
        if held >= limit:
            raise ResourceExhausted(
                f"stream limit: at most {limit} open Dequeue streams per caller",
                limit="streams_per_caller",
            )
        self._streams[caller] = held + 1

    def close_stream(self, caller: str) -> None:
        if self.config.max_streams <= 0:
            return
        held = self._streams.get(caller, 0) - 1
        if held > 0:
            self._streams[caller] = held
        else:
            self._streams.pop(caller, None)

    def streams(self, caller: str) -> int:
        return self._streams.get(caller, 0)

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < _IDLE_S:
            return
        self._last_sweep = now
        for key in [k for k, b in self._buckets.items() if now - b.stamp > _IDLE_S]:
            del self._buckets[key]
