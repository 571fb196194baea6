"""WorkerService.ListWorkers: the open Dequeue streams of every server replica
on one database (docs/workers.md, "Connected workers")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest

from chronosched.v1 import definition_pb2, namespace_pb2, token_pb2, worker_pb2, worker_pb2_grpc
from tests.support import grpc_helpers
from tests.support.builders import definition, namespace
from tests.support.server import Stubs, serving
from tests.support.waiting import poll

pytestmark = pytest.mark.timeout(60)

Listed = dict[str, worker_pb2.ConnectedWorker]


class RawWorker(grpc_helpers.RawWorker):
    def __init__(self, api: Stubs, md: Any = None, **subscribe: Any):
        stub = worker_pb2_grpc.WorkerServiceStub(api.channel)
        super().__init__(stub, **subscribe)
        if md is not None:
            self.call.cancel()
            self.call = stub.Dequeue(metadata=md)


async def listed(api: Stubs, md: Any = None, **request: Any) -> Listed:
    """Every listed stream by worker id, walking the pages."""
    found: Listed = {}
    token = ""
    while True:
        page = await api.workers.ListWorkers(
            worker_pb2.ListWorkersRequest(page_token=token, **request), metadata=md
        )
        for w in page.workers:
            assert w.worker_id not in found, "a stream listed twice"
            found[w.worker_id] = w
        token = page.next_page_token
        if not token:
            return found


async def until_listed(api: Stubs, want: set[str], md: Any = None, **request: Any) -> Listed:
    async def check() -> Listed | None:
        got = await listed(api, md, **request)
        return got if set(got) == want else None

    return await poll(check, within=3.0, what=f"workers {sorted(want)} listed")


async def test_a_connected_worker_is_listed_with_its_fields_and_gone_once_closed(api: Stubs) -> None:
    ns = await namespace(api)
    d = await definition(api, ns)
    worker = RawWorker(api, worker_id="w1", namespaces=[ns], kinds=["noop", "other"], slots=3)
    await worker.start()
    got = (await until_listed(api, {"w1"}))["w1"]
    presence = api.server.dispatcher.presence
    assert got.replica_id == presence.replica_id and got.stream_id
    assert list(got.namespaces) == [ns] and not got.all_namespaces
    assert list(got.kinds) == ["noop", "other"] and got.slots == 3 and got.jobs_in_flight == 0
    assert got.HasField("connect_time") and got.HasField("heartbeat_time")
    assert got.heartbeat_time.ToDatetime() >= got.connect_time.ToDatetime()
    # A job pushed shows at the next refresh (run here rather than waiting
    # for the heartbeat interval).
    await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id))
    await worker.next("assignment")
    await presence.sync()
    again = (await listed(api))["w1"]
    assert again.jobs_in_flight == 1 and again.stream_id == got.stream_id
    assert again.connect_time == got.connect_time
    await worker.close()
    await until_listed(api, set())


async def test_two_servers_list_each_others_workers(database_url: str) -> None:
    async with serving(database_url) as one, serving(database_url) as two:
        ns = await namespace(one)
        first, second = (
            RawWorker(one, worker_id="on-one", namespaces=[ns]),
            RawWorker(two, worker_id="on-two", all_namespaces=True),
        )
        await first.start()
        await second.start()
        seen_by_one = await until_listed(one, {"on-one", "on-two"})
        seen_by_two = await until_listed(two, {"on-one", "on-two"})
        assert seen_by_one == seen_by_two
        assert seen_by_one["on-one"].replica_id == one.server.dispatcher.presence.replica_id
        assert seen_by_one["on-two"].replica_id == two.server.dispatcher.presence.replica_id
        assert seen_by_one["on-two"].all_namespaces and not seen_by_one["on-two"].namespaces
        await second.close()
        await until_listed(one, {"on-one"})
        await first.close()


async def test_the_streams_of_a_replica_that_died_expire(database_url: str) -> None:
    async with serving(database_url) as live:
        ns = await namespace(live)
        # A short lease: that replica's rows last 1.5 s past its last refresh.
        async with serving(database_url, lease_s=1.5) as dying:
            worker = RawWorker(dying, worker_id="doomed", namespaces=[ns])
            await worker.start()
            await until_listed(live, {"doomed"})
            dead_replica = dying.server.dispatcher.presence.replica_id

            async def nothing(**_: Any) -> None:
                return None

            # From here the replica writes nothing, as if its process died:
            # its stop neither closes nor refreshes its rows.
            dying.server.dispatcher.presence.sync = nothing  # type: ignore[method-assign]
        await worker.close()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:

            async def rows() -> int:
                cur = await conn.execute(
                    "select count(*) from worker_streams where replica_id = %s", (dead_replica,)
                )
                found = await cur.fetchone()
                assert found is not None
                return int(found[0])

            assert await rows() == 1, "the dead replica's row was left behind"
            await until_listed(live, set())
            # Any live replica's next refresh deletes the expired row.
            await live.server.dispatcher.presence.sync()
            assert await rows() == 0


async def test_namespace_filter_and_pages(api: Stubs) -> None:
    a, b = await namespace(api, "ns-a"), await namespace(api, "ns-b")
    workers = [
        RawWorker(api, worker_id="w-a", namespaces=[a]),
        RawWorker(api, worker_id="w-b", namespaces=[b]),
        RawWorker(api, worker_id="w-ab", namespaces=[a, b]),
        RawWorker(api, worker_id="w-all", all_namespaces=True),
    ]
    for w in workers:
        await w.start()
    everyone = await until_listed(api, {"w-a", "w-b", "w-ab", "w-all"})
    # One per page, in worker id order.
    paged = await listed(api, page_size=1)
    assert list(paged) == sorted(everyone)
    assert set(await listed(api, namespace_id=a)) == {"w-a", "w-ab", "w-all"}
    assert set(await listed(api, namespace_id=b)) == {"w-b", "w-ab", "w-all"}
    # No NOT_FOUND for a namespace without a row: a worker may serve one
    # before it is created.
    assert set(await listed(api, namespace_id="nobody")) == {"w-all"}
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await listed(api, namespace_id="Not A Slug")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for w in workers:
        await w.close()


ADMIN = "bootstrap-admin-token-of-the-list-workers-tests"
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)


@contextlib.asynccontextmanager
async def auth_server(database_url: str) -> AsyncIterator[Stubs]:
    async with serving(database_url, require_tokens=True, admin_token=ADMIN) as api:
        for ns in ("team-a", "team-b"):
            await api.namespaces.CreateNamespace(
                namespace_pb2.CreateNamespaceRequest(namespace_id=ns), metadata=ADMIN_MD
            )
        yield api


async def test_a_namespaced_token_sees_only_the_workers_serving_its_namespace(database_url: str) -> None:
    async with auth_server(database_url) as api:
        workers = [
            RawWorker(api, ADMIN_MD, worker_id="w-a", namespaces=["team-a"]),
            RawWorker(api, ADMIN_MD, worker_id="w-b", namespaces=["team-b"]),
            RawWorker(api, ADMIN_MD, worker_id="w-ab", namespaces=["team-a", "team-b"]),
            RawWorker(api, ADMIN_MD, worker_id="w-all", all_namespaces=True),
        ]
        for w in workers:
            await w.start()
        await until_listed(api, {"w-a", "w-b", "w-ab", "w-all"}, ADMIN_MD)
        made = await api.tokens.CreateToken(
            token_pb2.CreateTokenRequest(scope=token_pb2.Token.SCOPE_READ, namespace_id="team-a"),
            metadata=ADMIN_MD,
        )
        read_a = (("authorization", f"Bearer {made.secret}"),)
        mine = await listed(api, read_a)
        assert set(mine) == {"w-a", "w-ab", "w-all"}
        # The other namespaces of a shared worker are not shown.
        assert list(mine["w-ab"].namespaces) == ["team-a"]
        assert await listed(api, read_a, namespace_id="team-a") == mine
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await listed(api, read_a, namespace_id="team-b")
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await listed(api)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for w in workers:
            await w.close()
