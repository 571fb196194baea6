"""Results that must outlive the worker process.

A result the server has not acknowledged yet lives only in the worker's
memory; if the worker dies then (SIGKILL, OOM, a crash), the run's outcome is
lost, the server takes the lease back when the worker reconnects under its id,
and a run that succeeded costs an attempt. With a spool the restarted worker
finds those results, holds their attempts in its Subscribe (so nothing is
taken back) and resends them.

One file per result, named by job and attempt, written to a temporary name and
renamed into place, so a reader sees a whole result or none. No fsync: the
spool protects against the worker process dying, which leaves the page cache
intact; a machine that loses power also kills every job the worker ran.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

from chronosched.v1 import worker_pb2

log = logging.getLogger("chronosched.worker")

# Job ids are UUIDs; anything else a server might send is kept out of paths.
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME = re.compile(r"(?P<job_id>[A-Za-z0-9_-]{1,64})-(?P<attempt>[0-9]+)\.result")

JobKey = tuple[str, int]


class Spool:
    """Unacknowledged results of one worker id, kept in `directory/worker_id`."""

    def __init__(self, directory: str | os.PathLike[str], worker_id: str) -> None:
        self.path = Path(directory) / worker_id
        self.path.mkdir(parents=True, exist_ok=True)

    def _file(self, key: JobKey) -> Path:
        return self.path / f"{key[0]}-{key[1]}.result"

    def save(self, result: worker_pb2.JobResult) -> None:
        key = (result.job.job_id, result.job.attempt)
        if not _JOB_ID.fullmatch(key[0]):
            raise ValueError(f"job id {key[0][:80]!r} cannot name a file")
        target = self._file(key)
        temporary = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
        temporary.write_bytes(result.SerializeToString())
        temporary.replace(target)

    def drop(self, key: JobKey) -> None:
        self._file(key).unlink(missing_ok=True)

    def load(self) -> dict[JobKey, worker_pb2.JobResult]:
        """Every spooled result; leftovers of interrupted writes are removed."""
        found: dict[JobKey, worker_pb2.JobResult] = {}
        for entry in sorted(self.path.iterdir()):
            match = _NAME.fullmatch(entry.name)
            if match is None:
                if entry.name.endswith(".tmp"):
                    entry.unlink(missing_ok=True)
                continue
            result = worker_pb2.JobResult()
            try:
                result.ParseFromString(entry.read_bytes())
            except Exception as exc:  # a damaged file must not stop the worker
                log.warning("ignoring unreadable spooled result %s: %s", entry, exc)
                entry.unlink(missing_ok=True)
                continue
            key = (result.job.job_id, result.job.attempt)
            if key != (match["job_id"], int(match["attempt"])):
                log.warning("ignoring spooled result %s: it names %s#%d", entry, *key)
                continue
            found[key] = result
        return found
