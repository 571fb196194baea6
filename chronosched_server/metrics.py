"""Prometheus metrics of one server process (docs/operations.md, "Metrics").

Each Server owns a `Metrics` with a registry of its own, so that several
servers in one process (tests, benches) do not share counters. Counters and
histograms are updated in memory where things happen; the gauges that
describe state (connected workers, the frontier, the pool) are read when
Prometheus scrapes, so nothing on the dispatch path costs a database trip.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chronosched_server.storage.records import FrontierCount

# A scrape reuses the frontier count this long: one grouped query per
# interval however many scrapers ask.
FRONTIER_CACHE_S = 5.0
# How long a scrape waits for the frontier query before reporting nothing.
FRONTIER_TIMEOUT_S = 2.0

# Dispatch cycles take a few milliseconds; slow ones show in the tail.
_CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
# RPCs range from sub-millisecond reads to worker streams open for hours.
_RPC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0, 3600.0)


class Metrics:
    """The metric objects of one server; `registry` is what /metrics serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_started = Counter(
            "chronosched_jobs_started",
            "Job attempts pushed to workers.",
            ["namespace", "kind"],
            registry=r,
        )
        self.jobs_finished = Counter(
            "chronosched_jobs_finished",
            "Worker results applied, by what they did to the job.",
            ["namespace", "kind", "outcome"],
            registry=r,
        )
        self.stale_results = Counter(
            "chronosched_stale_results",
            "Worker results refused: stale attempt, job not held by the worker, or gone.",
            registry=r,
        )
        self.lease_expiries = Counter(
            "chronosched_lease_expiries",
            "Leases the reaper took back because they expired.",
            registry=r,
        )
        self.dispatch_cycle = Histogram(
            "chronosched_dispatch_cycle_seconds",
            "Duration of one dispatcher transaction (results, heartbeats and claims).",
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.dispatch_batch = Histogram(
            "chronosched_dispatch_batch_size",
            "Worker results applied by one dispatcher cycle.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.rpc_requests = Counter(
            "chronosched_rpc_requests",
            "gRPC calls handled, by full method name and status code.",
            ["method", "code"],
            registry=r,
        )
        self.rpc_duration = Histogram(
            "chronosched_rpc_duration_seconds",
            "gRPC call duration (for streams, how long they stayed open).",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=r,
        )
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on a thread of its own; returns the bound port."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_address[1])

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None


class StreamCollector(Collector):
    """Connected workers and their free slots, from this process's streams."""

    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        workers, free = self._counts()
        yield GaugeMetricFamily(
            "chronosched_connected_workers", "Worker streams open on this server.", value=workers
        )
        yield GaugeMetricFamily(
            "chronosched_free_slots", "Free slots of the workers connected to this server.", value=free
        )


class FrontierCollector(Collector):
    """READY jobs by namespace and kind, counted by the database at scrape
    time and cached for FRONTIER_CACHE_S. Scrapes arrive on the HTTP thread;
    the query runs on the server's event loop, where the pool lives."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, count: Callable[[], Awaitable[Sequence[FrontierCount]]]
    ) -> None:
        self._loop = loop
        self._count = count
        self._lock = threading.Lock()
        self._cached: Sequence[FrontierCount] = ()
        self._at = -FRONTIER_CACHE_S

    async def _run(self) -> Sequence[FrontierCount]:
        return await self._count()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "chronosched_frontier_jobs",
            "Jobs READY to run (including delayed ones).",
            labels=["namespace", "kind"],
        )
        with self._lock:
            if time.monotonic() - self._at >= FRONTIER_CACHE_S:
                future = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
                try:
                    self._cached = future.result(timeout=FRONTIER_TIMEOUT_S)
                    self._at = time.monotonic()
                except Exception:
                    # Database away or slow: the scrape goes on without the
                    # family rather than failing as a whole.
                    future.cancel()
                    return
            rows = self._cached
        for row in rows:
            family.add_metric([row.namespace_id, row.kind], row.jobs)
        yield family


class PoolCollector(Collector):
    """Connections of the database pool by state."""

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "chronosched_db_pool_connections", "Database pool connections by state.", labels=["state"]
        )
        for state, value in self._stats().items():
            family.add_metric([state], value)
        yield family
