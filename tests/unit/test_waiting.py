"""The pure decision behind Job.waiting: each reason, and their precedence."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from chronosched_server.waiting import Capacity, Facts, Parent, Pending, Reason, explain

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class J:
    state: str
    kind: str = "noop"
    attempt: int = 1
    due_time: datetime | None = None
    dag_id: uuid.UUID | None = None
    job_id: uuid.UUID = field(default_factory=uuid.uuid4)


def facts(job: J, *, pending: Pending | None = None, **capacity: Capacity) -> Facts:
    return Facts(now=NOW, pending={job.job_id: pending} if pending else {}, capacity=capacity)


@pytest.mark.parametrize("state", ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"])
def test_only_pending_and_ready_jobs_wait(state: str) -> None:
    job = J(state)
    assert explain(job, facts(job, noop=Capacity(0, 0, 0))) is None


def test_a_dag_not_started_comes_before_its_parents() -> None:
    job = J("PENDING")
    p = Pending("PENDING", 2, [Parent("a", uuid.uuid4(), "PENDING")])
    got = explain(job, facts(job, pending=p))
    assert got is not None and got.reason is Reason.DAG_NOT_STARTED
    assert "start=false" in got.message


def test_unfinished_parents_are_counted_and_the_first_named() -> None:
    job = J("PENDING")
    shown = [Parent("a", uuid.uuid4(), "RUNNING"), Parent("b", uuid.uuid4(), "READY")]
    got = explain(job, facts(job, pending=Pending("RUNNING", 2, shown)))
    assert got is not None and got.reason is Reason.PARENTS
    assert got.unfinished_parents == 2 and list(got.parents) == shown
    assert got.message == "waiting on 2 unfinished parents: a (RUNNING), b (READY)"
    more = explain(job, facts(job, pending=Pending("RUNNING", 7, shown)))
    assert more is not None and more.message.endswith("b (READY) and 5 more")
    one = explain(job, facts(job, pending=Pending("RUNNING", 1, shown[:1])))
    assert one is not None and one.message == "waiting on 1 unfinished parent: a (RUNNING)"


def test_a_pending_job_with_nothing_pending_is_explained_as_ready() -> None:
    job = J("PENDING")
    got = explain(job, facts(job, pending=Pending("RUNNING", 0), noop=Capacity(1, 4, 1)))
    assert got is not None and got.reason is Reason.DISPATCHING


def test_not_due_after_parents_or_in_backoff() -> None:
    later = NOW + timedelta(minutes=5)
    delayed = J("READY", due_time=later)
    got = explain(delayed, facts(delayed))
    assert got is not None and got.reason is Reason.NOT_DUE
    assert got.due_time == later and got.retry_after_attempt == 0
    assert got.message == "not due before 2026-11-30T12:05:00.000Z (a delay after its parents)"
    retry = J("READY", attempt=3, due_time=later)
    got = explain(retry, facts(retry))
    assert got is not None and got.retry_after_attempt == 2
    assert "backing off after attempt 2 failed" in got.message


def test_a_due_job_is_judged_by_the_workers_serving_its_kind() -> None:
    job = J("READY", kind="comand", due_time=NOW)
    none = explain(job, facts(job))
    assert none is not None and none.reason is Reason.NO_WORKER and none.kind == "comand"
    assert none.message == "no connected worker serves kind comand in this namespace"
    full = explain(job, facts(job, comand=Capacity(2, 4, 4)))
    assert full is not None and full.reason is Reason.WORKERS_FULL
    assert (full.slots_in_use, full.slots_total) == (4, 4)
    assert "(4 of 4 slots in use)" in full.message
    free = explain(job, facts(job, comand=Capacity(2, 4, 3)))
    assert free is not None and free.reason is Reason.DISPATCHING
    assert (free.slots_in_use, free.slots_total) == (3, 4)


def test_a_worker_with_no_slots_is_full() -> None:
    job = J("READY")
    got = explain(job, facts(job, noop=Capacity(1, 0, 0)))
    assert got is not None and got.reason is Reason.WORKERS_FULL


def test_every_reason_has_a_proto_value() -> None:
    from chronosched.v1 import job_pb2

    names = set(job_pb2.Waiting.Reason.keys()) - {"REASON_UNSPECIFIED"}
    assert names == {"REASON_" + r.value for r in Reason}
