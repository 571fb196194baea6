"""Job.waiting, ListWorkers and JobDefinition.warnings through the Python
clients, sync and async, against the real in-process server with bare
worker streams (RawWorker) connected to it."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from chronosched import (
    AsyncClient,
    Client,
    ConnectedWorker,
    JobSpec,
    JobState,
    Waiting,
    WaitingParent,
    WaitingReason,
)
from tests.client.conftest import Running
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

NS = "team-a"
NO_WORKER = "no connected worker serves kind comand in this namespace"


def unserved(kind: str, ns: str = NS) -> str:
    """The warning CreateDefinition gives for a kind no worker served lately."""
    return (
        f"no worker has served kind {kind} in namespace {ns} in the last 24 hours: "
        f"its jobs will wait (READY) until a worker with a {kind} handler connects"
    )


def test_a_definition_of_an_unserved_kind_warns_and_its_jobs_say_why_they_wait(server: Running) -> None:
    with Client(server.target) as client:
        client.create_namespace(NS)
        typo = client.create_definition(NS, "typo", "comand")
        assert typo.warnings == (unserved("comand"),)
        stored = client.get_definition(NS, typo.def_id)
        assert stored.warnings == ()
        # The warning belongs to the create's answer, not to the definition.
        assert stored == typo
        assert [d.warnings for d in client.list_definitions(NS)] == [()]

        ticked = client.tick(NS, typo.def_id)
        assert ticked.waiting is None  # Tick's answer does not carry it
        job = client.get_job(NS, ticked.job_id)
        assert job.state is JobState.READY
        assert job.waiting == Waiting(WaitingReason.NO_WORKER, NO_WORKER, kind="comand")
        [listed] = client.list_jobs(NS)
        assert listed.waiting == job.waiting

        # A DAG not started, then waiting on its parents.
        jobs = [JobSpec(key, typo.def_id) for key in ("a", "b", "c")]
        dag = client.create_dag(NS, "fan-in", jobs, [("a", "c"), ("b", "c")])
        held = {j.key: j for j in client.list_dag_jobs(NS, dag.dag_id)}
        assert {k: j.waiting and j.waiting.reason for k, j in held.items()} == dict.fromkeys(
            "abc", WaitingReason.DAG_NOT_STARTED
        )
        client.start_dag(NS, dag.dag_id)
        by_key = {j.key: j for j in client.list_dag_jobs(NS, dag.dag_id)}
        a, b = by_key["a"], by_key["b"]
        assert by_key["c"].waiting == Waiting(
            WaitingReason.PARENTS,
            "waiting on 2 unfinished parents: a (READY), b (READY)",
            unfinished_parents=2,
            parents=(
                WaitingParent("a", a.job_id, JobState.READY),
                WaitingParent("b", b.job_id, JobState.READY),
            ),
        )
        assert a.waiting is not None and a.waiting.reason is WaitingReason.NO_WORKER
        assert [j.waiting for j in client.list_jobs(NS, dag_id=dag.dag_id) if j.key == "c"] == [
            by_key["c"].waiting
        ]
        client.complete_job(a.job_id)
        c = client.get_job(NS, by_key["c"].job_id).waiting
        assert c is not None and (c.unfinished_parents, c.parents) == (
            1,
            (WaitingParent("b", b.job_id, JobState.READY),),
        )
        client.complete_job(b.job_id)
        c = client.get_job(NS, by_key["c"].job_id).waiting
        assert c is not None and c.reason is WaitingReason.NO_WORKER
        # A finished job waits for nothing.
        assert client.get_job(NS, a.job_id).waiting is None


def test_connected_workers_are_listed_and_change_what_jobs_wait_for(server: Running) -> None:
    with Client(server.target) as client:
        client.create_namespace(NS)
        typo = client.create_definition(NS, "typo", "comand")
        first = client.tick(NS, typo.def_id)
        assert list(client.list_workers()) == []

        w1 = server.open_worker(worker_id="w-1", namespaces=[NS], kinds=["comand", "other"], slots=1)
        assert w1.assignment().job.job_id == first.job_id
        assert client.get_job(NS, first.job_id).waiting is None  # RUNNING now
        server.publish_workers()
        [one] = client.list_workers()
        assert isinstance(one, ConnectedWorker)
        assert (one.worker_id, one.namespaces, one.all_namespaces, sorted(one.kinds)) == (
            "w-1",
            (NS,),
            False,
            ["comand", "other"],
        )
        assert (one.slots, one.jobs_in_flight) == (1, 1)
        assert one.stream_id and one.replica_id
        # Both in database time, moments ago. (Not ordered: the server
        # derives each from its monotonic clock at a different write, so a
        # fresh stream's heartbeat_time can read microseconds before its
        # connect_time.)
        assert one.connect_time.tzinfo is UTC and one.heartbeat_time.tzinfo is UTC
        assert abs(one.heartbeat_time - one.connect_time) < timedelta(seconds=5)

        # The only worker serving the kind is full.
        second = client.tick(NS, typo.def_id)
        assert client.get_job(NS, second.job_id).waiting == Waiting(
            WaitingReason.WORKERS_FULL,
            "every worker serving kind comand is full (1 of 1 slots in use)",
            kind="comand",
            slots_in_use=1,
            slots_total=1,
        )

        # A worker of every namespace is listed for each; pages.
        server.open_worker(worker_id="w-2", all_namespaces=True, kinds=["x"], slots=4)
        assert [w.worker_id for w in client.list_workers()] == ["w-1", "w-2"]
        assert [w.worker_id for w in client.list_workers(NS)] == ["w-1", "w-2"]
        [everywhere] = client.list_workers("team-b")
        assert (everywhere.worker_id, everywhere.namespaces, everywhere.all_namespaces) == ("w-2", (), True)
        assert [w.worker_id for w in client.list_workers(page_size=1)] == ["w-1", "w-2"]
        page = client.list_workers_page(page_size=1)
        assert [w.worker_id for w in page] == ["w-1"] and page.next_page_token
        last = client.list_workers_page(page_size=1, page_token=page.next_page_token)
        assert [w.worker_id for w in last] == ["w-2"] and last.next_page_token is None

        # A closed stream leaves the list; nobody serves the kind any more.
        w1.close()
        wait_until(
            lambda: [w.worker_id for w in client.list_workers()] == ["w-2"], within=10, what="w-1 to leave"
        )
        waiting = client.get_job(NS, second.job_id).waiting
        assert waiting is not None and waiting.reason is WaitingReason.NO_WORKER


async def test_the_async_client_reads_the_same(server: Running) -> None:
    async with AsyncClient(server.target) as client:
        await client.create_namespace(NS)
        typo = await client.create_definition(NS, "typo", "comand")
        assert typo.warnings == (unserved("comand"),)
        assert (await client.get_definition(NS, typo.def_id)).warnings == ()
        job = await client.tick(NS, typo.def_id)
        got = await client.get_job(NS, job.job_id)
        assert got.waiting == Waiting(WaitingReason.NO_WORKER, NO_WORKER, kind="comand")
        assert [j.waiting async for j in client.list_jobs(NS)] == [got.waiting]
        assert [w async for w in client.list_workers()] == []

        server.open_worker(worker_id="w-1", namespaces=[NS], kinds=["other"], slots=2)
        server.open_worker(worker_id="w-2", namespaces=["team-b"], kinds=["comand"], slots=3)
        listed = [w async for w in client.list_workers(page_size=1)]
        assert [(w.worker_id, w.namespaces, w.kinds, w.slots) for w in listed] == [
            ("w-1", (NS,), ("other",), 2),
            ("w-2", ("team-b",), ("comand",), 3),
        ]
        assert [w.worker_id async for w in client.list_workers(NS)] == ["w-1"]
        page = await client.list_workers_page("team-b")
        assert [w.worker_id for w in page] == ["w-2"] and page.next_page_token is None
        # Neither serves kind comand in team-a.
        still = (await client.get_job(NS, job.job_id)).waiting
        assert still is not None and still.reason is WaitingReason.NO_WORKER


def test_the_two_clients_have_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(Client) == public(AsyncClient)
    assert {"list_workers", "list_workers_page"} <= public(Client)
