"""`chronosched worker --token` / CHRONOSCHED_TOKEN: the worker sends its
token on the Dequeue stream, and a server that requires tokens serves it."""

from __future__ import annotations

import asyncio

import pytest

from chronosched.v1 import definition_pb2, job_pb2, namespace_pb2, token_pb2, token_pb2_grpc
from chronosched_worker.cli import build_worker
from chronosched_worker.context import JobContext
from chronosched_worker.sdk import Worker
from tests.support.server import serving
from tests.support.waiting import poll

pytestmark = pytest.mark.timeout(60)

ADMIN = "bootstrap-admin-token-of-the-worker-sdk-tests"
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)


def test_the_token_comes_from_the_flag_or_the_environment() -> None:
    flag = build_worker(["--server", "s:1", "--namespace", "a", "--token", "from-flag"], env={})
    assert flag._metadata == (("authorization", "Bearer from-flag"),)
    env = build_worker(["--server", "s:1", "--namespace", "a"], env={"CHRONOSCHED_TOKEN": "from-env"})
    assert env._metadata == (("authorization", "Bearer from-env"),)
    assert build_worker(["--server", "s:1", "--namespace", "a"], env={})._metadata is None


async def test_a_worker_with_a_worker_token_runs_its_namespaces_jobs(database_url: str) -> None:
    async with serving(database_url, require_tokens=True, admin_token=ADMIN) as api:
        await api.namespaces.CreateNamespace(
            namespace_pb2.CreateNamespaceRequest(namespace_id="team-a"), metadata=ADMIN_MD
        )
        d = await api.definitions.CreateDefinition(
            definition_pb2.CreateDefinitionRequest(namespace_id="team-a", name="hello", kind="hello"),
            metadata=ADMIN_MD,
        )
        made = await token_pb2_grpc.TokenServiceStub(api.channel).CreateToken(
            token_pb2.CreateTokenRequest(scope=token_pb2.Token.SCOPE_WORKER, namespace_id="team-a"),
            metadata=ADMIN_MD,
        )
        worker = Worker(f"127.0.0.1:{api.server.port}", namespaces=["team-a"], token=made.secret)

        @worker.handler("hello")
        async def hello(ctx: JobContext) -> dict[str, object]:
            return {"hi": True}

        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        job = await api.definitions.Tick(
            definition_pb2.TickRequest(namespace_id="team-a", def_id=d.def_id), metadata=ADMIN_MD
        )

        async def done() -> bool:
            got = await api.jobs.GetJob(
                job_pb2.GetJobRequest(namespace_id="team-a", job_id=job.job_id), metadata=ADMIN_MD
            )
            return bool(got.state == job_pb2.Job.STATE_SUCCEEDED)

        await poll(done, within=20, what="the job to succeed")
        stop.set()
        await running
