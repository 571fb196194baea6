"""Embedded PostgreSQL (chronosched_server.local.embedded): start, stop, restart.

Real pgserver clusters in temporary directories; each test checks by pid that
`stop()` really ends the postmaster, which pgserver's own cleanup does not
always do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from chronosched_server.local.embedded import DEFAULT_DATABASE, EmbeddedPostgres, pid_alive

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def data_root() -> Iterator[Path]:
    # Not pytest's tmp_path: running as root, pgserver opens every parent of
    # the data directory to its `pgserver` user (o+rx), and any other pytest
    # session starting meanwhile resets /tmp/pytest-of-root to 0700, which
    # locks postgres out mid-initdb.
    root = Path(tempfile.mkdtemp(prefix="chronosched-embedded-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def embedded(data_root: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(data_root / "data")
    yield pg
    pg.stop()


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    pid = int(proc.stdout)
    assert not pid_alive(pid)
    return pid


def test_start_creates_database_and_stop_ends_postmaster(embedded: EmbeddedPostgres) -> None:
    url = embedded.start()
    pid = embedded.pid
    assert pid is not None and pid_alive(pid)
    assert f"/{DEFAULT_DATABASE}?" in url
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row == (DEFAULT_DATABASE,)

    embedded.stop()

    assert not pid_alive(pid)
    assert embedded.pid is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()


def test_data_survives_a_restart(embedded: EmbeddedPostgres, data_root: Path) -> None:
    url = embedded.start()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    first_pid = embedded.pid
    embedded.stop()
    assert first_pid is not None and not pid_alive(first_pid)

    # A new object on the same directory, as a second `chronosched up` would do.
    again = EmbeddedPostgres(data_root / "data")
    try:
        url2 = again.start()
        assert again.pid is not None and again.pid != first_pid
        with psycopg.connect(url2) as conn:
            rows = conn.execute("SELECT v FROM kept").fetchall()
            dbs = conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", (DEFAULT_DATABASE,)
            ).fetchone()
        assert rows == [("still here",)]
        assert dbs == (1,)
    finally:
        again.stop()


def test_stale_handle_of_a_killed_process_does_not_keep_postgres_running(
    embedded: EmbeddedPostgres, data_root: Path
) -> None:
    embedded.start()
    embedded.stop()
    # A process that opened the cluster and was SIGKILLed leaves its pid in
    # pgserver's handle list; pgserver alone would then never stop postgres.
    handles = data_root / "data" / "pg" / ".handle_pids.json"
    handles.write_text(json.dumps([_dead_pid()]))

    embedded.start()
    pid = embedded.pid
    assert pid is not None
    embedded.stop()

    assert not pid_alive(pid)


def test_attaches_to_a_postmaster_left_running(embedded: EmbeddedPostgres, data_root: Path) -> None:
    # Simulates an `up` that was SIGKILLed: postgres keeps running (pg_ctl
    # daemonized it) and its handle pid is dead.
    embedded.start()
    pid = embedded.pid
    handles = data_root / "data" / "pg" / ".handle_pids.json"
    handles.write_text(json.dumps([_dead_pid()]))
    from pgserver.postgres_server import PostgresServer

    # Forget our in-process handle without stopping anything, as a killed
    # process would.
    embedded._server = None
    PostgresServer._instances.pop(embedded.pgdata, None)

    second = EmbeddedPostgres(data_root / "data")
    try:
        url = second.start()
        assert second.pid == pid
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        second.stop()
    assert pid is not None and not pid_alive(pid)


def test_long_data_dir_path_uses_a_short_socket_dir(data_root: Path) -> None:
    # Unix socket paths are limited to ~107 bytes; pgserver then puts the
    # socket elsewhere, and the URL must point there.
    deep = data_root.joinpath(*(["d" * 40] * 3))
    deep.mkdir(parents=True)
    pg = EmbeddedPostgres(deep)
    assert len(str(pg.pgdata / ".s.PGSQL.5432")) > 107
    try:
        url = pg.start()
        socket_dir = url.split("host=", 1)[1]
        assert not socket_dir.startswith(str(pg.pgdata))
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (DEFAULT_DATABASE,)
    finally:
        pg.stop()
    assert pg.pid is None
