"""One contender's worker as its own process, driven by bench.peers.

    python -m bench.peers_worker {chronosched,pgqueuer,procrastinate} --mode {drain,latency} ...

Every contender gets an async no-op handler. What it prints on stdout is the
whole protocol with bench.peers:

- `ready` once set up, just before the worker starts;
- `lat SECONDS` per job in latency mode: wall time at handler start minus the
  wall time the parent stamped into the job's payload just before enqueueing;
- `done SECONDS HANDLED CPU` at the end of drain mode: from just before the
  worker starts until it returns, having handled `--jobs` jobs and (for the
  SDK) seen every result acknowledged, or (for the peers) finished its own
  drain; CPU is this process's CPU seconds (all threads) over that time.

A latency worker runs until its stdin closes. The peers are imported by name
(importlib) because they come from the optional `bench` extra: bench.peers
only starts this for the ones that are installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any


def say(*parts: object) -> None:
    print(*parts, flush=True)


class Tally:
    """Counts handler starts; in latency mode reports each one at once."""

    def __init__(self, target: int, latency: bool) -> None:
        self.target = target
        self.latency = latency
        self.handled = 0
        self.all_handled = asyncio.Event()

    def start(self, stamped: float | None) -> None:
        now = time.time()
        if self.latency and stamped is not None:
            say("lat", f"{now - stamped:.6f}")
        self.handled += 1
        if self.handled >= self.target:
            self.all_handled.set()


async def stdin_closed() -> None:
    """Returns when the parent closes our stdin: the latency worker's stop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def run_chronosched(args: argparse.Namespace, tally: Tally) -> None:
    from chronosched_worker import JobContext, Worker
    from chronosched_worker.cli import prefetch_arg

    # The SDK's default output is two INFO lines per job; a production worker
    # configures its own logging, and the peers log nothing per job.
    logging.getLogger("chronosched.worker").setLevel(logging.WARNING)
    worker = Worker(
        args.server,
        namespaces=[args.namespace],
        concurrency=args.concurrency,
        prefetch=prefetch_arg(args.prefetch),
        worker_id=f"peers-{args.mode}-{os.getpid()}",
    )

    async def noop(ctx: JobContext) -> dict[str, Any]:
        stamped = ctx.payload.get("t")
        tally.start(float(stamped) if stamped is not None else None)
        return {}

    worker.add_handler("noop", noop)
    stop = asyncio.Event()

    async def stopper() -> None:
        if args.mode == "drain":
            await tally.all_handled.wait()
        else:
            await stdin_closed()
        stop.set()

    say("ready")
    started, cpu = time.perf_counter(), time.process_time()
    stopping = asyncio.create_task(stopper())
    # Stopping drains: run returns once every result is acknowledged.
    await worker.run(stop)
    elapsed = time.perf_counter() - started
    await stopping
    say("done", f"{elapsed:.6f}", tally.handled, f"{time.process_time() - cpu:.6f}")


async def run_pgqueuer(args: argparse.Namespace, tally: Tally) -> None:
    asyncpg: Any = importlib.import_module("asyncpg")
    pgqueuer: Any = importlib.import_module("pgqueuer")
    pgq_types: Any = importlib.import_module("pgqueuer.types")
    conn = await asyncpg.connect(args.url)
    pgq = pgqueuer.PgQueuer(pgqueuer.AsyncpgDriver(conn))

    async def noop(job: Any) -> None:
        tally.start(float(job.payload) if job.payload else None)

    # Its entrypoint's concurrency_limit is the per-entrypoint cap on jobs in
    # flight (enforced in its dequeue query); batch size stays its default.
    pgq.entrypoint("noop", concurrency_limit=args.concurrency)(noop)
    mode = pgq_types.QueueExecutionMode.drain if args.mode == "drain" else None
    say("ready")
    started, cpu = time.perf_counter(), time.process_time()
    if mode is not None:
        # Drain mode returns once the queue is empty and in-flight jobs are
        # logged as done.
        await pgq.run(mode=mode, batch_size=args.batch_size)
    else:
        running = asyncio.create_task(pgq.run(batch_size=args.batch_size))
        await stdin_closed()
        pgq.shutdown.set()
        await running
    elapsed = time.perf_counter() - started
    with contextlib.suppress(Exception):
        await conn.close()
    say("done", f"{elapsed:.6f}", tally.handled, f"{time.process_time() - cpu:.6f}")


async def run_procrastinate(args: argparse.Namespace, tally: Tally) -> None:
    procrastinate: Any = importlib.import_module("procrastinate")
    # Its warning that an App made in a __main__ module cannot be found by
    # its CLI; we never use its CLI.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=args.url))

    async def noop(t: float | None = None) -> None:
        tally.start(t)

    app.task(name="noop", queue=args.queue)(noop)
    options: dict[str, Any] = {
        "queues": [args.queue],
        "concurrency": args.concurrency,
        "install_signal_handlers": False,
    }
    async with app.open_async():
        say("ready")
        started, cpu = time.perf_counter(), time.process_time()
        if args.mode == "drain":
            # wait=False: the worker returns once it has caught up with the queue.
            await app.run_worker_async(wait=False, **options)
        else:
            running = asyncio.create_task(app.run_worker_async(wait=True, **options))
            await stdin_closed()
            # Cancelling the worker's task is its documented graceful stop.
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        elapsed = time.perf_counter() - started
    say("done", f"{elapsed:.6f}", tally.handled, f"{time.process_time() - cpu:.6f}")


RUNNERS: dict[str, Callable[[argparse.Namespace, Tally], Coroutine[Any, Any, None]]] = {
    "chronosched": run_chronosched,
    "pgqueuer": run_pgqueuer,
    "procrastinate": run_procrastinate,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers_worker")
    parser.add_argument("contender", choices=sorted(RUNNERS))
    parser.add_argument("--mode", choices=("drain", "latency"), required=True)
    parser.add_argument("--jobs", type=int, default=1, help="drain: stop after this many")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--prefetch",
        default="auto",
        help="chronosched: leased beyond the slots, auto (the SDK's default) or a number"
        " (checked as the worker CLI checks it, in chronosched's process only)",
    )
    parser.add_argument("--url", help="PostgreSQL URL (the peers)")
    parser.add_argument("--server", help="HOST:PORT of `chronosched server`")
    parser.add_argument("--namespace", default="peers", help="chronosched namespace")
    parser.add_argument("--queue", default="peers", help="procrastinate queue")
    parser.add_argument(
        "--batch-size", type=int, default=10, help="pgqueuer's dequeue batch (its default 10)"
    )
    args = parser.parse_args()

    async def run() -> None:
        tally = Tally(args.jobs if args.mode == "drain" else 1 << 62, args.mode == "latency")
        await RUNNERS[args.contender](args, tally)

    if args.contender == "pgqueuer":
        # Its own CLI (`pgq run`) and benchmark run workers on uvloop, a
        # dependency of the package: run it as its users do.
        uvloop: Any = importlib.import_module("uvloop")
        uvloop.run(run())
    else:
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
