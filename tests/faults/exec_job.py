"""A `command` job for fault tests that records its own run.

    python -m tests.faults.exec_job LOG LOCK_DIR SECONDS

It appends to the ExecutionLog at LOG (start, a tick every TICK_S while it
works, end) under the job id and attempt the command kind passes in its
environment, and holds an exclusive flock on LOCK_DIR/<job id>.lock while it
runs. The kernel drops a flock the moment its holder dies, so a run that finds
the lock taken has caught a second live run of the same job, exactly: it
appends a line to LOCK_DIR/overlaps.jsonl and fails without working.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from tests.faults.invariants import TICK_S, ExecutionLog

OVERLAP_EXIT = 3


def main(argv: list[str]) -> int:
    log_path, lock_dir, seconds = Path(argv[0]), Path(argv[1]), float(argv[2])
    job_id = os.environ["CHRONOSCHED_JOB_ID"]
    attempt = int(os.environ["CHRONOSCHED_JOB_ATTEMPT"])
    worker = f"worker-pid-{os.getppid()}"
    lock = os.open(lock_dir / f"{job_id}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        record = {"job_id": job_id, "attempt": attempt, "pid": os.getpid(), "at": time.time()}
        with (lock_dir / "overlaps.jsonl").open("a") as out:
            out.write(json.dumps(record) + "\n")
        return OVERLAP_EXIT
    log = ExecutionLog(log_path)
    run = log.record_start(job_id, attempt, worker)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(TICK_S, left))
        log.record_tick(run)
    result = {"job_id": job_id, "attempt": attempt}
    # The stored result is the command kind's (exit code, output tails), so none is recorded here.
    log.record_end(run, "success")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
