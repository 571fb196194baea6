"""Dispatch throughput with /metrics served and scraped against without it,
interleaved in one run.

Each round runs the same workload twice, once on a `chronosched server`
started without `--metrics-port` and once on one started with it while a
scraper reads /metrics every `--scrape-interval` seconds (Prometheus
scrapes every 15 s by default; 1 s is the harsh case). The order flips every
round, so a drift over the run (a growing jobs table, a warming cache)
falls on both sides alike. The workload: one started DAG of `--jobs` no-op
jobs, half of them the child of the other half (so the parent-done ->
child-assigned histogram is fed too), run by a stream client that answers
every assignment at once with `--slots` slots (bench.throughput's client).

The counters themselves are always on (they are plain in-memory
increments); what the flag adds is the HTTP thread, the scrapes and the
frontier query each scrape runs.

    python -m bench.metrics_overhead [--jobs 10000] [--rounds 3] [--slots 16] [--scrape-interval 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.common import database, free_port, server_process
from bench.throughput import StreamClient, make_jobs, setup


async def scrape_forever(port: int, every_s: float, took: list[float]) -> None:
    """GET /metrics every `every_s` until cancelled; records how long each took."""
    async with httpx.AsyncClient() as client:
        while True:
            t0 = time.perf_counter()
            resp = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0)
            resp.raise_for_status()
            took.append(time.perf_counter() - t0)
            await asyncio.sleep(every_s)


async def started_total(port: int) -> float:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0)
    return sum(
        sample.value
        for family in text_string_to_metric_families(resp.text)
        for sample in family.samples
        if sample.name == "chronosched_jobs_started_total"
    )


async def one_run(
    url: str, tag: str, jobs: int, slots: int, metrics: bool, every_s: float
) -> tuple[float, list[float]]:
    """Jobs/s of one run, and how long each of its scrapes took."""
    port = free_port()
    extra = ("--metrics-port", str(port)) if metrics else ()
    async with server_process(url, *extra) as (_, channel):
        def_id = await setup(channel, tag)
        await make_jobs(channel, tag, def_id, jobs, [(i, i + 1) for i in range(0, jobs - 1, 2)])
        took: list[float] = []
        scraper = asyncio.create_task(scrape_forever(port, every_s, took)) if metrics else None
        client = StreamClient(channel, tag, slots, f"bench-{tag}")
        t0 = time.perf_counter()
        try:
            await client.run(jobs)
        finally:
            elapsed = time.perf_counter() - t0
            if scraper is not None:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper
        if metrics:
            # The run was counted: the metrics were live, not an empty page.
            assert await started_total(port) == jobs, "jobs_started_total does not match the run"
        return jobs / elapsed, took


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    args = parser.parse_args()
    off: list[float] = []
    on: list[float] = []
    scrapes: list[float] = []
    async with database() as url:
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for metrics in order:
                tag = f"r{r}-{'on' if metrics else 'off'}"
                rate, took = await one_run(url, tag, args.jobs, args.slots, metrics, args.scrape_interval)
                (on if metrics else off).append(rate)
                scrapes += took
                extra = f", {len(took)} scrapes" if metrics else ""
                print(
                    f"round {r + 1} metrics {'on ' if metrics else 'off'}: {rate:8.0f} jobs/s{extra}",
                    flush=True,
                )
    median_off, median_on = statistics.median(off), statistics.median(on)
    # Per round: the two runs nearest in time, so a drift cancels best.
    per_round = statistics.median(a / b for a, b in zip(on, off, strict=True))
    spread = max(max(off) / min(off), max(on) / min(on)) - 1
    print(f"metrics off: median {median_off:.0f} jobs/s over {len(off)} runs")
    print(f"metrics on (scraped every {args.scrape_interval:g} s): median {median_on:.0f} jobs/s")
    print(f"ratio on/off: {median_on / median_off:.3f} of the medians, {per_round:.3f} median of the rounds'")
    print(f"run-to-run spread within a mode: {spread:.1%}")
    if scrapes:
        print(
            f"scrape time: median {statistics.median(scrapes) * 1000:.1f} ms,"
            f" max {max(scrapes) * 1000:.1f} ms over {len(scrapes)} scrapes"
        )


if __name__ == "__main__":
    asyncio.run(main())
