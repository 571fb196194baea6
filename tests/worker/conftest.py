"""Fixtures for the worker tests: the scripted peer (`fake`), a short wait
for acks (`short_ack_wait`), and the in-process server (`api`, for
test_protocol.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chronosched_worker import sdk as sdk_module
from tests.support.server import api  # noqa: F401
from tests.worker.fake_server import FakeServer


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def short_ack_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that leave results unacknowledged: their shutdown need not wait
    the full 5 s for acks that will never come."""
    monkeypatch.setattr(sdk_module, "ACK_WAIT_S", 0.2)
