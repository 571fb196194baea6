"""The in-process server fixtures (tests/support/server.py) for the API tests."""

from __future__ import annotations

from tests.support.server import Stubs as Stubs  # test_stream_churn.py imports it from here
from tests.support.server import api, api_without_scheduler  # noqa: F401
