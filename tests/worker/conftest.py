"""The API tests' in-process server fixture (`api`), for test_protocol.py.

Guarded so that the rest of the worker tests, which need no server, still
collect while the server's WorkerService is missing or mid-change.
"""

import contextlib

with contextlib.suppress(ImportError):
    from tests.api.conftest import api  # noqa: F401
