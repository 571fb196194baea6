"""Job.waiting through the API: GetJob, ListJobs and ListDagJobs say why a
PENDING or READY job has not started (docs/operations.md, "Why is this job
not running?")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2

from chronosched.v1 import dag_pb2, definition_pb2, job_pb2, worker_pb2_grpc
from tests.support import grpc_helpers
from tests.support.builders import dag, dag_jobs, definition, namespace
from tests.support.server import Stubs
from tests.support.waiting import poll

pytestmark = pytest.mark.timeout(60)

W = job_pb2.Waiting


class RawWorker(grpc_helpers.RawWorker):
    def __init__(self, api: Stubs, **subscribe: object):
        super().__init__(worker_pb2_grpc.WorkerServiceStub(api.channel), **subscribe)


async def connected(api: Stubs, *worker_ids: str) -> None:
    """Wait until exactly these workers' streams are registered on the
    server, then publish them (rather than waiting for the refresh)."""
    dispatcher = api.server.dispatcher

    async def registered() -> bool:
        return {s.worker_id for s in dispatcher.streams} == set(worker_ids)

    await poll(registered, within=5, what=f"streams of {sorted(worker_ids)}")
    await dispatcher.presence.sync()


async def get(api: Stubs, ns: str, job_id: str) -> job_pb2.Job:
    return await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=ns, job_id=job_id))


async def tick(api: Stubs, ns: str, def_id: str) -> job_pb2.Job:
    return await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=def_id))


async def test_a_job_of_a_kind_nobody_serves_says_so_until_a_worker_serves_it(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, kind="comand")
    job = await tick(api, ns, d.def_id)
    got = await get(api, ns, job.job_id)
    assert got.state == job_pb2.Job.STATE_READY
    assert got.waiting.reason == W.REASON_NO_WORKER and got.waiting.kind == "comand"
    assert got.waiting.message == "no connected worker serves kind comand in this namespace"
    # A worker of another kind, or of this kind in another namespace, does not count.
    other = RawWorker(api, worker_id="other", namespaces=[ns], kinds=["command"], slots=4)
    await other.start()
    elsewhere = RawWorker(api, worker_id="elsewhere", namespaces=["team-b"], kinds=["comand"], slots=4)
    await elsewhere.start()
    await connected(api, "other", "elsewhere")
    assert (await get(api, ns, job.job_id)).waiting.reason == W.REASON_NO_WORKER
    # The right worker takes the job; nothing waits any more.
    worker = RawWorker(api, worker_id="right", namespaces=[ns], kinds=["comand"], slots=1)
    await worker.start()
    assignment = await worker.next("assignment")
    assert assignment.job.job_id == job.job_id
    ran = await get(api, ns, job.job_id)
    assert ran.state == job_pb2.Job.STATE_RUNNING and not ran.HasField("waiting")
    # A second job finds the only serving worker full.
    second = await tick(api, ns, d.def_id)
    await connected(api, "other", "elsewhere", "right")
    full = (await get(api, ns, second.job_id)).waiting
    assert full.reason == W.REASON_WORKERS_FULL
    assert (full.slots_in_use, full.slots_total) == (1, 1)
    assert full.message == "every worker serving kind comand is full (1 of 1 slots in use)"
    for w in (other, elsewhere, worker):
        await w.close()


async def test_a_dag_job_names_its_unfinished_parents_and_a_pending_dag_says_so(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    held = await dag(api, ns, d.def_id, ["a", "b", "c"], [("a", "c"), ("b", "c")], start=False)
    jobs = await dag_jobs(api, ns, held.dag_id)
    assert {k: j.waiting.reason for k, j in jobs.items()} == dict.fromkeys("abc", W.REASON_DAG_NOT_STARTED)
    await api.dags.StartDag(dag_pb2.StartDagRequest(namespace_id=ns, dag_id=held.dag_id))
    jobs = await dag_jobs(api, ns, held.dag_id)
    c = jobs["c"].waiting
    assert c.reason == W.REASON_PARENTS and c.unfinished_parents == 2
    assert [(p.key, p.job_id, p.state) for p in c.parents] == [
        ("a", jobs["a"].job_id, job_pb2.Job.STATE_READY),
        ("b", jobs["b"].job_id, job_pb2.Job.STATE_READY),
    ]
    assert c.message == "waiting on 2 unfinished parents: a (READY), b (READY)"
    assert jobs["a"].waiting.reason == W.REASON_NO_WORKER
    # ListJobs and GetJob carry the same explanation.
    listed = await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, dag_id=held.dag_id))
    assert {j.key: j.waiting for j in listed.jobs}["c"] == c
    assert (await get(api, ns, jobs["c"].job_id)).waiting == c
    # One parent done: one left, named.
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(namespace_id=ns, job_id=jobs["a"].job_id))
    c = (await get(api, ns, jobs["c"].job_id)).waiting
    assert c.unfinished_parents == 1 and [p.key for p in c.parents] == ["b"]


async def test_only_the_first_three_parents_are_named(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    keys = ["p1", "p2", "p3", "p4", "p5"]
    made = await dag(api, ns, d.def_id, [*keys, "z"], [(k, "z") for k in keys])
    z = (await dag_jobs(api, ns, made.dag_id))["z"].waiting
    assert z.unfinished_parents == 5 and [p.key for p in z.parents] == ["p1", "p2", "p3"]
    assert z.message.endswith("p3 (READY) and 2 more")


async def test_a_retrying_job_shows_its_next_attempt_time(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, max_attempts=3, backoff_initial=duration_pb2.Duration(seconds=3600))
    job = await tick(api, ns, d.def_id)
    failed_at = datetime.now(UTC)
    await api.jobs.FailJob(job_pb2.FailJobRequest(namespace_id=ns, job_id=job.job_id, error="boom"))
    got = await get(api, ns, job.job_id)
    assert got.state == job_pb2.Job.STATE_READY and got.attempt == 2
    w = got.waiting
    assert w.reason == W.REASON_NOT_DUE and w.retry_after_attempt == 1
    assert w.due_time == got.due_time
    # Backoff is jittered around its initial value; an hour, give or take.
    assert timedelta(minutes=30) < w.due_time.ToDatetime(UTC) - failed_at < timedelta(hours=2)
    assert "backing off after attempt 1 failed" in w.message


async def test_a_delay_after_parents_shows_the_due_time(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns, delay_after_parents=duration_pb2.Duration(seconds=3600))
    made = await dag(api, ns, d.def_id, ["a", "b"], [("a", "b")])
    jobs = await dag_jobs(api, ns, made.dag_id)
    await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(namespace_id=ns, job_id=jobs["a"].job_id))

    async def b_ready() -> job_pb2.Job | None:
        b = await get(api, ns, jobs["b"].job_id)
        return b if b.state == job_pb2.Job.STATE_READY else None

    b = await poll(b_ready, within=5, what="b to become READY")
    assert b.waiting.reason == W.REASON_NOT_DUE and b.waiting.retry_after_attempt == 0
    assert b.waiting.due_time == b.due_time
    assert "a delay after its parents" in b.waiting.message


async def test_a_definition_of_a_kind_nobody_served_lately_is_made_with_a_warning(
    api: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    ns = await namespace(api)
    with caplog.at_level("WARNING", logger="chronosched_server.api.definitions"):
        first = await definition(api, ns, name="typo", kind="comand")
        again = await definition(api, ns, name="typo", kind="comand")
    assert first.version == 1 and again.version == 2
    expected = (
        f"no worker has served kind comand in namespace {ns} in the last 24 hours: "
        "its jobs will wait (READY) until a worker with a comand handler connects"
    )
    assert list(first.warnings) == [expected] and list(again.warnings) == [expected]
    # Logged once for the (namespace, kind), not once per version.
    assert [r.getMessage() for r in caplog.records] == [expected]
    # Stored definitions carry no warning: it belongs to the response.
    got = await api.definitions.GetDefinition(
        definition_pb2.GetDefinitionRequest(namespace_id=ns, def_id=first.def_id)
    )
    assert list(got.warnings) == []
    # Once a worker has served the kind here, even after it left, no warning.
    worker = RawWorker(api, worker_id="fixed", namespaces=[ns], kinds=["comand"], slots=1)
    await worker.start()
    await connected(api, "fixed")
    assert list((await definition(api, ns, name="typo", kind="comand")).warnings) == []
    await worker.close()
    await connected(api)
    assert list((await definition(api, ns, name="typo", kind="comand")).warnings) == []
    # Another kind in the same namespace still warns.
    assert len((await definition(api, ns, name="other", kind="comand2")).warnings) == 1


async def test_a_worker_serving_every_namespace_counts_for_each(api: Stubs) -> None:
    ns = await namespace(api)
    worker = RawWorker(api, worker_id="everywhere", all_namespaces=True, kinds=["shared"], slots=1)
    await worker.start()
    await connected(api, "everywhere")
    assert list((await definition(api, ns, kind="shared")).warnings) == []
    other = await namespace(api, "team-c")
    assert list((await definition(api, other, kind="shared")).warnings) == []
    await worker.close()
