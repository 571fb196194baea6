"""The clients' token methods (create_token, list_tokens, revoke_token) and
their `token` argument against a server that requires tokens."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from chronosched import (
    AsyncClient,
    Client,
    NotFound,
    PermissionDenied,
    TokenScope,
    Unauthenticated,
)
from tests.client.conftest import Running
from tests.support.auth import ADMIN_TOKEN, auth_server

__all__ = ["auth_server"]

pytestmark = pytest.mark.timeout(60)


def test_tokens_round_trip(auth_server: Running) -> None:
    with Client(auth_server.target, token=ADMIN_TOKEN) as admin:
        admin.create_namespace("team-a")
        admin.create_namespace("team-b")
        made = admin.create_token(TokenScope.WRITE, "team-a", description="ci", ttl=timedelta(days=30))
        token = made.token
        assert (token.scope, token.namespace_id, token.description) == (TokenScope.WRITE, "team-a", "ci")
        assert made.secret.startswith(f"cs_{token.token_id}_") and made.secret not in repr(made)
        assert token.expire_time is not None and token.revoke_time is None
        assert token.expire_time - token.create_time == timedelta(days=30)
        worker = admin.create_token(TokenScope.WORKER, "*")
        assert worker.token.namespace_id == "*"

        with Client(auth_server.target, token=made.secret) as writer:
            writer.create_definition("team-a", "step", "manual")
            job = writer.tick("team-a", writer.resolve_definition("team-a", "step").def_id)
            with pytest.raises(PermissionDenied) as denied:
                writer.get_namespace("team-b")
            assert denied.value.reason == "NAMESPACE_DENIED"
            with pytest.raises(PermissionDenied):
                writer.create_namespace("team-c")
            # Named in another namespace, the job is not found (admin or not).
            with pytest.raises(NotFound) as elsewhere:
                admin.complete_job(job.job_id, namespace_id="team-b")
            assert elsewhere.value.reason == "JOB_NOT_FOUND"
            failed = writer.fail_job(job.job_id, "no", namespace_id="team-a", non_retryable=True)
            assert failed.error == "no"
            assert [n.namespace_id for n in writer.list_namespaces()] == ["team-a"]

        assert {t.token_id for t in admin.list_tokens()} == {token.token_id, worker.token.token_id}
        assert [t.token_id for t in admin.list_tokens("*")] == [worker.token.token_id]
        assert [t.token_id for t in admin.list_tokens("team-a")] == [token.token_id]
        page = admin.list_tokens_page(page_size=1)
        assert len(page) == 1 and page.next_page_token is not None

        revoked = admin.revoke_token(token.token_id)
        assert revoked.revoke_time is not None
        assert admin.revoke_token(token.token_id).revoke_time == revoked.revoke_time
        assert [t.token_id for t in admin.list_tokens("team-a")] == []
        assert [t.token_id for t in admin.list_tokens("team-a", show_inactive=True)] == [token.token_id]
        with Client(auth_server.target, token=made.secret) as writer, pytest.raises(Unauthenticated) as gone:
            writer.get_namespace("team-a")
        assert gone.value.reason == "TOKEN_REVOKED"
    with Client(auth_server.target) as nobody, pytest.raises(Unauthenticated) as missing:
        nobody.list_namespaces_page()
    assert missing.value.reason == "TOKEN_MISSING"


def test_async_client_tokens(auth_server: Running) -> None:
    async def scenario() -> None:
        async with AsyncClient(auth_server.target, token=ADMIN_TOKEN) as admin:
            await admin.create_namespace("team-a")
            made = await admin.create_token(TokenScope.READ, "team-a")
            listed = [t.token_id async for t in admin.list_tokens()]
            assert listed == [made.token.token_id]
            page = await admin.list_tokens_page(show_inactive=True)
            assert [t.token_id for t in page] == listed
            async with AsyncClient(auth_server.target, token=made.secret) as reader:
                assert (await reader.get_namespace("team-a")).namespace_id == "team-a"
                with pytest.raises(PermissionDenied):
                    await reader.create_definition("team-a", "x", "manual")
            revoked = await admin.revoke_token(made.token.token_id)
            assert revoked.revoke_time is not None
            async with AsyncClient(auth_server.target, token=made.secret) as reader:
                with pytest.raises(Unauthenticated):
                    await reader.get_namespace("team-a")

    asyncio.run(scenario())
