"""Worker streams under bearer tokens: a stream gets only jobs of the
namespaces its token covers, and settles, renews and takes back only leases
held by its own worker, in those namespaces (docs/security.md, "Workers")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import psycopg
import pytest

from chronosched.v1 import (
    definition_pb2,
    job_pb2,
    namespace_pb2,
    token_pb2,
    token_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from tests.support import grpc_helpers
from tests.support.server import Stubs, serving

pytestmark = pytest.mark.timeout(60)

ADMIN = "bootstrap-admin-token-of-the-worker-tests"
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)
A, B = "team-a", "team-b"
Scope = token_pb2.Token.Scope
J = job_pb2.Job


@contextlib.asynccontextmanager
async def auth_server(database_url: str) -> AsyncIterator[Stubs]:
    async with serving(database_url, require_tokens=True, admin_token=ADMIN) as api:
        for ns in (A, B):
            await api.namespaces.CreateNamespace(
                namespace_pb2.CreateNamespaceRequest(namespace_id=ns), metadata=ADMIN_MD
            )
            await api.definitions.CreateDefinition(
                definition_pb2.CreateDefinitionRequest(namespace_id=ns, name="noop", kind="noop"),
                metadata=ADMIN_MD,
            )
        yield api


async def worker_token(api: Stubs, namespace_id: str) -> str:
    made = await token_pb2_grpc.TokenServiceStub(api.channel).CreateToken(
        token_pb2.CreateTokenRequest(scope=Scope.SCOPE_WORKER, namespace_id=namespace_id), metadata=ADMIN_MD
    )
    secret: str = made.secret
    return secret


async def tick(api: Stubs, ns: str) -> str:
    defs = await api.definitions.ListDefinitions(
        definition_pb2.ListDefinitionsRequest(namespace_id=ns), metadata=ADMIN_MD
    )
    job = await api.definitions.Tick(
        definition_pb2.TickRequest(namespace_id=ns, def_id=defs.definitions[0].def_id), metadata=ADMIN_MD
    )
    job_id: str = job.job_id
    return job_id


async def job(api: Stubs, ns: str, job_id: str) -> job_pb2.Job:
    got: job_pb2.Job = await api.jobs.GetJob(
        job_pb2.GetJobRequest(namespace_id=ns, job_id=job_id), metadata=ADMIN_MD
    )
    return got


class _WithToken:
    """A WorkerService stub whose Dequeue carries a bearer token."""

    def __init__(self, api: Stubs, token: str) -> None:
        self._stub = worker_pb2_grpc.WorkerServiceStub(api.channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    def Dequeue(self) -> Any:
        return self._stub.Dequeue(metadata=self._metadata)


class Worker(grpc_helpers.RawWorker):
    def __init__(self, api: Stubs, token: str, **subscribe: Any) -> None:
        subscribe.setdefault("kinds", ["noop"])
        stub = cast("worker_pb2_grpc.WorkerServiceAsyncStub", _WithToken(api, token))
        super().__init__(stub, **subscribe)

    async def refused(self) -> grpc.StatusCode:
        """The code the stream ended with (it must end, not serve)."""
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.call.read()
        return info.value.code()


async def counts(database_url: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            b"select state, count(*) from jobs group by state"
            b" union all select 'READY and due', count(*) from jobs"
            b" where state = 'READY' and due_time <= now()"
        )
        return {row[0]: row[1] for row in await cur.fetchall()}


async def test_a_worker_for_a_gets_none_of_bs_ready_jobs(database_url: str) -> None:
    async with auth_server(database_url) as api:
        theirs = [await tick(api, B) for _ in range(3)]
        worker = Worker(api, await worker_token(api, A), worker_id="w-a", namespaces=[A], slots=4)
        await worker.start()
        # B's jobs were READY before the stream came, and A's comes after:
        # the cycle that pushes A's job would have pushed B's too.
        mine = await tick(api, A)
        got = await worker.next("assignment")
        assert got.job.job_id == mine
        await worker.send_result(mine, got.job.attempt)
        ack = await worker.next("ack")
        assert ack.accepted
        assert worker.inbox.empty()
        for job_id in theirs:
            assert (await job(api, B, job_id)).state == J.STATE_READY
        await worker.close()


async def test_a_subscribe_beyond_the_token_is_refused(database_url: str) -> None:
    async with auth_server(database_url) as api:
        await tick(api, B)
        token = await worker_token(api, A)
        for subscribe in ({"namespaces": [A, B]}, {"namespaces": [B]}, {"all_namespaces": True}):
            worker = Worker(api, token, worker_id="w-greedy", slots=1, **subscribe)
            await worker.call.write(worker_pb2.DequeueRequest(subscribe=worker.subscribe))
            assert await worker.refused() == grpc.StatusCode.PERMISSION_DENIED, subscribe
        assert not api.server.dispatcher.streams
        # A token for every namespace may ask for all of them.
        everywhere = Worker(api, await worker_token(api, "*"), worker_id="w-all", all_namespaces=True)
        await everywhere.start()
        assert (await everywhere.next("assignment")).job.namespace_id == B
        await everywhere.close()


async def test_a_result_for_a_job_leased_to_another_stream_changes_nothing(database_url: str) -> None:
    async with auth_server(database_url) as api:
        token = await worker_token(api, A)
        holder = Worker(api, token, worker_id="w-holder", namespaces=[A])
        await holder.start()
        job_id = await tick(api, A)
        held = (await holder.next("assignment")).job
        # Another worker of the same namespace, with nothing to do.
        other = Worker(api, token, worker_id="w-other", namespaces=[A], slots=0)
        await other.start()
        before = await counts(database_url)
        await other.send_result(job_id, held.attempt, {"stolen": True})
        ack = await other.next("ack")
        assert (ack.accepted, ack.reason) == (False, "JOB_NOT_HELD")
        failure = worker_pb2.DequeueRequest(results=worker_pb2.JobResults())
        failure.results.results.add(
            job=worker_pb2.JobRef(job_id=job_id, attempt=held.attempt), error="x", non_retryable=True
        )
        await other.call.write(failure)
        ack = await other.next("ack")
        assert (ack.accepted, ack.reason) == (False, "JOB_NOT_HELD")
        # Nor can it keep the lease alive: its heartbeat names it lost.
        await other.heartbeat(1, (job_id, held.attempt))
        beat = await other.next("heartbeat_ack")
        assert [r.job_id for r in beat.lost] == [job_id] and not beat.extended
        assert await counts(database_url) == before
        still = await job(api, A, job_id)
        assert (still.state, still.worker_id, still.lease_expire_time) == (
            J.STATE_RUNNING,
            "w-holder",
            held.lease_expire_time,
        )
        # Its holder's result is applied.
        await holder.send_result(job_id, held.attempt, {"mine": True})
        assert (await holder.next("ack")).accepted
        assert (await job(api, A, job_id)).state == J.STATE_SUCCEEDED
        await holder.close()
        await other.close()


async def test_a_result_from_another_namespaces_worker_is_not_found(database_url: str) -> None:
    async with auth_server(database_url) as api:
        # The same worker id, even: the namespace decides first.
        holder = Worker(api, await worker_token(api, A), worker_id="w-same", namespaces=[A])
        await holder.start()
        job_id = await tick(api, A)
        held = (await holder.next("assignment")).job
        stranger = Worker(api, await worker_token(api, B), worker_id="w-same", namespaces=[B], slots=0)
        await stranger.start()
        await stranger.send_result(job_id, held.attempt)
        ack = await stranger.next("ack")
        assert (ack.accepted, ack.reason) == (False, "JOB_NOT_FOUND")
        # The stranger's stream took nothing back and ended nothing.
        assert any(s.worker_id == "w-same" and s.namespace_limit == A for s in api.server.dispatcher.streams)
        still = await job(api, A, job_id)
        assert (still.state, still.attempt, still.worker_id) == (J.STATE_RUNNING, 1, "w-same")
        await holder.send_result(job_id, held.attempt)
        assert (await holder.next("ack")).accepted
        await holder.close()
        await stranger.close()


async def test_a_subscribe_cannot_adopt_another_workers_attempt(database_url: str) -> None:
    async with auth_server(database_url) as api:
        token = await worker_token(api, A)
        holder = Worker(api, token, worker_id="w-holder", namespaces=[A])
        await holder.start()
        first = await tick(api, A)
        held = (await holder.next("assignment")).job
        # One slot, "running" the holder's attempt: were it adopted, the slot
        # would be taken and the next job could not come.
        claimant = Worker(
            api,
            token,
            worker_id="w-claimant",
            namespaces=[A],
            slots=1,
            running=[worker_pb2.JobRef(job_id=first, attempt=held.attempt)],
        )
        await claimant.start()
        second = await tick(api, A)
        assert (await claimant.next("assignment")).job.job_id == second
        assert (await job(api, A, first)).worker_id == "w-holder"
        await holder.close()
        await claimant.close()


async def test_a_reconnecting_worker_resends_the_result_of_an_attempt_it_held(database_url: str) -> None:
    async with auth_server(database_url) as api:
        token = await worker_token(api, A)
        first = Worker(api, token, worker_id="w-back", namespaces=[A])
        await first.start()
        job_id = await tick(api, A)
        held = (await first.next("assignment")).job
        await first.close()
        # Back under the same id, holding the attempt (its result kept in
        # its state directory), then resending the result.
        again = Worker(
            api,
            token,
            worker_id="w-back",
            namespaces=[A],
            running=[worker_pb2.JobRef(job_id=job_id, attempt=held.attempt)],
        )
        await again.start()
        await again.send_result(job_id, held.attempt, {"ran": "before the reconnect"})
        ack = await again.next("ack")
        assert ack.accepted, ack.reason
        # And once more, as after a lost ack: acknowledged, nothing changes.
        await again.send_result(job_id, held.attempt, {"ran": "again"})
        assert (await again.next("ack")).accepted
        done = await job(api, A, job_id)
        assert done.state == J.STATE_SUCCEEDED and dict(done.result) == {"ran": "before the reconnect"}
        await again.close()


async def test_a_refused_stream_still_takes_its_first_message(database_url: str) -> None:
    """A worker writes its Subscribe just after opening the stream. Had the
    server refused the call before that write reached it, gRPC's client
    would fail the write and report INTERNAL ("Internal error from Core")
    in place of the refusal (seen in a test run). So a refused stream reads
    its first message (for up to a second) before it answers."""
    async with auth_server(database_url) as api:
        stub = worker_pb2_grpc.WorkerServiceStub(api.channel)
        stream = stub.Dequeue(metadata=(("authorization", "Bearer not-a-token"),))
        # A client slow to write: a server that refuses at once has ended
        # the call well before this.
        await asyncio.sleep(0.3)
        subscribe = worker_pb2.Subscribe(worker_id="w1", namespaces=[A], kinds=["noop"], slots=1)
        await stream.write(worker_pb2.DequeueRequest(subscribe=subscribe))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stream.read()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value.details()
