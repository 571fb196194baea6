"""Unit tests for chronosched_server.transitions: result decisions and retry backoff."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chronosched_server import transitions
from chronosched_server.errors import FailedPrecondition
from chronosched_server.transitions import JobFacts, Outcome, backoff, decide_complete, decide_fail

STATES = ["PENDING", "READY", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"]
CURRENT = 2  # the job's attempt in every case below
MAX_ATTEMPTS = 3

# attempt given by the caller: None (unfenced), the current attempt, or a stale one.
ATTEMPTS = [pytest.param(None, id="unfenced"), pytest.param(CURRENT, id="current")]
STALE = [pytest.param(1, id="stale-older"), pytest.param(3, id="stale-newer")]

# What an unfenced or current-attempt result does in each state; a str is the
# FailedPrecondition reason.
COMPLETE_OUTCOME: dict[str, Outcome | str] = {
    "PENDING": "JOB_PENDING",
    "READY": Outcome.SUCCEED,
    "RUNNING": Outcome.SUCCEED,
    "SUCCEEDED": Outcome.ACK,
    "FAILED": "JOB_FAILED",
    "CANCELLED": "JOB_CANCELLED",
    "SKIPPED": "JOB_SKIPPED",
}


def expected_fail(state: str, non_retryable: bool) -> Outcome | str:
    """What an unfenced or current-attempt failure does at attempt 2 of 3."""
    if state in ("READY", "RUNNING"):
        return Outcome.FAIL if non_retryable else Outcome.RETRY
    if state == "FAILED":
        return Outcome.ACK
    return f"JOB_{state}"


def job(state: str, attempt: int = CURRENT, max_attempts: int = MAX_ATTEMPTS) -> JobFacts:
    return JobFacts(state=state, attempt=attempt, max_attempts=max_attempts)


def test_state_sets_cover_every_state_once() -> None:
    assert set(transitions.ACTIVE) == {"READY", "RUNNING"}
    assert set(transitions.TERMINAL) == {"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"}
    assert sorted([*transitions.ACTIVE, *transitions.TERMINAL, "PENDING"]) == sorted(STATES)


@pytest.mark.parametrize("attempt", ATTEMPTS)
@pytest.mark.parametrize("state", STATES)
def test_decide_complete(state: str, attempt: int | None) -> None:
    expected = COMPLETE_OUTCOME[state]
    if isinstance(expected, Outcome):
        assert decide_complete(job(state), attempt) is expected
    else:
        with pytest.raises(FailedPrecondition) as caught:
            decide_complete(job(state), attempt)
        assert caught.value.reason == expected


@pytest.mark.parametrize("non_retryable", [False, True])
@pytest.mark.parametrize("attempt", ATTEMPTS)
@pytest.mark.parametrize("state", STATES)
def test_decide_fail(state: str, attempt: int | None, non_retryable: bool) -> None:
    expected = expected_fail(state, non_retryable)
    if isinstance(expected, Outcome):
        assert decide_fail(job(state), attempt, non_retryable=non_retryable) is expected
    else:
        with pytest.raises(FailedPrecondition) as caught:
            decide_fail(job(state), attempt, non_retryable=non_retryable)
        assert caught.value.reason == expected


@pytest.mark.parametrize("stale", STALE)
@pytest.mark.parametrize("state", STATES)
def test_stale_attempt_is_fenced_before_the_state_check_on_complete(state: str, stale: int) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        decide_complete(job(state), stale)
    err = caught.value
    assert err.reason == "STALE_ATTEMPT"
    assert err.message == f"stale attempt {stale}: the job is at attempt {CURRENT}"
    assert err.metadata == {"attempt": str(stale), "current_attempt": str(CURRENT)}


@pytest.mark.parametrize("non_retryable", [False, True])
@pytest.mark.parametrize("stale", STALE)
@pytest.mark.parametrize("state", STATES)
def test_stale_attempt_is_fenced_before_the_state_check_on_fail(
    state: str, stale: int, non_retryable: bool
) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        decide_fail(job(state), stale, non_retryable=non_retryable)
    assert caught.value.reason == "STALE_ATTEMPT"
    assert caught.value.metadata == {"attempt": str(stale), "current_attempt": str(CURRENT)}


@pytest.mark.parametrize("state", ["READY", "RUNNING"])
def test_fail_on_last_attempt_fails_for_good(state: str) -> None:
    last = job(state, attempt=3, max_attempts=3)
    assert decide_fail(last, 3, non_retryable=False) is Outcome.FAIL
    assert decide_fail(last, None, non_retryable=False) is Outcome.FAIL
    # An attempt counter past the limit (e.g. the limit lowered) still fails.
    assert decide_fail(job(state, attempt=5, max_attempts=3), 5, non_retryable=False) is Outcome.FAIL
    # One attempt allowed: the first failure is final.
    assert decide_fail(job(state, attempt=1, max_attempts=1), 1, non_retryable=False) is Outcome.FAIL


def test_fail_before_last_attempt_retries() -> None:
    assert decide_fail(job("RUNNING", attempt=2, max_attempts=3), 2, non_retryable=False) is Outcome.RETRY
    assert decide_fail(job("RUNNING", attempt=1, max_attempts=100), 1, non_retryable=False) is Outcome.RETRY


def test_rejection_messages() -> None:
    with pytest.raises(FailedPrecondition) as pending:
        decide_complete(job("PENDING"), None)
    assert pending.value.message == (
        "cannot complete the job: its parents have not all succeeded or its DAG has not started"
    )
    with pytest.raises(FailedPrecondition) as cancelled:
        decide_fail(job("CANCELLED"), None, non_retryable=False)
    assert cancelled.value.message == "cannot fail the job: it is already CANCELLED"
    with pytest.raises(FailedPrecondition) as failed:
        decide_complete(job("FAILED"), CURRENT)
    assert failed.value.message == "cannot complete the job: it is already FAILED"
    with pytest.raises(FailedPrecondition) as succeeded:
        decide_fail(job("SUCCEEDED"), CURRENT, non_retryable=True)
    assert succeeded.value.reason == "JOB_SUCCEEDED"
    assert succeeded.value.message == "cannot fail the job: it is already SUCCEEDED"


SECOND = timedelta(seconds=1)
CAP = timedelta(seconds=300)


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    list(zip(range(1, 13), [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300], strict=True)),
)
def test_backoff_doubles_up_to_the_cap(attempt: int, seconds: int) -> None:
    assert backoff(attempt, SECOND, CAP, 2.0) == timedelta(seconds=seconds)


def test_backoff_large_attempts_do_not_overflow() -> None:
    assert backoff(100, SECOND, CAP, 2.0) == CAP
    assert backoff(10_000, SECOND, CAP, 10.0) == CAP
    assert backoff(10**9, SECOND, CAP, 2.0) == CAP
    assert backoff(5000, SECOND, timedelta.max, 2.0) == timedelta.max


def test_backoff_fractional_multiplier_and_initial() -> None:
    assert backoff(3, timedelta(milliseconds=500), CAP, 1.5) == timedelta(microseconds=1_125_000)
    assert backoff(100, SECOND, CAP, 1.0) == SECOND


def test_backoff_initial_above_cap_is_capped() -> None:
    assert backoff(1, timedelta(seconds=600), CAP, 2.0) == CAP


def test_backoff_zero_initial_stays_zero() -> None:
    assert backoff(50, timedelta(0), CAP, 2.0) == timedelta(0)


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_attempt_below_one_raises(attempt: int) -> None:
    with pytest.raises(ValueError, match=r"^attempt numbers start at 1$"):
        backoff(attempt, SECOND, CAP, 2.0)
