"""End-to-end fixtures: `chronosched up` as a real process (embedded
PostgreSQL, the gRPC server and the real Envoy), reached over HTTP.

One `up` serves the whole session; tests keep out of each other's way by
working in namespaces of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# The `up` process lives in tests/support/up.py (the fuzzer runs one too);
# tests here import these names from this module.
from tests.support.up import STOP_TIMEOUT_S, UpProcess, run_up, session_up, temporary_data_root

__all__ = ["STOP_TIMEOUT_S", "UpProcess", "run_up"]


@pytest.fixture
def data_root() -> Iterator[Path]:
    """A directory for PostgreSQL data, outside pytest's tmp_path.

    Running as root, pgserver opens every parent of the data directory to
    its `pgserver` user (o+rx), and any other pytest session starting
    meanwhile resets /tmp/pytest-of-root to 0700, locking postgres out.
    """
    with temporary_data_root() as root:
        yield root


@pytest.fixture(scope="session")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """The session's `chronosched up`; stopped with SIGINT at the end, which
    must exit 0 and leave no PostgreSQL, server or Envoy behind."""
    with session_up(tmp_path_factory.mktemp("e2e")) as running:
        yield running


@pytest.fixture(scope="session")
def base_url(up: UpProcess) -> str:
    return up.base_url


@pytest.fixture
def api(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        yield client


@pytest.fixture
def ns(api: httpx.Client) -> str:
    """A fresh namespace for one test."""
    namespace_id = f"t-{uuid.uuid4().hex[:12]}"
    resp = api.post("/api/v1/namespaces", json={"namespace_id": namespace_id})
    assert resp.status_code == 200, resp.text
    return namespace_id
