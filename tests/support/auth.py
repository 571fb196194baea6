"""A server that requires bearer tokens, for the client's and the CLI's
token tests: the in-process server on a loop of its own (as the client
tests' `server`), with ADMIN_TOKEN as its bootstrap admin token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest

from tests.client.conftest import LoopThread, Running
from tests.support.server import serving

ADMIN_TOKEN = "the-bootstrap-admin-token-of-the-client-tests"


@pytest.fixture
def auth_server(database_url: str) -> Iterator[Running]:
    loop = LoopThread()
    stack = AsyncExitStack()

    async def start() -> int:
        stubs = await stack.enter_async_context(
            serving(database_url, require_tokens=True, admin_token=ADMIN_TOKEN)
        )
        return stubs.server.port

    try:
        port = loop.run(start)
        yield Running(loop, port, stack)
    finally:
        loop.run(stack.aclose)
        loop.close()
