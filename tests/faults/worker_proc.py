"""A real worker process for fault tests: the SDK `Worker` with a `logged`
kind whose handler writes every attempt to the shared ExecutionLog.

    python -m tests.faults.worker_proc --server HOST:PORT --namespace NS \
        --worker-id ID --log PATH [--concurrency N] [--ready-file PATH] [--builtin]

The `logged` handler reads its payload:

- `sleep_s` (float): how long the attempt takes (asyncio sleep);
  `sleep_attempts` (list of int) limits the sleep to those attempts;
- `exit_attempts` (list of int) or `exit` (bool): `os._exit(17)` mid-job on
  those attempts (every attempt with `exit`) — a poison job that kills its
  worker;
- `fail_attempts` (list of int): fail those attempts (retryable).

It returns `{"worker": ID, "attempt": N, "key": KEY}`, so the stored result
names the execution the server accepted. `--ready-file` is written once the
Dequeue stream is up; `--builtin` also serves the built-in kinds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from chronosched_worker import JobContext, JobFailed, Worker, register_builtin_kinds
from tests.faults.invariants import ExecutionLog, work

EXIT_CODE = 17


def _attempts(payload: dict[str, Any], name: str) -> set[int]:
    value = payload.get(name) or []
    return {int(v) for v in value}


def build(args: argparse.Namespace) -> Worker:
    worker = Worker(
        args.server,
        worker_id=args.worker_id,
        namespaces=[args.namespace],
        concurrency=args.concurrency,
        grace_s=args.grace,
    )
    log = ExecutionLog(args.log)

    @worker.handler("logged")
    async def logged(ctx: JobContext) -> dict[str, Any]:
        p = ctx.payload
        with log.execution(ctx.job_id, ctx.attempt, args.worker_id) as run:
            if p.get("exit") or ctx.attempt in _attempts(p, "exit_attempts"):
                # No clean-up, no result: the process is gone mid-job.
                os._exit(EXIT_CODE)
            sleep_on = _attempts(p, "sleep_attempts")
            if not sleep_on or ctx.attempt in sleep_on:
                await work(run, ctx.cancelled, float(p.get("sleep_s", 0.0)))
            if ctx.attempt in _attempts(p, "fail_attempts"):
                run.outcome = "failure"
                raise JobFailed(f"planned failure of attempt {ctx.attempt}")
            run.result = {"worker": args.worker_id, "attempt": ctx.attempt, "key": ctx.key}
            return run.result

    if args.builtin:
        register_builtin_kinds(worker)
    return worker


def _write_ready(path: str) -> None:
    Path(path).write_text(f"{os.getpid()}\n")


async def main_async(args: argparse.Namespace) -> None:
    worker = build(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(worker.run(stop))
    if args.ready_file:
        connected = asyncio.create_task(worker.connected.wait())
        await asyncio.wait({runner, connected}, return_when=asyncio.FIRST_COMPLETED)
        if connected.done():
            _write_ready(args.ready_file)
        else:
            connected.cancel()
    await runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker_proc")
    parser.add_argument("--server", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--builtin", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.worker_id} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
