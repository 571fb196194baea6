"""The blocking Client against the real in-process server: every method,
the values it returns, errors, pages, retries, deadlines, TLS and the token."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, timedelta

import grpc
import pytest

from chronosched import (
    AlreadyExists,
    ChronoschedError,
    Client,
    Dag,
    DagState,
    DeadlineExceeded,
    Dependency,
    FailedPrecondition,
    InvalidArgument,
    JobRun,
    JobSpec,
    JobState,
    MisfirePolicy,
    Namespace,
    NotFound,
    OtherError,
    OverlapPolicy,
    Page,
    PermissionDenied,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
    Violation,
)
from chronosched.errors import error_class
from chronosched.v1 import dag_pb2
from tests.client.conftest import Certificate, Proxy, Running

pytestmark = pytest.mark.timeout(60)

NS = "team-a"


# --- every method ---------------------------------------------------------------


def test_namespaces_and_admin_round_trip(server: Running) -> None:
    with Client(server.target) as client:
        health = client.healthz()
        assert health.status == "SERVING" and health.version
        created = client.create_namespace(NS, "demo")
        assert created == Namespace(NS, "demo", created.create_time)
        assert created.create_time.tzinfo is UTC
        assert client.get_namespace(NS) == created
        client.create_namespace("team-b")
        assert [n.namespace_id for n in client.list_namespaces()] == [NS, "team-b"]
        client.delete_namespace("team-b")
        with pytest.raises(NotFound):
            client.get_namespace("team-b")
        pruned = client.prune()
        assert (pruned.dags_pruned, pruned.jobs_pruned, pruned.dependencies_pruned) == (0, 0, 0)


def test_definitions_and_schedules_round_trip(server: Running) -> None:
    with Client(server.target) as client:
        client.create_namespace(NS)
        v1 = client.create_definition(
            NS,
            "say",
            "manual",
            {"greeting": "hi", "n": 1},
            max_attempts=2,
            backoff_initial=timedelta(seconds=30),
            backoff_multiplier=3.0,
            default_priority=5,
            delay_after_parents=1.5,
            execution_timeout=timedelta(minutes=5),
        )
        assert (v1.name, v1.version, v1.kind, v1.ref) == ("say", 1, "manual", "say@1")
        assert v1.payload_template == {"greeting": "hi", "n": 1}
        assert isinstance(v1.payload_template["n"], int)
        assert (v1.max_attempts, v1.backoff_multiplier, v1.default_priority) == (2, 3.0, 5)
        assert v1.backoff_initial == timedelta(seconds=30)
        assert v1.delay_after_parents == timedelta(seconds=1.5)
        assert v1.execution_timeout == timedelta(minutes=5)
        assert v1.misfire_policy is MisfirePolicy.SKIP and v1.overlap_policy is OverlapPolicy.ALLOW
        assert v1.cron_spec is None and v1.next_fire_times == () and not v1.is_retired

        v2 = client.create_definition(
            NS,
            "say",
            "manual",
            cron_spec="0 0 * * *",
            time_zone="Europe/Paris",
            misfire_policy=MisfirePolicy.FIRE_ONCE,
            overlap_policy=OverlapPolicy.FORBID,
            starting_deadline=120,
        )
        assert v2.version == 2 and v2.cron_spec == "0 0 * * *" and v2.time_zone == "Europe/Paris"
        assert v2.misfire_policy is MisfirePolicy.FIRE_ONCE and v2.overlap_policy is OverlapPolicy.FORBID
        assert v2.starting_deadline == timedelta(minutes=2)
        assert len(v2.next_fire_times) == 5 and all(t.tzinfo is UTC for t in v2.next_fire_times)

        assert client.get_definition(NS, v1.def_id) == v1
        assert [d.version for d in client.definition_versions(NS, "say")] == [1, 2]
        assert [d.def_id for d in client.list_definitions(NS)] == [v1.def_id, v2.def_id]
        assert client.resolve_definition(NS, "say").def_id == v2.def_id
        assert client.resolve_definition(NS, "say@1").def_id == v1.def_id
        assert client.resolve_definition(NS, v1.def_id).def_id == v1.def_id

        schedule = client.get_schedule(NS, "say")
        assert (schedule.def_id, schedule.def_version, schedule.paused) == (v2.def_id, 2, False)
        assert schedule.cron_spec == "0 0 * * *" and len(schedule.next_fire_times) == 5
        paused = client.pause_schedule(NS, "say")
        assert paused.paused and paused.pause_time is not None and paused.next_fire_times == ()
        resumed = client.resume_schedule(NS, "say")
        assert not resumed.paused and resumed.resume_time is not None
        assert list(client.list_fires(NS, v2.def_id)) == []
        assert client.list_fires_page(NS, v1.def_id) == Page(())

        job = client.tick(NS, v1.def_id, {"n": 2})
        assert job.dag_id is None and job.state is JobState.READY and job.def_version == 1
        assert job.payload == {"greeting": "hi", "n": 2}
        assert job.result is None and job.error is None and job.worker_id is None
        assert client.get_job(NS, job.job_id).job_id == job.job_id

        retired = client.retire_definition(NS, v1.def_id)
        assert retired.is_retired and retired.retire_time is not None
        assert client.get_definition(NS, v2.def_id).is_retired  # the whole line
        assert client.get_schedule(NS, "say").retire_time is not None


def test_dags_and_jobs_round_trip(server: Running) -> None:
    with Client(server.target) as client:
        client.create_namespace(NS)
        d = client.create_definition(NS, "step", "manual", {"base": True}, max_attempts=2, default_priority=5)

        dag = client.create_dag(NS, "built")
        assert dag.state is DagState.PENDING and dag.start_time is None and dag.job_count == 0
        a, b = client.add_jobs(
            NS,
            dag.dag_id,
            [JobSpec("a", d.def_id), JobSpec("b", d.def_id, payload={"x": [1, 2.5, None, True]}, priority=7)],
        )
        assert (a.key, a.state, a.priority, a.attempt, a.dag_id) == ("a", JobState.PENDING, 5, 1, dag.dag_id)
        assert b.payload == {"base": True, "x": [1, 2.5, None, True]} and b.priority == 7
        (c,) = client.add_jobs(NS, dag.dag_id, [JobSpec("c", d.def_id)])
        assert client.add_dependency(NS, dag.dag_id, a.job_id, b.job_id) == Dependency(a.job_id, b.job_id)
        assert client.add_dependencies(NS, dag.dag_id, [(b.job_id, c.job_id)]) == [
            Dependency(b.job_id, c.job_id)
        ]
        assert set(client.list_dependencies(NS, dag.dag_id)) == {
            Dependency(a.job_id, b.job_id),
            Dependency(b.job_id, c.job_id),
        }

        started = client.start_dag(NS, dag.dag_id)
        assert started.state is DagState.RUNNING and started.start_time is not None
        got = client.get_dag(NS, dag.dag_id)
        assert (got.state, got.job_count, got.unfinished_job_count) == (DagState.RUNNING, 3, 3)
        assert [j.key for j in client.list_dag_jobs(NS, dag.dag_id, state=JobState.READY)] == ["a"]
        assert [j.key for j in client.list_dag_jobs(NS, dag.dag_id)] == ["a", "b", "c"]
        assert [j.key for j in client.list_jobs(NS, dag_id=dag.dag_id, state=JobState.PENDING)] == ["b", "c"]
        assert [j.key for j in client.list_jobs(NS, def_id=d.def_id)] == ["a", "b", "c"]

        done = client.complete_job(a.job_id, {"rows": 3}, attempt=1)
        assert done.state is JobState.SUCCEEDED and done.result == {"rows": 3}
        assert isinstance(done.result["rows"], int) and done.end_time is not None
        retried = client.fail_job(b.job_id, "boom")
        assert (retried.state, retried.attempt, retried.error) == (JobState.READY, 2, "boom")
        failed = client.fail_job(b.job_id, "boom again", attempt=2)
        assert failed.state is JobState.FAILED and failed.state.is_finished
        assert client.get_job(NS, c.job_id).state is JobState.SKIPPED
        ended = client.get_dag(NS, dag.dag_id)
        assert ended.state is DagState.FAILED and ended.is_settled and ended.end_time is not None
        assert [x.dag_id for x in client.list_dags(NS, state=DagState.FAILED)] == [dag.dag_id]

        other = client.create_dag(NS, "other", [JobSpec("x", d.def_id)], start=True)
        assert client.cancel_dag(NS, other.dag_id).state is DagState.CANCELLED
        assert [x.dag_id for x in client.list_dags(NS)] == [dag.dag_id, other.dag_id]
        client.delete_dag(NS, other.dag_id)
        with pytest.raises(NotFound):
            client.get_dag(NS, other.dag_id)

        pruned = client.prune(older_than=0, namespace_id=NS)
        assert (pruned.dags_pruned, pruned.jobs_pruned, pruned.dependencies_pruned) == (1, 3, 2)
        assert client.get_dag(NS, dag.dag_id).state is DagState.FAILED  # from history
        assert list(client.list_dags(NS)) == []


# --- values ---------------------------------------------------------------------


def test_states_are_readable_enums() -> None:
    assert [s for s in JobState if s.is_finished] == [
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.SKIPPED,
    ]
    assert [s for s in DagState if s.is_finished] == [DagState.SUCCEEDED, DagState.FAILED, DagState.CANCELLED]
    assert JobState(3) is JobState.RUNNING and JobState.RUNNING.name == "RUNNING"
    # Not an int: no accidental comparisons with wire numbers.
    assert JobState.RUNNING.value == 3 and not isinstance(JobState.RUNNING, int)
    # A state a newer server might add reads as UNSPECIFIED instead of failing the call.
    assert JobState(42) is JobState.UNSPECIFIED and DagState(42) is DagState.UNSPECIFIED


def test_values_are_frozen(server: Running) -> None:
    with Client(server.target) as client:
        ns = client.create_namespace(NS)
        with pytest.raises(AttributeError):
            ns.description = "changed"  # type: ignore[misc]
        dag = client.create_dag(NS)
        assert isinstance(dag, Dag)
        with pytest.raises(AttributeError):
            dag.state = DagState.RUNNING  # type: ignore[misc]


# --- pages ----------------------------------------------------------------------


def test_iterators_follow_page_tokens_and_pages_can_be_read_one_by_one(proxy: Proxy) -> None:
    names = [f"ns-{i}" for i in range(7)]
    with Client(proxy.target) as client:
        for name in names:
            client.create_namespace(name)
        assert [n.namespace_id for n in client.list_namespaces(page_size=3)] == names
        assert len(proxy.calls("ListNamespaces")) == 3  # 3 + 3 + 1

        first = client.list_namespaces_page(page_size=3)
        assert [n.namespace_id for n in first] == names[:3] and first.next_page_token
        rest = client.list_namespaces_page(page_size=5, page_token=first.next_page_token)
        assert [n.namespace_id for n in rest] == names[3:] and rest.next_page_token is None

        # An iterator asks for a page only when the previous one is used up.
        before = len(proxy.calls("ListNamespaces"))
        iterator = client.list_namespaces(page_size=3)
        assert len(proxy.calls("ListNamespaces")) == before
        assert next(iterator).namespace_id == "ns-0"
        assert len(proxy.calls("ListNamespaces")) == before + 1


# --- errors ---------------------------------------------------------------------


def test_errors_carry_code_reason_metadata_and_violations(server: Running) -> None:
    with Client(server.target) as client:
        client.create_namespace(NS)
        with pytest.raises(AlreadyExists) as exists:
            client.create_namespace(NS)
        assert exists.value.code is grpc.StatusCode.ALREADY_EXISTS
        assert exists.value.reason == "NAMESPACE_EXISTS" and exists.value.domain == "chronosched.dev"
        assert NS in exists.value.message

        missing_id = str(uuid.uuid4())
        with pytest.raises(NotFound) as missing:
            client.get_dag(NS, missing_id)
        assert missing.value.reason == "DAG_NOT_FOUND"
        assert missing.value.metadata == {"resource": "dag", "id": missing_id}

        d = client.create_definition(NS, "step", "manual")
        with pytest.raises(InvalidArgument) as bad:
            client.create_dag(
                NS, "x", [JobSpec("bad key", d.def_id), JobSpec("a", d.def_id), JobSpec("a", d.def_id)]
            )
        assert [(v.field, v.reason) for v in bad.value.violations] == [
            ("jobs[0].key", "INVALID_FORMAT"),
            ("jobs[2].key", "DUPLICATE"),
        ]
        assert all(isinstance(v, Violation) and v.description for v in bad.value.violations)
        assert bad.value.fields == ["jobs[0].key", "jobs[2].key"]

        with pytest.raises(FailedPrecondition) as cycle:
            client.create_dag(
                NS, "c", [JobSpec("a", d.def_id), JobSpec("b", d.def_id)], [("a", "b"), ("b", "a")]
            )
        assert cycle.value.reason == "CYCLE_DETECTED"
        assert str(cycle.value).startswith("FAILED_PRECONDITION [CYCLE_DETECTED]: ")

        with pytest.raises(FailedPrecondition) as not_empty:
            client.delete_namespace(NS)
        assert not_empty.value.reason == "NAMESPACE_NOT_EMPTY"
        assert not_empty.value.metadata["unretired_definitions"] == "1"

        # Resolved on the client, in the server's terms.
        with pytest.raises(NotFound) as no_version:
            client.resolve_definition(NS, "step@9")
        assert no_version.value.reason == "DEFINITION_NOT_FOUND"
        assert all(isinstance(e, ChronoschedError) for e in (exists.value, bad.value, no_version.value))


def test_every_status_code_has_its_class() -> None:
    expected = {
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
        grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
        grpc.StatusCode.UNAVAILABLE: Unavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
        grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
        grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
        grpc.StatusCode.INTERNAL: OtherError,
        grpc.StatusCode.ABORTED: OtherError,
    }
    assert {code: error_class(code) for code in expected} == expected


# --- request ids and retries ----------------------------------------------------


def test_creates_with_the_same_request_id_make_one_resource(server: Running) -> None:
    with Client(server.target) as client:
        client.create_namespace(NS)
        d = client.create_definition(NS, "step", "manual", request_id="def-1")
        assert client.create_definition(NS, "step", "manual", request_id="def-1").def_id == d.def_id
        assert [x.version for x in client.definition_versions(NS, "step")] == [1]

        spec = [JobSpec("a", d.def_id)]
        dag = client.create_dag(NS, "once", spec, start=True, request_id="dag-1")
        assert client.create_dag(NS, "once", spec, start=True, request_id="dag-1").dag_id == dag.dag_id
        assert [x.dag_id for x in client.list_dags(NS)] == [dag.dag_id]

        job = client.tick(NS, d.def_id, request_id="tick-1")
        assert client.tick(NS, d.def_id, request_id="tick-1").job_id == job.job_id
        runs = [JobRun(d.def_id), JobRun(d.def_id, {"n": 2}, priority=3)]
        batch = client.enqueue_jobs(NS, runs, request_id="batch-1")
        assert client.enqueue_jobs(NS, runs, request_id="batch-1") == batch and len(batch) == 2
        second = client.get_job(NS, batch[1])
        assert (second.dag_id, second.key, second.payload, second.priority) == (None, "step", {"n": 2}, 3)

        pending = client.create_dag(NS, "built")
        jobs = client.add_jobs(NS, pending.dag_id, [JobSpec("b", d.def_id)], request_id="jobs-1")
        again = client.add_jobs(NS, pending.dag_id, [JobSpec("b", d.def_id)], request_id="jobs-1")
        assert [j.job_id for j in again] == [j.job_id for j in jobs]
        assert len(list(client.list_dag_jobs(NS, pending.dag_id))) == 1
        standalone = [j for j in client.list_jobs(NS) if j.dag_id is None]
        assert [j.job_id for j in standalone] == [job.job_id, *batch]

        # Without a request_id each call is its own logical call.
        client.create_dag(NS, "twice")
        client.create_dag(NS, "twice")
        assert [x.name for x in client.list_dags(NS)].count("twice") == 2


def test_a_create_whose_answer_was_lost_is_retried_with_the_same_request_id(proxy: Proxy) -> None:
    with Client(proxy.target) as client:
        client.create_namespace(NS)
        d = client.create_definition(NS, "step", "manual")
        proxy.lose_after["CreateDag"] = 1  # the server creates it; the client hears UNAVAILABLE
        dag = client.create_dag(NS, "etl", [JobSpec("a", d.def_id)], start=True)
        sent = [dag_pb2.CreateDagRequest.FromString(s.request) for s in proxy.calls("CreateDag")]
        assert len(sent) == 2 and sent[0].request_id == sent[1].request_id
        assert uuid.UUID(sent[0].request_id).version == 4
        assert [x.dag_id for x in client.list_dags(NS)] == [dag.dag_id]

        client.create_dag(NS, "next")
        later = [dag_pb2.CreateDagRequest.FromString(s.request) for s in proxy.calls("CreateDag")]
        assert later[2].request_id != sent[0].request_id  # a fresh id per logical call


def test_reads_are_retried_a_bounded_number_of_times(proxy: Proxy) -> None:
    with Client(proxy.target) as client:
        client.create_namespace(NS)
        proxy.fail_before["GetNamespace"] = 2
        assert client.get_namespace(NS).namespace_id == NS
        assert len(proxy.calls("GetNamespace")) == 3

        proxy.fail_before["GetNamespace"] = 10
        with pytest.raises(Unavailable):
            client.with_options(retry=RetryPolicy(attempts=3)).get_namespace(NS)
        assert len(proxy.calls("GetNamespace")) == 3 + 3


def test_calls_that_are_unsafe_to_repeat_are_sent_once(proxy: Proxy) -> None:
    with Client(proxy.target) as client:
        proxy.fail_before["CreateNamespace"] = 1
        with pytest.raises(Unavailable):
            client.create_namespace(NS)
        assert len(proxy.calls("CreateNamespace")) == 1
        client.create_namespace(NS)

        d = client.create_definition(NS, "step", "manual")
        dag = client.create_dag(NS, "x", [JobSpec("a", d.def_id)])
        proxy.lose_after["StartDag"] = 1
        with pytest.raises(Unavailable):
            client.start_dag(NS, dag.dag_id)
        assert len(proxy.calls("StartDag")) == 1
        assert client.get_dag(NS, dag.dag_id).state is DagState.RUNNING  # it acted; the answer was lost

        (job,) = client.list_dag_jobs(NS, dag.dag_id)
        proxy.fail_before["FailJob"] = 1
        with pytest.raises(Unavailable):
            client.fail_job(job.job_id, "boom", attempt=1)
        assert len(proxy.calls("FailJob")) == 1
        # CompleteJob fenced by its attempt is safe to repeat, so it is retried.
        proxy.lose_after["CompleteJob"] = 1
        assert client.complete_job(job.job_id, attempt=1).state is JobState.SUCCEEDED
        assert len(proxy.calls("CompleteJob")) == 2


# --- deadlines ------------------------------------------------------------------


def test_every_call_has_a_deadline(proxy: Proxy) -> None:
    with Client(proxy.target, timeout=0.3) as client:
        client.create_namespace(NS)
        proxy.hold["GetNamespace"] = 5.0
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded) as late:
            client.get_namespace(NS)
        assert 0.25 <= time.monotonic() - began < 2.0
        assert late.value.code is grpc.StatusCode.DEADLINE_EXCEEDED and late.value.reason is None
        assert len(proxy.calls("GetNamespace")) == 1  # a deadline is not retried

        # A copy with another deadline shares the channel.
        quick = client.with_options(timeout=0.1)
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            quick.get_namespace(NS)
        assert time.monotonic() - began < 1.0
        quick.close()  # leaves the channel open
        assert client.healthz().status == "SERVING"


# --- TLS and the token ----------------------------------------------------------


def test_tls_with_a_ca_and_a_bearer_token_on_every_call(tls_proxy: Proxy, certificate: Certificate) -> None:
    target = f"localhost:{tls_proxy.port}"
    with Client(target, token="s3cret", ca=certificate.cert_path) as client:
        client.healthz()
        client.create_namespace(NS)
        assert [n.namespace_id for n in client.list_namespaces()] == [NS]
    with Client(target, ca=certificate.cert) as client:  # PEM bytes work too; no token
        client.get_namespace(NS)
    assert [(s.method, s.authorization) for s in tls_proxy.seen] == [
        ("Healthz", "Bearer s3cret"),
        ("CreateNamespace", "Bearer s3cret"),
        ("ListNamespaces", "Bearer s3cret"),
        ("GetNamespace", None),
    ]
    # Without `ca` the client speaks plain text, which a TLS port refuses.
    with (
        Client(target, timeout=2, retry=RetryPolicy(attempts=1)) as plain,
        pytest.raises(Unavailable),
    ):
        plain.healthz()
