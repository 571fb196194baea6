"""A real worker process for the infrastructure fault tests.

    python -m tests.faults.infra_worker --server HOST:PORT --namespace NS \
        --worker-id ID --exec-log PATH --acks PATH [--concurrency N] [--grace S]

It runs the SDK's `Worker` with one handler, kind `fault`, that records every
attempt in the shared `ExecutionLog` (start and end) and whose behaviour the
job's payload decides:

    {"sleep_ms": 30}                 sleep that long, then succeed
    {"wait_for": "/path/file"}       wait until the file exists (the test
                                     decides when the attempt may end)

The result is `{"worker": ID, "attempt": "N", "run": RUN_ID}` (strings only, so
the JSON round trip through protobuf's Struct cannot change it), recorded in
the log as well so the checker can tell whose result the database kept.

Every ResultAck the server sends is appended to the `--acks` JSON-lines file
with the result it acknowledges: the test's list of acknowledged writes, and
its evidence of rejected late results.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chronosched.v1 import worker_pb2
from chronosched_worker import JobContext, Worker
from chronosched_worker.runner import struct_to_dict
from tests.faults.invariants import ExecutionLog, work

KIND = "fault"
WAIT_LIMIT_S = 120.0


class RecordingWorker(Worker):
    """A Worker that appends every ResultAck it receives to a file."""

    def __init__(self, server: str, *, acks_path: Path, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.acks_path = acks_path

    def _on_ack(self, ack: worker_pb2.ResultAck) -> None:
        sent = self._unacked.get((ack.job.job_id, ack.job.attempt))
        record: dict[str, Any] = {
            "job_id": ack.job.job_id,
            "attempt": ack.job.attempt,
            "accepted": ack.accepted,
            "reason": ack.reason,
            "worker": self.worker_id,
            "time": time.time(),
            # None when this ack repeats one already received.
            "success": None if sent is None else sent.success,
            "result": None if sent is None or not sent.success else struct_to_dict(sent.result),
        }
        line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()
        fd = os.open(self.acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        super()._on_ack(ack)


def build(argv: Sequence[str] | None = None) -> RecordingWorker:
    parser = argparse.ArgumentParser(prog="infra_worker")
    parser.add_argument("--server", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--exec-log", type=Path, required=True)
    parser.add_argument("--acks", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--grace", type=float, default=10.0)
    args = parser.parse_args(argv)

    worker_id: str = args.worker_id
    log = ExecutionLog(args.exec_log)
    worker = RecordingWorker(
        args.server,
        acks_path=args.acks,
        worker_id=worker_id,
        namespaces=[args.namespace],
        concurrency=args.concurrency,
        grace_s=args.grace,
    )

    @worker.handler(KIND)
    async def fault(ctx: JobContext) -> dict[str, Any]:
        with log.execution(ctx.job_id, ctx.attempt, worker_id) as run:
            wait_for = ctx.payload.get("wait_for")
            if isinstance(wait_for, str):
                await work(
                    run, ctx.cancelled, WAIT_LIMIT_S, until=functools.partial(os.path.exists, wait_for)
                )
            sleep_ms = ctx.payload.get("sleep_ms", 0)
            if isinstance(sleep_ms, int | float) and sleep_ms > 0:
                await work(run, ctx.cancelled, sleep_ms / 1000)
            result: dict[str, Any] = {"worker": worker_id, "attempt": str(ctx.attempt), "run": run.run_id}
            run.result = result
            return result

    return worker


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build(argv).run_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
