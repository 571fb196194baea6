"""The REST fuzzer's fixtures: its own `chronosched up`, a connection to its
database, and the run's tally printed at the end of the session.

The `up` runs without local workers: nothing but the fuzzer's requests may
change the database while a case runs, so a change seen around a refused
request is that request's doing. The cron scheduler stays on; the schedules
the fuzzer's worlds make are yearly and never fire during a run.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.fuzz.tally import TALLY
from tests.support.up import UpProcess, session_up


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.cases:
        terminalreporter.write_line(TALLY.summary())


@pytest.fixture(scope="package")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """The fuzzer's own `chronosched up` (no local workers), for this folder
    only: stopped with SIGINT once its tests are done (not at the end of the
    whole session), which must exit 0 and leave nothing running."""
    with session_up(tmp_path_factory.mktemp("fuzz"), "--workers", "0") as running:
        yield running


@pytest.fixture(scope="package")
def db(up: UpProcess) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """The `up`'s database (its run file names it), read between cases."""
    with psycopg.connect(up.state["database_url"], autocommit=True) as conn:
        yield conn
