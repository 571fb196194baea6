"""The DAG builder and the run handle, with the blocking Client. Jobs are of
kind "manual" (no worker runs them): the test records their outcomes with
CompleteJob / FailJob, so every transition is the test's own doing."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chronosched import (
    Client,
    DagEvent,
    DagState,
    FailedPrecondition,
    InvalidArgument,
    JobEvent,
    JobState,
    NotFound,
    WatchEvent,
)
from tests.client.conftest import Running

pytestmark = pytest.mark.timeout(60)

NS = "team-a"
READY, PENDING, SUCCEEDED = JobState.READY, JobState.PENDING, JobState.SUCCEEDED


@pytest.fixture
def client(server: Running) -> Iterator[Client]:
    with Client(server.target) as client:
        client.create_namespace(NS)
        yield client


def step(client: Client, name: str = "step", **fields: object) -> str:
    return client.create_definition(NS, name, "manual", **fields).def_id  # type: ignore[arg-type]


def test_fan_out_and_fan_in_become_the_edges_the_server_stores(client: Client) -> None:
    step(client)
    dag = client.dag(NS, "etl")
    extract, a, b, load = (dag.job(key, "step") for key in ("extract", "a", "b", "load"))
    assert (extract >> [a, b] >> load) is load
    assert dag.edges == (("extract", "a"), ("extract", "b"), ("a", "load"), ("b", "load"))
    run = dag.submit()
    assert run.dag.state is DagState.RUNNING and run.dag.job_count == 4 and run.dag.name == "etl"
    assert run.edges() == set(dag.edges)
    jobs = run.jobs()
    assert {key: job.state for key, job in jobs.items()} == {
        "extract": READY,
        "a": PENDING,
        "b": PENDING,
        "load": PENDING,
    }


def test_tuples_chains_and_repeated_wiring(client: Client) -> None:
    step(client)
    dag = client.dag(NS)
    a, b, c, d = (dag.job(key, "step") for key in "abcd")
    (a, b) >> c  # a tuple works as a list does
    a >> c  # already wired: still one edge
    dag.depend(c, d)
    run = dag.submit(start=False)
    assert run.edges() == {("a", "c"), ("b", "c"), ("c", "d")}


def test_definitions_by_name_version_id_or_object(client: Client) -> None:
    v1 = step(client, payload_template={"v": 1})
    v2 = step(client, payload_template={"v": 2})
    other = client.create_definition(NS, "other", "manual")
    dag = client.dag(NS)
    dag.job("latest", "step")
    dag.job("first", "step@1")
    dag.job("by-id", v1)
    dag.job("by-object", other, payload={"extra": "yes"}, priority=9)
    run = dag.submit(start=False)
    jobs = run.jobs()
    assert {k: (j.def_id, j.def_version) for k, j in jobs.items()} == {
        "latest": (v2, 2),
        "first": (v1, 1),
        "by-id": (v1, 1),
        "by-object": (other.def_id, 1),
    }
    assert jobs["latest"].payload == {"v": 2} and jobs["first"].payload == {"v": 1}
    assert jobs["by-object"].payload == {"extra": "yes"} and jobs["by-object"].priority == 9


def test_an_unknown_definition_fails_before_anything_is_created(client: Client) -> None:
    step(client)
    for ref in ("step@3", "missing"):
        dag = client.dag(NS)
        dag.job("a", ref)
        with pytest.raises(NotFound) as missing:
            dag.submit()
        assert missing.value.reason == "DEFINITION_NOT_FOUND"
    assert list(client.list_dags(NS)) == []
    with pytest.raises(ValueError, match="name@version"):
        client.dag(NS).job("a", "step@0")


def test_the_builder_refuses_what_it_can_see_alone(client: Client) -> None:
    step(client)
    dag, other = client.dag(NS), client.dag(NS)
    a, b = dag.job("a", "step"), dag.job("b", "step")
    foreign = other.job("x", "step")
    with pytest.raises(ValueError, match="already used"):
        dag.job("a", "step")
    with pytest.raises(ValueError, match="another DAG builder"):
        a >> foreign
    with pytest.raises(ValueError, match="another DAG builder"):
        [a, foreign] >> b
    with pytest.raises(TypeError):
        a >> "b"  # type: ignore[type-var]
    assert dag.edges == ()  # nothing half-wired
    a >> b
    run = dag.submit()
    with pytest.raises(ValueError, match=f"submitted as DAG {run.dag_id}"):
        dag.job("c", "step")
    with pytest.raises(ValueError, match="submitted"):
        b >> a
    with pytest.raises(ValueError, match="submitted"):
        dag.submit()


def test_the_server_catches_cycles_and_self_edges(client: Client) -> None:
    step(client)
    dag = client.dag(NS)
    a, b, c = (dag.job(key, "step") for key in "abc")
    a >> b >> c >> a
    with pytest.raises(FailedPrecondition) as cycle:
        dag.submit()
    assert cycle.value.reason == "CYCLE_DETECTED"

    looped = client.dag(NS)
    x = looped.job("x", "step")
    x >> x
    with pytest.raises(InvalidArgument) as self_edge:
        looped.submit()
    assert [(v.field, v.reason) for v in self_edge.value.violations] == [("dependencies[0]", "SELF_EDGE")]
    assert list(client.list_dags(NS)) == []


def test_submit_unstarted_then_start_and_cancel(client: Client) -> None:
    step(client)
    dag = client.dag(NS)
    dag.job("a", "step") >> dag.job("b", "step")
    run = dag.submit(start=False)
    assert run.dag.state is DagState.PENDING
    assert run.start().state is DagState.RUNNING
    assert run.cancel().state is DagState.CANCELLED
    result = run.wait(timeout=5)
    assert result.dag.state is DagState.CANCELLED and not result.succeeded
    assert result.states == {"a": JobState.CANCELLED, "b": JobState.CANCELLED}
    attached = client.dag_run(NS, run.dag_id)
    assert attached.dag == result.dag
    attached.delete()
    with pytest.raises(NotFound):
        run.refresh()


def complete_ready_jobs(target: str, dag_id: str, stop: threading.Event) -> None:
    """The outside actor of the wait tests: complete every READY job of the
    DAG, fenced by its attempt, until told to stop."""
    with Client(target) as client:
        while not stop.is_set():
            for job in client.list_dag_jobs(NS, dag_id, state=READY):
                client.complete_job(job.job_id, {"by": job.key}, attempt=job.attempt)
            stop.wait(0.02)


def test_wait_follows_the_dag_to_its_end(client: Client, server: Running) -> None:
    step(client)
    dag = client.dag(NS, "chain")
    extract, a, b, load = (dag.job(key, "step") for key in ("extract", "a", "b", "load"))
    extract >> [a, b] >> load
    run = dag.submit()
    stop = threading.Event()
    completer = threading.Thread(target=complete_ready_jobs, args=(server.target, run.dag_id, stop))
    completer.start()
    try:
        result = run.wait(timeout=20, interval=0.05)
    finally:
        stop.set()
        completer.join()
    assert result.succeeded and result.dag.is_settled and result.dag.end_time is not None
    assert result.states == dict.fromkeys(("a", "b", "extract", "load"), SUCCEEDED)
    assert result.jobs["load"].result == {"by": "load"}
    assert run.dag == result.dag


def test_wait_reports_failures_and_times_out(client: Client) -> None:
    step(client)
    dag = client.dag(NS)
    a, b, c = (dag.job(key, "step") for key in "abc")
    a >> b >> c
    run = dag.submit()
    with pytest.raises(TimeoutError, match=r"did not settle within 0\.2s"):
        run.wait(timeout=0.2, interval=0.05)
    jobs = run.jobs()
    client.complete_job(jobs["a"].job_id)
    client.fail_job(jobs["b"].job_id, "broken", non_retryable=True)
    result = run.wait(timeout=5)
    assert result.dag.state is DagState.FAILED and not result.succeeded
    assert result.states == {"a": SUCCEEDED, "b": JobState.FAILED, "c": JobState.SKIPPED}
    assert result.jobs["b"].error == "broken"


def summary(events: list[WatchEvent]) -> list[tuple[str, str | None, str, int]]:
    out: list[tuple[str, str | None, str, int]] = []
    for e in events:
        if isinstance(e, JobEvent):
            before = e.previous_state.name if e.previous_state else None
            out.append((e.key, before, e.state.name, e.job.attempt))
        else:
            before = e.previous_state.name if e.previous_state else None
            out.append(("<dag>", before, e.state.name, 0))
    return out


# What watching a -> b -> c shows when the watcher itself fails b's first
# attempt (it comes back READY as attempt 2) and completes every other READY job.
EXPECTED_WATCH = [
    ("a", None, "READY", 1),
    ("b", None, "PENDING", 1),
    ("c", None, "PENDING", 1),
    ("<dag>", None, "RUNNING", 0),
    ("a", "READY", "SUCCEEDED", 1),
    ("b", "PENDING", "READY", 1),
    ("b", "READY", "READY", 2),
    ("b", "READY", "SUCCEEDED", 2),
    ("c", "PENDING", "READY", 1),
    ("c", "READY", "SUCCEEDED", 1),
    ("<dag>", "RUNNING", "SUCCEEDED", 0),
]


def test_watch_yields_each_transition_in_order_and_ends(client: Client) -> None:
    step(client, max_attempts=2, backoff_initial=0)
    dag = client.dag(NS)
    a, b, c = (dag.job(key, "step") for key in "abc")
    a >> b >> c
    run = dag.submit()
    events: list[WatchEvent] = []
    for event in run.watch(interval=0.02):
        events.append(event)
        if isinstance(event, JobEvent) and event.state is READY:
            if event.key == "b" and event.job.attempt == 1:
                client.fail_job(event.job.job_id, "flaky", attempt=1)
            else:
                client.complete_job(event.job.job_id, attempt=event.job.attempt)
    assert summary(events) == EXPECTED_WATCH
    last = events[-1]
    assert isinstance(last, DagEvent) and last.dag.is_settled


def test_watch_of_a_deleted_dag_raises_not_found(client: Client) -> None:
    step(client)
    dag = client.dag(NS)
    dag.job("a", "step")
    run = dag.submit()
    events = run.watch(interval=0.02)
    assert isinstance(next(events), JobEvent)
    run.delete()
    with pytest.raises(NotFound):
        list(events)
