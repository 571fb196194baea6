"""Prometheus metrics of one worker (docs/operations.md, "Metrics").

Each `Worker` owns a `WorkerMetrics` with a registry of its own, so two
workers in one process neither share nor clash over series. Counters and the
handler histogram are updated where jobs end; the gauges (jobs running,
slots, connected) are read from the worker when Prometheus scrapes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Handlers range from no-ops to hour-long commands.
_HANDLER_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class ServedRegistry:
    """A registry of its own and its /metrics endpoint: the base of a worker's
    and a server's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

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


class WorkerMetrics(ServedRegistry):
    """The metric objects of one worker; `registry` is what /metrics serves."""

    def __init__(self, running: Callable[[], int], slots: int, connected: Callable[[], bool]) -> None:
        super().__init__()
        r = self.registry
        self.jobs_running = Gauge(
            "chronosched_worker_jobs_running",
            "Job attempts this worker holds now (running, or prefetched and waiting for a slot).",
            registry=r,
        )
        self.jobs_running.set_function(lambda: float(running()))
        self.slots = Gauge("chronosched_worker_slots", "Jobs this worker runs at once at most.", registry=r)
        self.slots.set(slots)
        self.connected = Gauge(
            "chronosched_worker_connected", "1 while the worker's Dequeue stream is up, else 0.", registry=r
        )
        self.connected.set_function(lambda: 1.0 if connected() else 0.0)
        self.reconnects = Counter(
            "chronosched_worker_reconnects",
            "Dequeue streams opened again after the worker had one (not the first).",
            registry=r,
        )
        self.handler_duration = Histogram(
            "chronosched_worker_handler_duration_seconds",
            "Handler run time of attempts that finished (succeeded or failed), by kind.",
            ["kind"],
            buckets=_HANDLER_BUCKETS,
            registry=r,
        )
        self.jobs_finished = Counter(
            "chronosched_worker_jobs_finished",
            "Attempts this worker ended, by kind and outcome (succeeded, failed, abandoned).",
            ["kind", "outcome"],
            registry=r,
        )
        self._finished: dict[tuple[str, str], Counter] = {}
        self._durations: dict[str, Histogram] = {}

    def finished(self, kind: str, outcome: str, duration_s: float | None) -> None:
        """One attempt ended; `duration_s` None for one abandoned mid-run.
        The labelled children are kept: `labels()` takes a lock and builds a
        key on every call, per job."""
        counter = self._finished.get((kind, outcome))
        if counter is None:
            counter = self._finished[kind, outcome] = self.jobs_finished.labels(kind, outcome)
        counter.inc()
        if duration_s is not None:
            histogram = self._durations.get(kind)
            if histogram is None:
                histogram = self._durations[kind] = self.handler_duration.labels(kind)
            histogram.observe(duration_s)
