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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chronosched_server.storage.metrics import Pair, Tally
from chronosched_server.storage.records import FrontierCount
from chronosched_server.transitions import Outcome
from chronosched_worker.metrics import ServedRegistry

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
# A child is normally assigned within milliseconds of its last parent's
# success; seconds mean no free slot, and the delay after parents adds to it.
_CHILD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0)
# On-time fires are late by milliseconds; past the grace (2 s) a tick is a
# misfire and is counted there instead.
_CRON_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

# The jobs_finished outcome label of each result outcome (an ACK repeats an
# applied result and is not counted again).
OUTCOME_LABEL = {Outcome.SUCCEED: "succeeded", Outcome.RETRY: "retried", Outcome.FAIL: "failed"}


class Metrics(ServedRegistry):
    """The metric objects of one server; `registry` is what /metrics serves."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.jobs_created = Counter(
            "chronosched_jobs_created",
            "Jobs created: DAG jobs (CreateDag, CreateJobs), Tick and EnqueueJobs runs and cron fires.",
            ["namespace", "kind"],
            registry=r,
        )
        self.jobs_skipped = Counter(
            "chronosched_jobs_skipped",
            "DAG jobs SKIPPED because an ancestor failed for good.",
            ["namespace", "kind"],
            registry=r,
        )
        self.jobs_cancelled = Counter(
            "chronosched_jobs_cancelled",
            "Unfinished jobs CANCELLED by CancelDag or DeleteDag.",
            ["namespace", "kind"],
            registry=r,
        )
        self.parent_child_latency = Histogram(
            "chronosched_parent_child_latency_seconds",
            "From a DAG job's last parent succeeding to the job's assignment to a worker (database time).",
            buckets=_CHILD_BUCKETS,
            registry=r,
        )
        self.cron_lateness = Histogram(
            "chronosched_cron_fire_lateness_seconds",
            "From a cron tick's scheduled time to its fire's commit (database time), on-time fires.",
            buckets=_CRON_BUCKETS,
            registry=r,
        )
        self.cron_misfires = Counter(
            "chronosched_cron_misfires",
            "Cron ledger rows for ticks reached after the grace, by what the misfire policy did.",
            ["namespace", "outcome"],
            registry=r,
        )
        self.jobs_started = Counter(
            "chronosched_jobs_started",
            "Job attempts pushed to workers.",
            ["namespace", "kind"],
            registry=r,
        )
        self.handoffs = Counter(
            "chronosched_handoffs",
            "Of the attempts started, those Tick handed straight to a worker's free slot (no claim).",
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

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    def count_results(self, finished: Mapping[tuple[str, str, Outcome], int]) -> None:
        """Applied results by (namespace, kind, what they did). Counted in
        batches: a label lookup costs about as much as rendering a third of
        an assignment, and the dispatcher would pay it per result."""
        for (namespace, kind, outcome), n in finished.items():
            label = OUTCOME_LABEL.get(outcome)
            if label is not None:
                self.jobs_finished.labels(namespace, kind, label).inc(n)

    def count_started(self, started: Mapping[Pair, int]) -> None:
        """Attempts pushed to workers by (namespace, kind), in batches too."""
        for (namespace, kind), n in started.items():
            self.jobs_started.labels(namespace, kind).inc(n)

    def record(self, tally: Tally) -> None:
        """Add what a storage call did (committed) to the counters."""
        for (namespace, kind), n in tally.created.items():
            self.jobs_created.labels(namespace, kind).inc(n)
        self.count_skipped(tally.skipped)
        for (namespace, kind), n in tally.cancelled.items():
            self.jobs_cancelled.labels(namespace, kind).inc(n)
        self.count_results(tally.finished)

    def count_skipped(self, skipped: Mapping[Pair, int]) -> None:
        for (namespace, kind), n in skipped.items():
            self.jobs_skipped.labels(namespace, kind).inc(n)

    def cron_recorded(self, namespace: str, kind: str, fired: bool, late_s: float, missed: bool) -> None:
        """One tick this process recorded in the fire ledger (scheduler/loop.py)."""
        if fired:
            self.jobs_created.labels(namespace, kind).inc()
        if missed:
            self.cron_misfires.labels(namespace, "fired" if fired else "skipped").inc()
        elif fired:
            self.cron_lateness.observe(max(late_s, 0.0))


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
    """READY jobs by namespace and kind, and those of them no live worker
    stream serves, counted by the database at scrape time (one query) and
    cached for FRONTIER_CACHE_S. Scrapes arrive on the HTTP thread; the query
    runs on the server's event loop, where the pool lives."""

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

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        frontier = GaugeMetricFamily(
            "chronosched_frontier_jobs",
            "Jobs READY to run (including delayed ones).",
            labels=["namespace", "kind"],
        )
        unserved = GaugeMetricFamily(
            "chronosched_unserved_ready_jobs",
            "READY jobs of a namespace and kind that no live worker stream (on any replica) serves.",
            labels=["namespace", "kind"],
        )
        return frontier, unserved

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The families without samples. Registering asks for this instead of
        collect(): called on the event loop at start, collect() would block the
        loop it waits on until its timeout (2 s of a stalled server)."""
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family, unserved = self._families()
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
            unserved.add_metric([row.namespace_id, row.kind], row.jobs if row.unserved else 0)
        yield family
        yield unserved


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
