"""One SDK worker process for bench.scale, started on a signal and stopped by one.

    python -m bench.scale_worker --server HOST:PORT (--namespaces A,B,... | --all-namespaces)
        [--kinds noop] [--concurrency 16]

bench.peers_worker stops by itself after a known number of jobs; here
several workers share one queue and none knows how many it will get, so the
parent (bench.scale) counts for them. The protocol, one line each:

- stdout `ready` once the SDK `Worker` is built (imports done);
- stdin `go`: start `Worker.run` (so that N workers start within a
  millisecond of each other, not a process start-up apart);
- stdout `n COUNT`: handler starts so far, at most every 20 ms and only when
  it changed (the parent sums them over the workers);
- stdin `stop` (or stdin closed): stop, which drains, so `run` returns once
  every result is acknowledged;
- stdout `done SECONDS HANDLED CPU_SECONDS`: from `go` until `run` returned,
  and this process's CPU time over the same span.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from typing import Any

from bench.peers_worker import say

# How often the handled count goes to the parent: the parent's stop comes at
# most this much after the last job (plus a pipe hop), in every configuration.
REPORT_S = 0.02


async def lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def until_line(reader: asyncio.StreamReader, word: str) -> None:
    """Returns on a line `word`, or when stdin closes."""
    while True:
        raw = await reader.readline()
        if not raw or raw.decode().strip() == word:
            return


async def run(args: argparse.Namespace) -> None:
    from chronosched_worker import JobContext, Worker

    # As in bench.peers_worker: no per-job log lines (a production worker
    # configures its own logging).
    logging.getLogger("chronosched.worker").setLevel(logging.WARNING)
    namespaces = [ns for ns in args.namespaces.split(",") if ns] if args.namespaces else []
    worker = Worker(
        args.server,
        namespaces=namespaces,
        all_namespaces=args.all_namespaces,
        concurrency=args.concurrency,
        worker_id=f"scale-{os.getpid()}",
    )
    handled = 0

    async def noop(ctx: JobContext) -> dict[str, Any]:
        nonlocal handled
        handled += 1
        return {}

    for kind in args.kinds.split(","):
        worker.add_handler(kind, noop)
    reader = await lines()
    say("ready")
    await until_line(reader, "go")
    started, cpu = time.perf_counter(), time.process_time()
    stop = asyncio.Event()

    async def report() -> None:
        told = 0
        while True:
            await asyncio.sleep(REPORT_S)
            if handled != told:
                told = handled
                say("n", told)

    async def stopper() -> None:
        await until_line(reader, "stop")
        stop.set()

    reporting = asyncio.create_task(report())
    stopping = asyncio.create_task(stopper())
    await worker.run(stop)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    reporting.cancel()
    await stopping
    say("done", f"{elapsed:.6f}", handled, f"{cpu:.6f}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_worker")
    parser.add_argument("--server", required=True, help="HOST:PORT of `chronosched server`")
    parser.add_argument("--namespaces", default="", help="comma-separated namespace ids")
    parser.add_argument("--all-namespaces", action="store_true")
    parser.add_argument("--kinds", default="noop", help="comma-separated kinds, one handler each")
    parser.add_argument("--concurrency", type=int, default=16)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
