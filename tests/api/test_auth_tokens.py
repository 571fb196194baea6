"""TokenService and the token life cycle (create, use, expire, revoke), the
bootstrap admin token, and the namespace checks of calls that name a job by
its bare id: another namespace's job is NOT_FOUND exactly like a missing one."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2

from chronosched.v1 import (
    dag_pb2,
    definition_pb2,
    job_pb2,
    namespace_pb2,
    token_pb2,
    token_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from chronosched_server import tokens
from chronosched_server.app import Server
from chronosched_server.config import Config
from tests.support.builders import RpcFailure, dag, dag_jobs, definition, namespace
from tests.support.server import Stubs, serving

pytestmark = pytest.mark.timeout(60)

ADMIN = "bootstrap-admin-token-of-these-tests-000"
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)
Scope = token_pb2.Token.Scope
Code = grpc.StatusCode


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@contextlib.asynccontextmanager
async def auth_server(database_url: str, **config: object) -> AsyncIterator[Stubs]:
    async with serving(database_url, require_tokens=True, admin_token=ADMIN, **config) as api:
        yield api


def token_stub(api: Stubs) -> token_pb2_grpc.TokenServiceAsyncStub:
    return token_pb2_grpc.TokenServiceStub(api.channel)


async def create(
    api: Stubs, scope: int, namespace_id: str = "", **fields: object
) -> token_pb2.CreateTokenResponse:
    made: token_pb2.CreateTokenResponse = await token_stub(api).CreateToken(
        token_pb2.CreateTokenRequest(scope=scope, namespace_id=namespace_id, **fields),  # type: ignore[arg-type]
        metadata=ADMIN_MD,
    )
    return made


async def refused(call: object) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return RpcFailure(info.value)


async def admin_namespace(api: Stubs, namespace_id: str) -> str:
    await api.namespaces.CreateNamespace(
        namespace_pb2.CreateNamespaceRequest(namespace_id=namespace_id), metadata=ADMIN_MD
    )
    return namespace_id


# --- the token life cycle -----------------------------------------------------------


async def test_a_token_is_shown_once_stored_hashed_and_works_for_its_namespace(database_url: str) -> None:
    async with auth_server(database_url) as api:
        ns = await admin_namespace(api, "team-a")
        made = await create(api, Scope.SCOPE_WRITE, ns, description="ci")
        secret = made.secret
        assert re.fullmatch(r"cs_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", secret)
        assert secret[3:19] == made.token.token_id
        assert (made.token.scope, made.token.namespace_id, made.token.description) == (
            Scope.SCOPE_WRITE,
            ns,
            "ci",
        )
        assert not made.token.HasField("expire_time") and not made.token.HasField("revoke_time")
        # The database holds its SHA-256, never the secret.
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute(b"select token_hash::text, to_jsonb(t)::text from tokens t")
            rows = await cur.fetchall()
        assert len(rows) == 1 and secret not in rows[0][1] and secret[20:] not in rows[0][1]
        assert rows[0][0] == "\\x" + tokens.digest(secret).hex()
        # It works in its namespace, and ListTokens never shows a secret.
        got = await api.namespaces.GetNamespace(
            namespace_pb2.GetNamespaceRequest(namespace_id=ns), metadata=bearer(secret)
        )
        assert got.namespace_id == ns
        listed = await token_stub(api).ListTokens(token_pb2.ListTokensRequest(), metadata=ADMIN_MD)
        assert [t.token_id for t in listed.tokens] == [made.token.token_id]
        assert secret not in str(listed) and "secret" not in token_pb2.Token.DESCRIPTOR.fields_by_name
        # A call records its use (to the minute).
        assert listed.tokens[0].HasField("last_used_time")


async def test_revoked_and_expired_tokens_are_refused_and_listed_only_on_request(database_url: str) -> None:
    async with auth_server(database_url) as api:
        ns = await admin_namespace(api, "team-a")
        keep = await create(api, Scope.SCOPE_READ, ns)
        gone = await create(api, Scope.SCOPE_READ, ns)
        brief = await create(api, Scope.SCOPE_READ, ns, ttl=duration_pb2.Duration(seconds=3600))
        assert brief.token.HasField("expire_time")
        revoked = await token_stub(api).RevokeToken(
            token_pb2.RevokeTokenRequest(token_id=gone.token.token_id), metadata=ADMIN_MD
        )
        assert revoked.HasField("revoke_time")
        again = await token_stub(api).RevokeToken(
            token_pb2.RevokeTokenRequest(token_id=gone.token.token_id), metadata=ADMIN_MD
        )
        assert again.revoke_time == revoked.revoke_time  # idempotent: the first time stays
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(
                b"update tokens set expire_time = clock_timestamp() where token_id = %s",
                (brief.token.token_id,),
            )
        get = namespace_pb2.GetNamespaceRequest(namespace_id=ns)
        for made, reason in ((gone, "TOKEN_REVOKED"), (brief, "TOKEN_EXPIRED")):
            failure = await refused(api.namespaces.GetNamespace(get, metadata=bearer(made.secret)))
            assert (failure.code, failure.reason) == (Code.UNAUTHENTICATED, reason)
        await api.namespaces.GetNamespace(get, metadata=bearer(keep.secret))
        active = await token_stub(api).ListTokens(token_pb2.ListTokensRequest(), metadata=ADMIN_MD)
        assert [t.token_id for t in active.tokens] == [keep.token.token_id]
        every = await token_stub(api).ListTokens(
            token_pb2.ListTokensRequest(show_inactive=True, page_size=2), metadata=ADMIN_MD
        )
        rest = await token_stub(api).ListTokens(
            token_pb2.ListTokensRequest(show_inactive=True, page_token=every.next_page_token),
            metadata=ADMIN_MD,
        )
        ids = [t.token_id for t in [*every.tokens, *rest.tokens]]
        assert ids == sorted({keep.token.token_id, gone.token.token_id, brief.token.token_id})
        missing = await refused(
            token_stub(api).RevokeToken(token_pb2.RevokeTokenRequest(token_id="0" * 16), metadata=ADMIN_MD)
        )
        assert (missing.code, missing.reason) == (Code.NOT_FOUND, "TOKEN_NOT_FOUND")


async def test_create_token_is_validated(database_url: str) -> None:
    async with auth_server(database_url) as api:
        await admin_namespace(api, "team-a")
        cases = [
            (token_pb2.CreateTokenRequest(), "scope"),
            (token_pb2.CreateTokenRequest(scope=Scope.SCOPE_READ), "namespace_id"),
            (token_pb2.CreateTokenRequest(scope=Scope.SCOPE_ADMIN, namespace_id="team-a"), "namespace_id"),
            (token_pb2.CreateTokenRequest(scope=Scope.SCOPE_READ, namespace_id="Bad!"), "namespace_id"),
            (
                token_pb2.CreateTokenRequest(
                    scope=Scope.SCOPE_READ, namespace_id="team-a", ttl=duration_pb2.Duration(seconds=0)
                ),
                "ttl",
            ),
            (
                token_pb2.CreateTokenRequest(
                    scope=Scope.SCOPE_READ, namespace_id="team-a", description="x" * 1025
                ),
                "description",
            ),
        ]
        for request, field in cases:
            failure = await refused(token_stub(api).CreateToken(request, metadata=ADMIN_MD))
            assert failure.code == Code.INVALID_ARGUMENT and field in failure.fields, (
                request,
                failure.fields,
            )
        nowhere = await refused(
            token_stub(api).CreateToken(
                token_pb2.CreateTokenRequest(scope=Scope.SCOPE_READ, namespace_id="nowhere"),
                metadata=ADMIN_MD,
            )
        )
        assert (nowhere.code, nowhere.reason) == (Code.NOT_FOUND, "NAMESPACE_NOT_FOUND")
        every = await create(api, Scope.SCOPE_WORKER, "*")
        assert every.token.namespace_id == "*"
        admin = await create(api, Scope.SCOPE_ADMIN)
        assert admin.token.namespace_id == "*"
        # The admin token made through the API is as good as the bootstrap one.
        await token_stub(api).ListTokens(token_pb2.ListTokensRequest(), metadata=bearer(admin.secret))


async def test_deleting_a_namespace_deletes_its_tokens(database_url: str) -> None:
    async with auth_server(database_url) as api:
        ns = await admin_namespace(api, "short-lived")
        made = await create(api, Scope.SCOPE_WRITE, ns)
        await api.namespaces.DeleteNamespace(
            namespace_pb2.DeleteNamespaceRequest(namespace_id=ns), metadata=ADMIN_MD
        )
        # Created again, the namespace starts without tokens.
        await admin_namespace(api, ns)
        failure = await refused(
            api.namespaces.GetNamespace(
                namespace_pb2.GetNamespaceRequest(namespace_id=ns), metadata=bearer(made.secret)
            )
        )
        assert (failure.code, failure.reason) == (Code.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_a_namespace_token_lists_only_its_namespace(database_url: str) -> None:
    async with auth_server(database_url) as api:
        for ns in ("team-a", "team-b", "team-c"):
            await admin_namespace(api, ns)
        made = await create(api, Scope.SCOPE_READ, "team-b")
        mine = await api.namespaces.ListNamespaces(
            namespace_pb2.ListNamespacesRequest(), metadata=bearer(made.secret)
        )
        assert [n.namespace_id for n in mine.namespaces] == ["team-b"]
        every = await create(api, Scope.SCOPE_READ, "*")
        listed = await api.namespaces.ListNamespaces(
            namespace_pb2.ListNamespacesRequest(), metadata=bearer(every.secret)
        )
        assert [n.namespace_id for n in listed.namespaces] == ["team-a", "team-b", "team-c"]


async def test_a_revoked_token_ends_its_open_stream(database_url: str) -> None:
    # Lease 1.5 s: a keepalive every 0.5 s, so the stream yields often enough
    # for the 0.3 s recheck.
    async with auth_server(database_url, lease_s=1.5, token_recheck_s=0.3) as api:
        ns = await admin_namespace(api, "team-a")
        made = await create(api, Scope.SCOPE_WORKER, ns)
        stream = worker_pb2_grpc.WorkerServiceStub(api.channel).Dequeue(metadata=bearer(made.secret))
        await stream.write(
            worker_pb2.DequeueRequest(
                subscribe=worker_pb2.Subscribe(worker_id="w", namespaces=[ns], kinds=["noop"], slots=1)
            )
        )
        first = await stream.read()
        assert isinstance(first, worker_pb2.DequeueResponse) and first.HasField("settings")
        await token_stub(api).RevokeToken(
            token_pb2.RevokeTokenRequest(token_id=made.token.token_id), metadata=ADMIN_MD
        )

        async def until_ended() -> grpc.StatusCode:
            while True:
                try:
                    if await stream.read() is grpc.aio.EOF:
                        return await stream.code()
                except grpc.aio.AioRpcError as exc:
                    return exc.code()

        assert await asyncio.wait_for(until_ended(), 10) == Code.UNAUTHENTICATED
        assert not api.server.dispatcher.streams


async def test_the_bootstrap_admin_token_is_checked_by_digest(database_url: str) -> None:
    async with auth_server(database_url) as api:
        await admin_namespace(api, "team-a")
        for wrong in (ADMIN[:-1], ADMIN + "x", ADMIN.upper()):
            failure = await refused(
                api.namespaces.ListNamespaces(namespace_pb2.ListNamespacesRequest(), metadata=bearer(wrong))
            )
            assert (failure.code, failure.reason) == (Code.UNAUTHENTICATED, "TOKEN_INVALID")
        # The scheme is case-insensitive, as HTTP's is.
        await api.namespaces.ListNamespaces(
            namespace_pb2.ListNamespacesRequest(), metadata=(("authorization", f"bearer {ADMIN}"),)
        )
    # Without an admin token only stored tokens work: there is none yet.
    async with serving(database_url, require_tokens=True) as api:
        failure = await refused(
            api.namespaces.ListNamespaces(namespace_pb2.ListNamespacesRequest(), metadata=ADMIN_MD)
        )
        assert failure.code == Code.UNAUTHENTICATED


# --- jobs named by a bare id ----------------------------------------------------------


async def test_a_job_of_another_namespace_is_not_found_like_a_missing_one(api: Stubs) -> None:
    a, b = await namespace(api, "team-a"), await namespace(api, "team-b")
    d = await definition(api, b)
    theirs = await api.definitions.Tick(definition_pb2.TickRequest(namespace_id=b, def_id=d.def_id))
    missing = str(uuid.uuid4())

    def complete(job_id: str) -> object:
        return api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=job_id, namespace_id=a))

    def fail(job_id: str) -> object:
        return api.jobs.FailJob(
            job_pb2.FailJobRequest(job_id=job_id, namespace_id=a, error="x", non_retryable=True)
        )

    calls = {"complete": complete, "fail": fail}
    for name, make in calls.items():
        other = await refused(make(theirs.job_id))
        absent = await refused(make(missing))
        assert (other.code, other.reason) == (absent.code, absent.reason) == (Code.NOT_FOUND, "JOB_NOT_FOUND")
        assert other.message == absent.message.replace(missing, theirs.job_id), name
    job = await api.jobs.GetJob(job_pb2.GetJobRequest(namespace_id=b, job_id=theirs.job_id))
    assert job.state == job_pb2.Job.STATE_READY
    # In its own namespace, or without one (no auth: any), it completes.
    done = await api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=theirs.job_id, namespace_id=b))
    assert done.state == job_pb2.Job.STATE_SUCCEEDED


async def test_a_namespace_token_completes_only_its_own_jobs(database_url: str) -> None:
    async with auth_server(database_url) as api:
        a, b = await admin_namespace(api, "team-a"), await admin_namespace(api, "team-b")
        jobs = {}
        for ns in (a, b):
            d = await api.definitions.CreateDefinition(
                definition_pb2.CreateDefinitionRequest(namespace_id=ns, name="noop", kind="noop"),
                metadata=ADMIN_MD,
            )
            tick = definition_pb2.TickRequest(namespace_id=ns, def_id=d.def_id)
            jobs[ns] = (await api.definitions.Tick(tick, metadata=ADMIN_MD)).job_id
        worker = await create(api, Scope.SCOPE_WORKER, a)
        other = await refused(
            api.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=jobs[b]), metadata=bearer(worker.secret))
        )
        assert (other.code, other.reason) == (Code.NOT_FOUND, "JOB_NOT_FOUND")
        named = await refused(
            api.jobs.CompleteJob(
                job_pb2.CompleteJobRequest(job_id=jobs[b], namespace_id=b), metadata=bearer(worker.secret)
            )
        )
        assert (named.code, named.reason) == (Code.PERMISSION_DENIED, "NAMESPACE_DENIED")
        done = await api.jobs.CompleteJob(
            job_pb2.CompleteJobRequest(job_id=jobs[a]), metadata=bearer(worker.secret)
        )
        assert done.state == job_pb2.Job.STATE_SUCCEEDED
        theirs = await api.jobs.GetJob(
            job_pb2.GetJobRequest(namespace_id=b, job_id=jobs[b]), metadata=ADMIN_MD
        )
        assert theirs.state == job_pb2.Job.STATE_READY


async def test_an_edge_to_a_job_of_another_namespace_is_not_found_like_a_missing_one(api: Stubs) -> None:
    a, b = await namespace(api, "team-a"), await namespace(api, "team-b")
    da, db = await definition(api, a), await definition(api, b)
    mine = await dag(api, a, da.def_id, ["x"], [], start=False)
    other_dag = await dag(api, a, da.def_id, ["o"], [], start=False)
    theirs = await dag(api, b, db.def_id, ["t"], [], start=False)
    x = (await dag_jobs(api, a, mine.dag_id))["x"].job_id
    same_ns = (await dag_jobs(api, a, other_dag.dag_id))["o"].job_id
    foreign = (await dag_jobs(api, b, theirs.dag_id))["t"].job_id
    missing = str(uuid.uuid4())

    def edge(child: str) -> object:
        return api.dags.AddDependency(
            dag_pb2.AddDependencyRequest(
                namespace_id=a, dag_id=mine.dag_id, parent_job_id=x, child_job_id=child
            )
        )

    other = await refused(edge(foreign))
    absent = await refused(edge(missing))
    assert (other.code, other.reason) == (absent.code, absent.reason) == (Code.NOT_FOUND, "JOB_NOT_FOUND")
    assert other.message == absent.message.replace(missing, foreign)
    # Another DAG of the same namespace is still told apart.
    cross = await refused(edge(same_ns))
    assert (cross.code, cross.reason) == (Code.FAILED_PRECONDITION, "CROSS_DAG_EDGE")
    bulk = await refused(
        api.dags.AddDependencies(
            dag_pb2.AddDependenciesRequest(
                namespace_id=a,
                dag_id=mine.dag_id,
                dependencies=[dag_pb2.Dependency(parent_job_id=foreign, child_job_id=x)],
            )
        )
    )
    assert (bulk.code, bulk.reason) == (Code.NOT_FOUND, "JOB_NOT_FOUND")


async def test_a_server_without_tokens_says_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    # What Server.start logs last; announced without starting a server.
    url = "postgresql:///unused"
    with caplog.at_level("INFO", logger="chronosched_server.app"):
        Server(Config(database_url=url)).announce_auth()
        Server(Config(database_url=url, require_tokens=True, admin_token=ADMIN)).announce_auth()
        Server(Config(database_url=url, require_tokens=True)).announce_auth()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in said] == ["WARNING", "INFO", "INFO"]
    assert "tokens are NOT required (--insecure-no-auth)" in said[0][1]
    assert "CHRONOSCHED_ADMIN_TOKEN is accepted" in said[1][1]
    assert "only tokens stored in the database" in said[2][1]
