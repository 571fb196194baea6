"""Job state transitions for results (complete/fail): pure decisions, no I/O.

The storage layer locks the job row, asks `decide_*` what to do, and applies
the answer in the same transaction. Keeping the rules here makes the fencing
and idempotency cases unit-testable without a database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from chronosched_server.errors import FailedPrecondition

ACTIVE = frozenset({"READY", "RUNNING"})
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"})


class Outcome(enum.Enum):
    SUCCEED = "succeed"  # job -> SUCCEEDED, children unlocked
    RETRY = "retry"  # job -> READY with attempt + 1 after backoff
    FAIL = "fail"  # job -> FAILED, descendants SKIPPED, DAG FAILED
    ACK = "ack"  # duplicate of an applied result: change nothing


@dataclass(frozen=True)
class JobFacts:
    """What the decision needs to know about the locked job row."""

    state: str
    attempt: int
    max_attempts: int
    # The worker the current attempt was leased to ("" if none ever was).
    worker_id: str = ""


def _check_fence(job: JobFacts, attempt: int | None, by: str | None) -> None:
    """`attempt` fences a result to one attempt; `by` (a worker stream's
    results) also to the worker that attempt was leased to, so a stream
    cannot settle an attempt another worker holds. A worker's resent result
    of an attempt it held still passes: the lease's worker_id stays on the
    job until the attempt ends."""
    if attempt is not None and attempt != job.attempt:
        raise FailedPrecondition(
            f"stale attempt {attempt}: the job is at attempt {job.attempt}",
            reason="STALE_ATTEMPT",
            metadata={"attempt": str(attempt), "current_attempt": str(job.attempt)},
        )
    if by is not None and by != job.worker_id:
        raise FailedPrecondition(
            f"attempt {job.attempt} of the job is not leased to worker {by}",
            reason="JOB_NOT_HELD",
            metadata={"attempt": str(job.attempt)},
        )


def _reject_state(job: JobFacts, verb: str) -> FailedPrecondition:
    if job.state == "PENDING":
        why = "its parents have not all succeeded or its DAG has not started"
    else:
        why = f"it is already {job.state}"
    return FailedPrecondition(f"cannot {verb} the job: {why}", reason=f"JOB_{job.state}")


def decide_complete(job: JobFacts, attempt: int | None, *, by: str | None = None) -> Outcome:
    _check_fence(job, attempt, by)
    if job.state in ACTIVE:
        return Outcome.SUCCEED
    if job.state == "SUCCEEDED":
        return Outcome.ACK
    raise _reject_state(job, "complete")


def decide_fail(job: JobFacts, attempt: int | None, *, non_retryable: bool, by: str | None = None) -> Outcome:
    _check_fence(job, attempt, by)
    if job.state in ACTIVE:
        if non_retryable or job.attempt >= job.max_attempts:
            return Outcome.FAIL
        return Outcome.RETRY
    if job.state == "FAILED":
        return Outcome.ACK
    raise _reject_state(job, "fail")


def backoff(attempt: int, initial: timedelta, maximum: timedelta, multiplier: float) -> timedelta:
    """Delay before attempt `attempt + 1`: initial * multiplier^(attempt-1), capped."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    # Capping the exponent keeps the float finite for any attempt number.
    seconds = initial.total_seconds() * multiplier ** min(attempt - 1, 100)
    if seconds >= maximum.total_seconds():
        return maximum
    return timedelta(seconds=seconds)


def dag_state_after(state: str, remaining: int, failed: bool) -> str:
    """A DAG's state once some of its jobs finished: `remaining` unfinished
    jobs are left, and `failed` says one of them failed for good. Only a
    RUNNING DAG moves. The database applies the same rule in SQL
    (chronosched_dag_state, migration 0004); a test holds the two equal."""
    if state != "RUNNING":
        return state
    if failed:
        return "FAILED"
    if remaining == 0:
        return "SUCCEEDED"
    return state
