"""ListDagJobs pages in key order, as dag.proto documents, whatever order the
jobs were created in."""

from __future__ import annotations

import pytest

from chronosched.v1 import dag_pb2, job_pb2
from tests.support.builders import dag, definition, namespace
from tests.support.server import Stubs

pytestmark = pytest.mark.timeout(60)


async def test_dag_jobs_page_in_key_order_not_creation_order(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    # Lower-case keys sort the same in every collation, so the expectation
    # does not depend on the database's locale.
    created = await dag(api, ns, d.def_id, ["m", "c", "x"], [], start=False)
    more = await api.dags.CreateJobs(
        dag_pb2.CreateJobsRequest(
            namespace_id=ns,
            dag_id=created.dag_id,
            jobs=[dag_pb2.JobSpec(key=k, def_id=d.def_id) for k in ["a", "q", "b"]],
        )
    )
    assert [j.key for j in more.jobs] == ["a", "q", "b"]

    keys: list[str] = []
    pages = 0
    token = ""
    while True:
        page = await api.dags.ListDagJobs(
            dag_pb2.ListDagJobsRequest(namespace_id=ns, dag_id=created.dag_id, page_size=2, page_token=token)
        )
        pages += 1
        assert len(page.jobs) <= 2
        keys += [j.key for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert keys == ["a", "b", "c", "m", "q", "x"]
    assert pages == 3

    # The namespace-wide list keeps creation order for the same jobs, so the
    # two orders really differ here.
    listed = await api.jobs.ListJobs(job_pb2.ListJobsRequest(namespace_id=ns, dag_id=created.dag_id))
    assert [j.key for j in listed.jobs] == ["m", "c", "x", "a", "q", "b"]


async def test_dag_jobs_state_filter_pages_in_key_order(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    # Started: the roots (no parents) are READY, the children PENDING.
    created = await dag(
        api, ns, d.def_id, ["r2", "k1", "r1", "k2", "r3"], [("r2", "k1"), ("r1", "k2")], start=True
    )
    ready = dag_pb2.ListDagJobsRequest(
        namespace_id=ns, dag_id=created.dag_id, state=job_pb2.Job.STATE_READY, page_size=2
    )
    first = await api.dags.ListDagJobs(ready)
    assert [j.key for j in first.jobs] == ["r1", "r2"] and first.next_page_token
    ready.page_token = first.next_page_token
    second = await api.dags.ListDagJobs(ready)
    assert [j.key for j in second.jobs] == ["r3"] and second.next_page_token == ""
